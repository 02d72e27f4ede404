"""Studies on a real two-node Ray cluster survive a lost node and a killed driver.

The cluster is two ``ray start`` nodes on loopback with token authentication
(see ``tests/ray_cluster.py``); the study runs in its own driver process, as a
user's would (``python -m harness sweep SPEC --address ...``).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.cluster

from harness.cli.main import main as harness_main  # noqa: E402
from harness.store.tables import read_table  # noqa: E402
from tests.ray_cluster import LocalCluster  # noqa: E402
from tests.support.drivers import EPOCHS, SPEC, TRIALS, finish, wait_for  # noqa: E402


def _spec_file(folder: Path, study: str) -> Path:
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "study": study}))
    return path


def _sweep(cluster: LocalCluster, spec: Path, storage: Path, *extra: str) -> subprocess.Popen:
    env = {**cluster.env, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", str(spec), "--address", cluster.address,
         "--storage", str(storage), *extra],
        cwd=Path(__file__).resolve().parents[1], env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _epochs(folder: Path) -> pd.DataFrame:
    epochs = read_table(folder, "epochs")  # the running study's, compacted or in parts
    return epochs if len(epochs) else pd.DataFrame(columns=["trial_id", "epoch", "node_id"])


def _check_consistent(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each trial once, each report once, every finished trial's reports complete."""
    trials, epochs = pd.read_parquet(folder / "trials.parquet"), pd.read_parquet(folder / "epochs.parquet")
    assert trials["trial_id"].is_unique
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    finished = trials[trials["status"] == "completed"]
    for trial_id in finished["trial_id"]:
        assert sorted(epochs.loc[epochs["trial_id"] == trial_id, "epoch"]) == list(range(1, EPOCHS + 1)), trial_id
    assert json.loads((folder / "study.json").read_text())["ended_at"]
    return trials, epochs


