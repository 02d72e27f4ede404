"""Real-data studies on MNIST (slow: run with ``uv run pytest -m slow``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.spec.load import load_spec

pytestmark = pytest.mark.slow
SPACES = Path(__file__).resolve().parents[1] / "search_spaces" / "mnist"


def _best_test_acc(spec_name: str, root: Path, storage: Path) -> float:
    from harness.study.sweep import run_sweep

    spec = load_spec(SPACES / spec_name, [f"dataset.root={root}", "seeds=[0]", "search.num_samples=4",
                                          "dataset.download=false"])
    trials = pd.read_parquet(run_sweep(spec, storage=str(storage)) / "trials.parquet")
    done = trials[trials.status == "completed"]
    return float(done.loc[done.val_acc.idxmax(), "test_acc"])  # chosen on validation, reported on test


def test_kd_student_on_mnist_reaches_98_5(ray_session, mnist_root, tmp_path):
    kd = _best_test_acc("kd.yaml", mnist_root, tmp_path)
    scratch = _best_test_acc("scratch.yaml", mnist_root, tmp_path)
    teacher = pd.read_parquet(tmp_path / "kd-mnist" / "trials.parquet").teacher_test_acc.iloc[0]
    print(f"MNIST LeNet-5 -> LeNet-5-half: teacher {teacher:.4f}, kd {kd:.4f}, scratch {scratch:.4f}")
    assert teacher >= 0.989
    assert kd >= 0.985
