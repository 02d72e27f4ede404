"""A running study can be watched: its Optuna study from another process, and, when asked
for, MLflow runs and TensorBoard event files of its trials."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from harness.study.sweep import run_sweep
from tests.support.specs import small_spec

WATCHER = textwrap.dedent("""
    import json, sys, time, optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    journal, name, out = sys.argv[1:]
    seen = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(journal)))
        except (KeyError, FileNotFoundError):
            time.sleep(0.2)
            continue
        trials = study.get_trials(deepcopy=False)
        seen.append({"states": [t.state.name for t in trials],
                     "steps": [sorted(t.intermediate_values) for t in trials]})
        json.dump(seen, open(out, "w"))
        time.sleep(0.3)
""")


def _events(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of a TensorBoard event file, read from its TFRecord frames (no TensorFlow)."""
    from tensorboardX.proto import event_pb2

    data, values, at = path.read_bytes(), {}, 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
        at += 12 + length + 4
        for value in event.summary.value:
            values.setdefault(value.tag, []).append((event.step, value.simple_value))
    return values


def test_a_running_study_is_watched_through_optuna_mlflow_and_tensorboard(ray_session, tmp_path):
    storage = tmp_path / "studies"
    folder = storage / "watched"
    mlruns = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = small_spec(**{"study": "watched", "budget.epochs": "4", "search.num_samples": "8",
                         "asha.grace_period": "1", "measure.rounds": "0",
                         "asha.stop_at_chance": "false", "search.space.lr": "{loguniform: [0.05, 0.3]}",
                         "tracking.mlflow.tracking_uri": mlruns, "tracking.tensorboard": "true"})
    seen_file = tmp_path / "seen.json"
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(folder / "optuna.journal"), "watched.seed0",
                                str(seen_file)])
    try:
        run_sweep(spec, storage=str(storage))
        seen_at_end = json.loads(seen_file.read_text()) if seen_file.exists() else []
    finally:
        watcher.kill()
    trials = pd.read_parquet(folder / "trials.parquet").sort_values("trial_id")

    # Optuna: seen from another process while trials were still running, with reports by epoch;
    # in the end every stopped trial PRUNED and every completed one COMPLETE.
    assert any("RUNNING" in s["states"] and any(s["steps"]) for s in seen_at_end), seen_at_end[-1:]
    import optuna

    from harness.store.journal import open_storage

    study = optuna.load_study(study_name="watched.seed0", storage=open_storage(None, folder))
    states = sorted(t.state.name for t in study.trials)
    expected = sorted({"completed": "COMPLETE", "stopped": "PRUNED"}[s] for s in trials["status"])
    assert states == expected and "PRUNED" in states
    assert all(sorted(t.intermediate_values) == list(range(1, len(t.intermediate_values) + 1))
               for t in study.trials)
    assert sorted(len(t.intermediate_values) for t in study.trials) == sorted(trials["epochs_done"])

    # MLflow: one run per trial, with its knobs and its val_acc at every epoch.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlruns)
    experiment = client.get_experiment_by_name("watched")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(trials)
    lrs = sorted(float(run.data.params["lr"]) for run in runs)
    assert lrs == pytest.approx(sorted(trials["param_lr"]))
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
    epochs_done = sorted(trials["epochs_done"])
    assert sorted(len(client.get_metric_history(r.info.run_id, "val_acc")) for r in runs) == epochs_done

    # TensorBoard: an event file per trial in its Tune folder, val_acc by epoch.
    files = sorted((folder / "tune" / "seed0").glob("*/events.out.tfevents.*"))
    assert len(files) == len(trials)
    steps = sorted(len(_events(f)["ray/tune/val_acc"]) for f in files)
    assert steps == epochs_done


class _Trial:
    """What Ray's MLflow logger reads of a trial: its name (str) and its config."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id, self.config = trial_id, {"lr": 0.01}

    def __str__(self) -> str:
        return f"tune_trial_{self.trial_id}"


def test_a_resumed_trial_goes_on_in_its_mlflow_run(tmp_path):
    """Tune restores the callback into the resumed driver with its trial -> run map empty."""
    from mlflow.tracking import MlflowClient

    from harness.study.mlflow_runs import TrialRuns

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tags = {"harness.study": "s", "harness.seed": "0"}

    def driver() -> TrialRuns:
        callback = TrialRuns(tracking_uri=uri, experiment_name="s", tags=tags)
        callback.setup()
        return callback

    first, trial = driver(), _Trial("a1")
    first.log_trial_start(trial)
    first.log_trial_result(1, trial, {"training_iteration": 1, "val_acc": 0.5})  # then the driver is killed
    other = _Trial("b2")
    first.log_trial_start(other)

    resumed, same = driver(), _Trial("a1")  # the restored trial: the same id, another object
    resumed.log_trial_start(same)
    resumed.log_trial_result(2, same, {"training_iteration": 2, "val_acc": 0.7})
    resumed.log_trial_end(same)

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    assert sorted(r.data.tags["trial_name"] for r in runs) == ["tune_trial_a1", "tune_trial_b2"]  # no second run
    run = next(r for r in runs if r.data.tags["trial_name"] == "tune_trial_a1")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
    assert run.info.status == "FINISHED"
