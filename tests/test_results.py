"""The results writer: when its Parquet files are written (no Ray cluster needed)."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
from ray.tune.callback import CallbackList

from harness.results import ResultsWriter
from tests.conftest import small_spec


def _report(writer: ResultsWriter, trial, epoch: int) -> None:
    writer.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": epoch / 10, "training_iteration": epoch})


def test_reports_are_written_with_every_experiment_snapshot_not_every_report(tmp_path):
    writer = ResultsWriter(small_spec(**{"budget.epochs": "3"}), tmp_path, None)
    trial = SimpleNamespace(trial_id="t1", config={"lr": 0.01}, last_result={})
    writer.on_trial_start(0, [], trial)
    _report(writer, trial, 1)
    _report(writer, trial, 2)
    assert not (tmp_path / "epochs.parquet").exists()  # no rewrite per report

    # What Tune runs when it snapshots the experiment (the state --resume restores):
    CallbackList([writer]).save_to_dir(str(tmp_path / "snapshot"), session_str="s")
    assert pd.read_parquet(tmp_path / "epochs.parquet")["val_acc"].tolist() == [0.1, 0.2]
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert trials["status"].tolist() == ["running"] and trials["epochs_done"].tolist() == [2]
    assert not (tmp_path / "snapshot").exists()  # nothing of ours goes into Tune's snapshot

    _report(writer, trial, 3)
    trial.last_result = {"training_iteration": 3}
    writer.on_trial_complete(0, [], trial)  # a finished trial is written at once
    assert len(pd.read_parquet(tmp_path / "epochs.parquet")) == 3
    assert pd.read_parquet(tmp_path / "trials.parquet")["status"].tolist() == ["completed"]
