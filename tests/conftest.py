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
def digits_data(digits):
    """The digits splits as methods take them, on the CPU."""
    import torch

    from harness.data.batches import DeviceData

    return DeviceData(digits, torch.device("cpu"))


@pytest.fixture(scope="session")
def lenet5_teacher(digits_data):
    """One LeNet-5 trained on digits for the whole session (20 epochs, seeded), frozen: the teacher
    of the method tests that need one whose features mean something."""
    from tests.support.contexts import trained_teacher

    return trained_teacher("lenet5", digits_data, epochs=20)


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory) -> Path:
    """One teacher cache for the session's sweeps: a teacher of one spec is trained once."""
    return tmp_path_factory.mktemp("teachers")


@pytest.fixture
def studies(tmp_path, teacher_cache) -> Path:
    """A storage folder for a test's sweeps, its teacher cache shared with the session's (a
    link), so that a sweep reuses a teacher another test's sweep trained (tests/test_teachers.py
    checks the cache itself, in a folder of its own)."""
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "teachers").symlink_to(teacher_cache, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def cluster():
    """A multi-node Ray of ``ray start`` nodes on this machine (tests/ray_cluster.py), its head
    started; the module's tests add and kill nodes. Every Ray process it started is gone after."""
    from tests.ray_cluster import LocalCluster

    cluster = LocalCluster()
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.shutdown()
        assert not cluster.processes(), "Ray processes left behind"


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
