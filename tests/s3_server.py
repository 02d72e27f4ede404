"""A real S3-compatible server on 127.0.0.1 for the object-storage tests: moto's standalone
server (the one Ray's own storage tests use), in its own process, with a bucket made for
the test. The harness talks to it through pyarrow's S3 client, as it would to S3, with the
endpoint and keys in the environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from tests.ray_cluster import free_port

KEYS = {"AWS_ACCESS_KEY_ID": "harness-test-key", "AWS_SECRET_ACCESS_KEY": "harness-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


class S3Server:
    def __init__(self, auth: bool = False) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {**KEYS, "AWS_ENDPOINT_URL": self.endpoint}
        server_env = {**os.environ, **self.env}
        if auth:  # moto checks keys and signatures after this many unchecked calls (ours, to set up)
            server_env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1)
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)

    def make_bucket(self, name: str) -> None:
        """Through the S3 API itself (pyarrow's client), as a user's tools would."""
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=self.endpoint, access_key=KEYS["AWS_ACCESS_KEY_ID"],
                               secret_key=KEYS["AWS_SECRET_ACCESS_KEY"], region="us-east-1", scheme="http",
                               allow_bucket_creation=True)
        fs.create_dir(name)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
