"""Joining a Ray cluster, or starting one on this machine.

Clusters started with ``ray start`` require token authentication (the default
since Ray 2.59). Ray reads its auth mode when it is imported, so
:func:`configure_auth` runs before anything imports ``ray``. It turns token
authentication on when a token is at hand and never turns it off.
"""
from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessError


def cluster_address(address: str | None) -> str | None:
    return address or os.environ.get("RAY_ADDRESS") or None


def configure_auth(address: str | None) -> None:
    if cluster_address(address) and "RAY_AUTH_MODE" not in os.environ and _token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def _token_available() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` (or $RAY_ADDRESS), else start Ray with this machine's CPUs."""
    import ray

    if ray.is_initialized():
        return
    address = cluster_address(address)
    if not address:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        return
    import methods

    import harness

    # Ship our packages with the job so worker nodes need only the dependencies.
    code = [str(Path(harness.__file__).parent), str(Path(methods.__file__).parent)]
    try:
        ray.init(address=address, logging_level="WARNING", runtime_env={"py_modules": code})
    except (ConnectionError, RuntimeError) as exc:
        cause = exc.__cause__ or exc
        reason = ("authentication token missing or incorrect" if "AuthenticationError" in repr(cause)
                  else (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:200])
        raise HarnessError(f"--address {address}: cannot join the Ray cluster ({reason}); check the "
                           f"address and, with token authentication, RAY_AUTH_TOKEN or ~/.ray/auth_token") from None
