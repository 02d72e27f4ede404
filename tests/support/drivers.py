"""Sweeps run as a user runs them, in a driver process of their own, and waited on."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest


def wait_for(condition, driver: subprocess.Popen, timeout: float = 300):
    """``condition()``'s first value that is not None, polled while the driver runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := condition()) is not None:
            return found
        if driver.poll() is not None:
            pytest.fail(f"the study ended before the fault could be injected:\n{driver.stdout.read()[-3000:]}")
        time.sleep(0.5)
    pytest.fail("timed out waiting for the study to reach the fault")


def finish(driver: subprocess.Popen, timeout: float = 420) -> str:
    """The driver's output once it has ended with exit status 0 (killed, and failed, after ``timeout``)."""
    try:
        out, _ = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)  # drivers start in a session of their own: their Ray workers too
        pytest.fail(f"the study did not finish:\n{(driver.stdout.read() if driver.stdout else '')[-3000:]}")
    assert driver.returncode == 0, out[-3000:]
    return out


# Epochs of ~0.4 s (batch 4 on digits): a trial seen half-way in epochs.parquet, which the driver
# writes at least every second, is still running when the node is killed.
EPOCHS = 12
TRIALS = 4
SPEC = {
    "study": "faults", "method": "kd",
    "teacher": {"model": "lenet5_half", "recipe": {"epochs": 2, "batch_size": 64}},
    "student": {"model": "lenet5_half", "width": 0.5},
    "budget": {"epochs": EPOCHS},
    "search": {"searcher": "random", "num_samples": TRIALS,
               "space": {"lr": {"loguniform": [0.02, 0.05]}, "batch_size": 4}},
    "asha": {"grace_period": EPOCHS},  # every trial runs its whole budget: the counts below are exact
    "resources": {"cpu": 1, "retries": 3},
    "measure": {"repeats": 3},
    "seeds": [0],
}
