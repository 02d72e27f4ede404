"""Create-if-absent on object storage, where the store offers it.

pyarrow's filesystems have no exclusive create on object storage. S3 (and the servers
that follow it) take ``If-None-Match: *`` on a PUT: the object is written only if no
object of that key exists, else the PUT fails with 412. Some S3-compatible servers ignore
the header and overwrite, so a bucket is probed once per process (the same probe key
written twice: the second write must be refused) before the header is trusted.
``create_if_absent`` answers None where it cannot be used: not ``s3://``, boto3 not
installed, or a server that ignored the probe; the caller then falls back.

boto3 finds its endpoint, region and keys where pyarrow's S3 client does (the
environment: ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``...).
"""
from __future__ import annotations

import functools
import urllib.parse
import uuid

from harness.store.location import Location, StorageError


def create_if_absent(location: Location, name: str, data: bytes) -> bool | None:
    """True: written, and no object of that name existed; False: one existed, nothing
    written; None: this store cannot say (see the module's docstring)."""
    if not location.uri.startswith("s3://"):
        return None
    client = _client()
    if client is None:
        return None
    parsed = urllib.parse.urlparse(f"{location.uri}/{name}")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not _honours_if_none_match(client, bucket, key.rpartition("/")[0]):
        return None
    return _put_if_none_match(client, bucket, key, data)


@functools.lru_cache(maxsize=1)
def _client():
    try:
        import boto3
    except ImportError:
        return None
    try:
        return boto3.client("s3")
    except Exception:  # no region or a malformed configuration: pyarrow's client says it better
        return None


def _put_if_none_match(client, bucket: str, key: str, data: bytes) -> bool | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        return True
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.response.get("Error", {}).get("Code")
        if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        if status == 501 or code == "NotImplemented":
            return None
        raise StorageError(f"s3://{bucket}/{key}: {code or status}: {error.response.get('Error', {}).get('Message')}"
                           ) from None
    except BotoCoreError:  # no credentials, endpoint unreachable: pyarrow's client says it better
        return None


@functools.lru_cache(maxsize=None)
def _honours_if_none_match(client, bucket: str, prefix: str) -> bool:
    """Whether the server refuses a second create of one key (probed once per bucket and prefix)."""
    probe = f"{prefix}/.if-none-match-probe-{uuid.uuid4().hex[:12]}".lstrip("/")
    try:
        first = _put_if_none_match(client, bucket, probe, b"")
        second = _put_if_none_match(client, bucket, probe, b"") if first else None
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=probe)
        except Exception:  # best effort: a probe left behind is empty
            pass
    return first is True and second is False
