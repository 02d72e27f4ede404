"""A study written before harness/ was grouped into subpackages (tests/fixtures/study-v0.1:
interrupted after three of four trials, its Tune state pickled under the old module
paths) is read, reported, exported and resumed by today's code."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli.main import main
from harness.store.tables import read_table

FIXTURE = Path(__file__).parent / "fixtures" / "study-v0.1"
EPOCHS = 4  # the fixture's budget.epochs


@pytest.fixture
def old_study(tmp_path, monkeypatch) -> Path:
    """The fixture's storage folder, copied; its lock and record name a dead driver of this host
    (as after a kill here), not the machine that wrote it."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    store = tmp_path / "store"
    shutil.copytree(FIXTURE, store)
    ended = subprocess.Popen(["true"])
    ended.wait()
    lock, record_file = store / "legacy-kd" / ".lock", store / "legacy-kd" / "study.json"
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "host": socket.gethostname(), "pid": ended.pid,
                                "start": None}))
    record = json.loads(record_file.read_text())
    record["driver"] = {"host": socket.gethostname(), "pid": ended.pid, "start": None}
    record_file.write_text(json.dumps(record))
    return store


def test_an_old_study_is_read_reported_and_exported(old_study, tmp_path, capsys):
    folder = old_study / "legacy-kd"
    trials = read_table(folder, "trials").set_index("trial_id")
    completed = trials[trials.status == "completed"]
    assert len(completed) == 3 and (completed.epochs_done == EPOCHS).all()
    assert completed.test_acc.between(0, 1).all() and completed.latency_ms.gt(0).all()

    report = tmp_path / "old.html"
    assert main(["report", str(folder), "-o", str(report), "--no-images"]) == 0
    assert "legacy-kd" in report.read_text()

    best = completed.val_acc.idxmax()
    assert main(["export", str(folder), "--trial", best, "--format", "onnx", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out" / f"legacy-kd-{best}.onnx").is_file(), out
    card = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert card["trial"] == best and abs(card["test_acc_from_file"] - completed.loc[best, "test_acc"]) <= 1 / 359


def test_an_old_interrupted_study_resumes_to_its_end(ray_session, old_study):
    folder = old_study / "legacy-kd"
    before = read_table(folder, "trials").set_index("trial_id")
    finished = before.index[before.status == "completed"]

    assert main(["sweep", str(folder), "--storage", str(old_study), "--resume", "--progress", "quiet"]) == 0
    trials = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    assert trials.index.is_unique and len(trials) == 4 and (trials.status == "completed").all()
    for trial_id in finished:  # the old trials' results stand as the old code wrote them
        assert trials.loc[trial_id, "val_acc"] == before.loc[trial_id, "val_acc"]
    epochs = pd.read_parquet(folder / "epochs.parquet")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    for trial_id, group in epochs.groupby("trial_id"):
        assert sorted(group.epoch) == list(range(1, EPOCHS + 1)), trial_id
    assert json.loads((folder / "study.json").read_text())["ended_at"]
    assert "harness.search" not in sys.modules  # the old paths lived only while the run was restored
