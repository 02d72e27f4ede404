"""The results writer: when its Parquet tables are written (no Ray cluster needed)."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from ray.tune.callback import CallbackList

from harness.errors import HarnessError
from harness.store.tables import read_table
from harness.study.results import ResultsWriter, StopOnWriteFailure
from tests.support.specs import small_spec


def _report(writer: ResultsWriter, trial, epoch: int) -> None:
    writer.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": epoch / 10, "training_iteration": epoch})


def test_reports_are_written_with_every_experiment_snapshot_not_every_report(tmp_path):
    writer = ResultsWriter(small_spec(**{"budget.epochs": "3"}), tmp_path, None)
    trial = SimpleNamespace(trial_id="t1", config={"lr": 0.01}, last_result={})
    writer.on_trial_start(0, [], trial)
    # A started trial is written at once: should the driver die now, --resume still finds its row.
    assert read_table(tmp_path, "trials")["status"].tolist() == ["running"]
    _report(writer, trial, 1)
    _report(writer, trial, 2)
    assert read_table(tmp_path, "epochs").empty  # no rewrite per report

    # What Tune runs when it snapshots the experiment (the state --resume restores):
    CallbackList([writer]).save_to_dir(str(tmp_path / "snapshot"), session_str="s")
    assert read_table(tmp_path, "epochs")["val_acc"].tolist() == [0.1, 0.2]
    trials = read_table(tmp_path, "trials")
    assert trials["status"].tolist() == ["running"] and trials["epochs_done"].tolist() == [2]
    assert not (tmp_path / "snapshot").exists()  # nothing of ours goes into Tune's snapshot

    _report(writer, trial, 3)
    trial.last_result = {"training_iteration": 3}
    writer.on_trial_complete(0, [], trial)  # a finished trial is written at once
    assert len(read_table(tmp_path, "epochs")) == 3
    assert read_table(tmp_path, "trials")["status"].tolist() == ["completed"]


def test_latency_measured_again_replaces_the_in_trial_figures_which_are_kept(tmp_path):
    writer = ResultsWriter(small_spec(**{"budget.epochs": "1"}), tmp_path, None)
    for trial_id, params in (("a", 100), ("b", 200)):
        trial = SimpleNamespace(trial_id=trial_id, config={"lr": 0.01},
                                last_result={"training_iteration": 1, "epoch": 1, "params": params,
                                             "latency_ms": 9.0, "latency_b1_ms": 1.0, "device": "busy"})
        writer.on_trial_start(0, [], trial)
        writer.on_trial_complete(0, [], trial)
    again = {"latency_ms": 4.0, "latency_b1_ms": 0.5, "device": "idle", "latency_rounds": 3, "latency_spread": 0.1}
    mismatched = writer.record_remeasurement({"s0-a": {**again, "params_measured": 100},
                                              "s0-b": {**again, "params_measured": 150}})
    assert mismatched == ["s0-b"]  # not the trial's student: its figures stay
    rows = read_table(tmp_path, "trials").set_index("trial_id")
    assert rows.loc["s0-a", ["latency_ms", "trial_latency_ms", "device", "trial_device", "latency_rounds"]].tolist() \
        == [4.0, 9.0, "idle", "busy", 3]
    assert rows.loc["s0-b", "latency_ms"] == 9.0 and pd.isna(rows.loc["s0-b", "latency_rounds"])

    writer.record_remeasurement({"s0-a": {**again, "latency_ms": 5.0, "params_measured": 100}})  # once more
    rows = read_table(tmp_path, "trials").set_index("trial_id")
    assert rows.loc["s0-a", ["latency_ms", "trial_latency_ms", "trial_device"]].tolist() == [5.0, 9.0, "busy"]


def test_a_resumed_study_counts_every_trial_an_earlier_driver_started(tmp_path):
    """Running, stopped or lost: a trial that Tune continues after --resume counts a resume."""
    spec = small_spec(**{"budget.epochs": "3"})
    first = ResultsWriter(spec, tmp_path, None)
    trials = {name: SimpleNamespace(trial_id=name, config={"lr": 0.01}, last_result={}) for name in "abc"}
    for trial in trials.values():
        first.on_trial_start(0, [], trial)
    trials["b"].last_result = {"training_iteration": 1}
    first.on_trial_complete(0, [], trials["b"])  # stopped by ASHA before the driver died

    second = ResultsWriter(spec, tmp_path, None)
    second.load_previous()
    second.on_trial_start(0, [], trials["a"])  # running when the driver died
    second.on_trial_start(0, [], trials["b"])  # stopped, yet continued from its checkpoint by Tune
    second.on_trial_start(0, [], trials["a"])  # a retry within this driver is not another resume
    assert second.mark_lost(0) == 1  # c: never restored
    rows = read_table(tmp_path, "trials").set_index("trial_id")
    assert rows["resumes"].to_dict() == {"s0-a": 1, "s0-b": 1, "s0-c": 0}
    assert rows.loc["s0-c", "status"] == "lost"


def test_a_results_write_that_fails_keeps_the_files_and_stops_the_study_in_one_line(tmp_path):
    writer = ResultsWriter(small_spec(), tmp_path, None)
    stop = StopOnWriteFailure(writer)
    trial = SimpleNamespace(trial_id="t1", config={"lr": 0.01}, last_result={})
    writer.on_trial_start(0, [], trial)
    blocked = tmp_path / "parts" / "epochs-000000001-000000001.parquet"
    blocked.mkdir(parents=True)  # the first write of reports cannot take its place
    assert not stop("s0-t1", {}) and not stop.stop_all()
    _report(writer, trial, 1)
    writer.flush()
    assert stop("s0-t1", {}) and stop.stop_all()  # Tune stops every trial
    assert read_table(tmp_path, "trials")["epochs_done"].tolist() == [1]  # trials were written, then epochs failed
    with pytest.raises(HarnessError, match=r"^storage: cannot write '.*epochs-000000001-000000001.parquet' "
                                           r"\(Is a directory\); the results written before stay in "):
        writer.check_written()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("last", [4, 5], ids=["running", "finished"])
def test_reports_of_an_earlier_run_past_where_the_resumed_trial_ended_are_dropped(tmp_path, last):
    """The driver died after a trial's report ``last`` reached the files (at 5, its budget, the
    trial's row says it finished) but before Tune's snapshot recorded its checkpoint: resumed
    from report 2, the trial is stopped at 3."""
    spec = small_spec(**{"budget.epochs": "5"})
    first = ResultsWriter(spec, tmp_path, None)
    trial = SimpleNamespace(trial_id="t1", config={"lr": 0.01}, last_result={})
    first.on_trial_start(0, [], trial)
    for epoch in range(1, last + 1):
        _report(first, trial, epoch)
    if last == 5:
        trial.last_result = {"training_iteration": 5, "epoch": 5}
        first.on_trial_complete(0, [], trial)
    first.flush()

    second = ResultsWriter(spec, tmp_path, None)
    second.load_previous()
    second.on_trial_start(0, [], trial)
    _report(second, trial, 3)
    trial.last_result = {"training_iteration": 3, "epoch": 3}
    second.on_trial_complete(0, [], trial)
    for read in (lambda: read_table(tmp_path, "epochs"), lambda: (second.compact(), pd.read_parquet(
            tmp_path / "epochs.parquet"))[1]):
        reports = read()
        assert reports["epoch"].tolist() == [1, 2, 3] and reports["trial_id"].unique().tolist() == ["s0-t1"]
    assert read_table(tmp_path, "trials")["epochs_done"].tolist() == [3]
