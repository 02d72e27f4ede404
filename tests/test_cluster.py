from __future__ import annotations

import os

import pytest

from harness.cluster import configure_ray


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
