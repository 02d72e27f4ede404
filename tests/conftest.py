from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.study.cluster import configure_ray

configure_ray(None)  # the tests' Ray is local; set before any test module imports ray


def pytest_collection_modifyitems(config, items):
    """Slow tests run only when asked for: a -m expression that names `slow` (`-m slow`,
    `-m "slow and cluster"`) takes them as it says; any other (none, `-m cluster`,
    `-m "not cluster"`) leaves them out, so markers compose without running the slow set."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (.ci/run sets CI=true) a skipped test fails: a missing browser, data set or
    dependency must not turn the run green without running what it checks."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI", "").lower() in ("1", "true", "yes") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must run every test: {reason}"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def digits():
    from harness.data.datasets import load_splits

    return load_splits("digits")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (starting Ray costs seconds)."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def mnist_root() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("real MNIST is not available under ../shared/datasets")
    return SHARED_DATA


def small_spec(**changes):
    """A valid spec for fast tests; ``changes`` are dotted overrides."""
    from harness.spec.load import apply_override, parse_spec

    raw = {
        "study": "test", "method": "kd",
        "teacher": {"model": "lenet5_half", "recipe": {"epochs": 2, "batch_size": 64}},
        "student": {"model": "lenet5_half", "width": 0.5},
        "budget": {"epochs": 2},
        "search": {"num_samples": 2, "space": {"lr": {"loguniform": [0.01, 0.05]}}},
    }
    for key, value in changes.items():
        apply_override(raw, f"{key}={value}")
    return parse_spec(raw)
