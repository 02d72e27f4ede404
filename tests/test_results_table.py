"""benchmarks/results_table.py: the README's results table from study folders."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from reports.summary import selected_trials, welch_p
from tests.fake_studies import write_study

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "results_table.py"


def _table(storage: Path, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, str(SCRIPT), str(storage), *args], capture_output=True, text=True,
                          check=True)
    return [line for line in done.stdout.splitlines() if line.startswith("|")]  # the table, not the figures


def test_rows_in_family_order_with_welch_p_against_kd_and_the_study_state(tmp_path):
    rng = np.random.default_rng(1)
    write_study(tmp_path, "kd-x", "kd", 4, seeds=(0, 1, 2), rng=rng)
    write_study(tmp_path, "scratch-x", "scratch", 4, seeds=(0, 1, 2), rng=rng)
    write_study(tmp_path, "dafl-x", "dafl", 4, seeds=(0, 1), rng=rng, finished=False)
    rows = _table(tmp_path, "--link", "here.md")
    assert rows[0].startswith("| method | family | test accuracy") and len(rows) == 5
    # baseline, distillation, data-free
    assert [row.split("`")[1] for row in rows[2:]] == ["scratch-x", "kd-x", "dafl-x"]

    trials = pd.concat(pd.read_parquet(tmp_path / s / "trials.parquet") for s in ("kd-x", "scratch-x"))
    acc = selected_trials(trials).groupby("study")["test_acc"]
    mean, std = acc.mean(), acc.std()
    p = welch_p(mean["scratch-x"], std["scratch-x"], 3, mean["kd-x"], std["kd-x"], 3)
    scratch, kd, dafl = (row.split(" | ") for row in rows[2:])
    assert scratch[2] == f"{100 * mean['scratch-x']:.2f} ± {100 * std['scratch-x']:.2f} (3 seeds)"
    assert scratch[3] == f"{p:.2f}" and kd[3] == "-" and scratch[0] == "| [`scratch-x`](here.md)"
    assert "(2 seeds) (interrupted)" in dafl[2]  # its driver is gone and it never ended
    assert scratch[4] == "15,738"


def test_per_seed_table_lists_each_selected_trial(tmp_path):
    write_study(tmp_path, "kd-x", "kd", 3, seeds=(0, 1, 2))
    rows = _table(tmp_path, "--per-seed")
    chosen = selected_trials(pd.read_parquet(tmp_path / "kd-x" / "trials.parquet"))
    assert rows[2].split(" | ")[1] == ", ".join(f"{100 * v:.2f}" for v in chosen["test_acc"])
