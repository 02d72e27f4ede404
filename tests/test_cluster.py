from __future__ import annotations

import os

import pytest

from harness.errors import HarnessError
from harness.study.cluster import check_trial_fits, configure_ray, connect, join_failure, unreachable


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    # configure_ray writes os.environ; give it a copy so nothing leaks into the
    # Ray that later tests start (Ray reads its switches when it starts).
    ours = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_ENABLE_UV_RUN_RUNTIME_ENV")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "auth_token")
    monkeypatch.setattr(os, "environ", env)
    return tmp_path / "auth_token"


def test_token_auth_is_used_when_joining_a_cluster_with_a_token(clean_env, monkeypatch):
    clean_env.write_text("secret")
    configure_ray("10.0.0.1:6379")
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_no_change_for_a_local_ray_or_without_a_token(clean_env, monkeypatch):
    clean_env.write_text("secret")
    configure_ray(None)
    assert "RAY_AUTH_MODE" not in os.environ
    clean_env.unlink()
    configure_ray("10.0.0.1:6379")
    assert "RAY_AUTH_MODE" not in os.environ


def test_an_explicit_auth_mode_is_never_overridden(clean_env, monkeypatch):
    clean_env.write_text("secret")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    configure_ray(None)
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


def test_a_local_ray_skips_the_uv_run_hook_unless_told_otherwise(clean_env, monkeypatch):
    configure_ray(None)
    assert os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] == "0"
    monkeypatch.setitem(os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV", "1")
    configure_ray(None)
    assert os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] == "1"


def test_joining_a_cluster_keeps_the_uv_run_hook(clean_env):
    # Remote workers may need the hook to build the driver's environment.
    configure_ray("10.0.0.1:6379")
    assert "RAY_ENABLE_UV_RUN_RUNTIME_ENV" not in os.environ


def test_a_trial_no_node_can_hold_fails_fast_on_a_local_ray(ray_session, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert check_trial_fits(1, 0, None) is None and check_trial_fits(2, 0, None) is None
    for cpu, gpu in ((1, 64), (3, 0)):  # the session's Ray has 2 CPUs and whatever GPUs the machine has
        with pytest.raises(HarnessError, match=f"a trial needs {cpu:g} CPU and {gpu:g} GPU on one node, and no "
                                               r"node of this machine's Ray has that "
                                               r"\(the largest: 2 CPU, [\d.]+ GPU\)"):
            check_trial_fits(cpu, gpu, None)


def test_on_a_cluster_it_is_a_note_since_nodes_may_be_added(ray_session):
    note = check_trial_fits(1, 64, "10.0.0.1:6379")
    assert note.startswith("note: resources: a trial needs 1 CPU and 64 GPU") and "the Ray cluster" in note
    assert "wait until the cluster adds such a node" in note


def test_a_failed_join_names_its_cause():
    hook = RuntimeError("Your /p/pyproject.toml is not in the working_dir /tmp/x, so the workers will not have "
                        "access to the file. ... by specifying --directory in 'uv run', by changing ...")
    assert "run from the project's folder (`uv run --directory PATH ...`)" in join_failure("h:6379", hook)
    refused = ConnectionError("lots of detail\nFailed to connect to GCS at h:6379")
    assert join_failure("h:6379", refused) == (
        "--address h:6379: cannot join the Ray cluster (Failed to connect to GCS at h:6379); check the address "
        "and, with token authentication, RAY_AUTH_TOKEN or ~/.ray/auth_token")


def test_an_address_where_nothing_listens_is_refused_at_once(monkeypatch):
    import socket

    import ray

    def ray_init(**kwargs):
        raise AssertionError("Ray was asked to join (it retries for about 20 s)")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh driver
    monkeypatch.setattr(ray, "init", ray_init)

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HarnessError, match=f"nothing listens on 127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}")
    assert unreachable("no-such-host.invalid:6379") == "unknown host 'no-such-host.invalid'"
    assert unreachable("auto") is None  # Ray's own lookup of a local cluster

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert unreachable(f"ray://127.0.0.1:{listening.getsockname()[1]}") is None