# In the default run, tests/test_object_storage.py loses a worker node the same way (its trial
# continued on the head from the checkpoint): this local-folder twin runs with -m slow, to keep
# the default run under 15 minutes on a 2-core machine.
@pytest.mark.slow
def test_a_study_survives_losing_a_worker_node(cluster, tmp_path):
    worker = cluster.add_node()
    storage = tmp_path / "studies"
    folder = storage / "node-loss"
    driver = _sweep(cluster, _spec_file(tmp_path, "node-loss"), storage)

    def a_trial_half_way_on_the_worker():
        rows = _epochs(folder)
        latest = rows[rows["node_id"] == worker].groupby("trial_id")["epoch"].max()
        half_way = latest[(latest >= 2) & (latest <= EPOCHS // 2)]
        return half_way.index[0] if len(half_way) else None

    victim = wait_for(a_trial_half_way_on_the_worker, driver)
    cluster.kill_node(worker)
    out = finish(driver)

    trials, epochs = _check_consistent(folder)
    assert len(trials) == TRIALS and set(trials["status"]) == {"completed"}, out[-2000:]
    retried = trials.set_index("trial_id").loc[victim]
    assert retried["retries"] >= 1 and "retried" in retried["error"]
    ran_on = epochs[epochs["trial_id"] == victim].sort_values("epoch")["node_id"]
    assert ran_on.iloc[0] == worker and ran_on.iloc[-1] != worker  # finished on the surviving node
    assert (trials.set_index("trial_id").drop(index=victim)["retries"] == 0).all()
    assert "RETRY" in out


# Its twin in the default run is tests/test_object_storage.py's bucket study, whose driver is
# killed and resumed the same way; this local-folder one (about 90 s) runs with -m slow, beside
# benchmarks/kill_resume.py's smoke run, to keep the default run under 12 minutes on 2 cores.
@pytest.mark.slow
def test_a_killed_driver_resumes_where_it_stopped(cluster, tmp_path, capsys):
    cluster.add_node()
    storage = tmp_path / "studies"
    folder = storage / "driver-kill"
    spec = _spec_file(tmp_path, "driver-kill")
    driver = _sweep(cluster, spec, storage)

    def one_finished_and_one_half_way():
        rows = _epochs(folder)
        done = rows.groupby("trial_id")["epoch"].max()
        # Four reports or more (1.6 s): Tune's snapshot, taken every second, holds a checkpoint of it.
        return True if (done == EPOCHS).any() and ((done >= 4) & (done <= EPOCHS - 3)).any() else None

    wait_for(one_finished_and_one_half_way, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    at_kill = _epochs(folder)  # every report the killed driver wrote
    before = at_kill.groupby("trial_id")["epoch"].max()
    started = set(re.findall(r"start +(s\d+-\w+)", driver.stdout.read()))

    # Killed mid-run: the report and the leaderboard say so, and how to finish it.
    assert harness_main(["report", str(folder), "-o", str(tmp_path / "report.html"), "--no-images"]) == 0
    assert "driver-kill: interrupted (its driver, pid" in capsys.readouterr().out
    assert harness_main(["leaderboard", str(storage)]) == 0
    assert pd.read_parquet(storage / "leaderboard.parquet").set_index("study").loc["driver-kill", "state"] == \
        "interrupted"

    resumed_at = int(time.time())  # Tune's report timestamps are whole seconds
    time.sleep(1)
    out = finish(_sweep(cluster, spec, storage, "--resume"))
    assert "resuming" in out
    trials, epochs = _check_consistent(folder)
    assert started and started <= set(trials["trial_id"])  # every trial the killed driver started has a row
    kept = trials[trials["status"] != "lost"]
    assert len(kept) == TRIALS and set(kept["status"]) == {"completed"}, out[-2000:]
    # Measured again after the search, trials finished before the kill included (from their checkpoints).
    assert (kept["latency_rounds"] > 0).all() and kept["trial_latency_ms"].notna().all()

    # A resumed trial goes on from the checkpoint of Tune's last snapshot: the reports up to it
    # stand as the killed driver wrote them, timings included (a trial restarted from scratch
    # would rewrite them: the same seeded figures, other timings); the later ones are redone.
    key = ["trial_id", "epoch"]
    columns = ["val_acc", "val_loss", "train_loss", "epoch_s", "train_s", "node_id"]
    final = epochs.set_index(key).sort_index()
    old = final[final["timestamp"] < resumed_at][columns]
    pd.testing.assert_frame_equal(old, at_kill.set_index(key).loc[old.index, columns])
    half_way = [t for t in kept["trial_id"] if t in before and before[t] < EPOCHS]
    assert half_way and (kept.set_index("trial_id").loc[half_way, "resumes"] >= 1).all()
    from_checkpoint = [t for t in half_way if t in old.index.get_level_values("trial_id")]
    assert from_checkpoint, "every half-way trial started again from scratch"
    for trial_id in from_checkpoint:  # its old reports are a prefix 1..k, k its checkpoint's report
        epochs_kept = sorted(old.loc[trial_id].index)
        assert epochs_kept == list(range(1, len(epochs_kept) + 1)) and len(epochs_kept) <= before[trial_id]

    # The reports after the resume continue each curve as an uninterrupted run of the same
    # seeded spec draws it (the same knobs train the same network, report for report).
    whole = tmp_path / "whole"
    finish(_sweep(cluster, spec, whole))
    uninterrupted = pd.read_parquet(whole / "driver-kill" / "epochs.parquet").merge(
        pd.read_parquet(whole / "driver-kill" / "trials.parquet")[["trial_id", "param_lr"]], on="trial_id")
    resumed = epochs.merge(kept[["trial_id", "param_lr"]], on="trial_id")
    for trial_id in half_way:
        mine = resumed[resumed["trial_id"] == trial_id].sort_values("epoch")
        twin = uninterrupted[uninterrupted["param_lr"] == mine["param_lr"].iloc[0]].sort_values("epoch")
        assert mine["val_acc"].tolist() == twin["val_acc"].tolist(), trial_id
        assert mine["train_loss"].tolist() == twin["train_loss"].tolist(), trial_id

    # Optuna's journal holds each trial once, finished.
    import optuna

    study = optuna.load_study(study_name="driver-kill.seed0",
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))))
    finished = [t for t in study.trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(finished) == TRIALS and all(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
