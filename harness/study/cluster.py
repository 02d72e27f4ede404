"""Joining a Ray cluster, or starting one on this machine.

Ray reads its environment switches when it is imported, so :func:`configure_ray`
runs before anything imports ``ray``. Clusters started with ``ray start``
require token authentication (the default since Ray 2.59): it is turned on when
a token is at hand and never turned off. A local Ray skips Ray's ``uv run`` hook.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from harness.errors import HarnessError


def cluster_address(address: str | None) -> str | None:
    return address or os.environ.get("RAY_ADDRESS") or None


def configure_ray(address: str | None) -> None:
    """Set Ray's environment switches for joining ``address``, or for a local Ray when None."""
    if cluster_address(address):
        if "RAY_AUTH_MODE" not in os.environ and _token_available():
            os.environ["RAY_AUTH_MODE"] = "token"
        return
    # Under `uv run`, Ray's hook would rebuild this project's environment in a copy of the
    # working directory and start every worker through `uv run` (about 40 s before the first
    # trial on the 2-core test machine). A local Ray's workers can use this interpreter as is.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def _token_available() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def connect(address: str | None, code: list[str] = (), worker_lines: bool = True) -> None:
    """Join the cluster at ``address`` (or $RAY_ADDRESS), else start Ray with this machine's CPUs.
    The user's ``code`` folders go with the job to every worker; ``worker_lines``: whether
    what the workers print is shown here (trials' errors are read from their error files)."""
    import ray

    if ray.is_initialized():
        return
    address = cluster_address(address)
    if not address:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING",
                 runtime_env={"py_modules": list(code)} if code else None, log_to_driver=worker_lines)
        return
    if reason := unreachable(address):
        raise HarnessError(f"--address {address}: cannot join the Ray cluster ({reason}); is its head node "
                           f"running (`ray start --head`) and its port open to this machine?")
    import harness
    import methods

    # Ship our packages with the job so worker nodes need only the dependencies.
    ours = [str(Path(harness.__file__).parent), str(Path(methods.__file__).parent)]
    try:
        ray.init(address=address, logging_level="WARNING", runtime_env={"py_modules": [*ours, *code]},
                 log_to_driver=worker_lines)
    except (ConnectionError, RuntimeError) as exc:
        raise HarnessError(join_failure(address, exc.__cause__ or exc)) from None


def unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why nothing answers at ``host:port`` (or ``ray://host:port``), found in seconds where
    Ray would retry for about 20 s and print its own lines; None when something answers or
    the address is not of that form (``auto``: Ray looks for a local cluster itself)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    host = host.strip("[]")  # an IPv6 address in brackets
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"unknown host '{host}'"
    except ConnectionRefusedError:
        return f"nothing listens on {host}:{port}"
    except TimeoutError:
        return f"no answer from {host}:{port} in {timeout_s:g} s"
    except OSError as error:
        return f"{host}:{port}: {error.strerror or error}"


def join_failure(address: str, cause: BaseException) -> str:
    """One line for a failed ``ray.init(address=...)``."""
    text = str(cause)
    if "is not in the working_dir" in text and "uv run" in text:
        # Ray's `uv run` hook ships the working folder to the workers; the driver ran from elsewhere.
        return (f"--address {address}: Ray's uv hook ships the current folder to the workers, and the "
                f"project is not in it; run from the project's folder (`uv run --directory PATH ...`), or set "
                f"RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 with the dependencies installed on every node")
    reason = ("authentication token missing or incorrect" if "AuthenticationError" in repr(cause)
              else (text.strip().splitlines() or [type(cause).__name__])[-1][:200])
    return (f"--address {address}: cannot join the Ray cluster ({reason}); check the "
            f"address and, with token authentication, RAY_AUTH_TOKEN or ~/.ray/auth_token")


def check_trial_fits(cpu: float, gpu: float, address: str | None) -> str | None:
    """Fail fast when no node can hold one trial, rather than wait forever for it.

    A local Ray never grows: there it is an error. A cluster may add nodes
    (autoscaling), so there it is a note to print and the study waits.
    """
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(r.get("CPU", 0) >= cpu and r.get("GPU", 0) >= gpu for r in nodes):
        return None
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    where = "this machine's Ray" if not cluster_address(address) else "the Ray cluster"
    problem = (f"resources: a trial needs {cpu:g} CPU and {gpu:g} GPU on one node, and no node of {where} has "
               f"that (the largest: {largest.get('CPU', 0):g} CPU, {largest.get('GPU', 0):g} GPU)")
    if not cluster_address(address):
        raise HarnessError(f"{problem}; lower resources.cpu or resources.gpu")
    return f"note: {problem}; the trials wait until the cluster adds such a node"
