"""Storage: checked writable before any work, one writer per study, and the lock's holder
told apart from a stale lock."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.cli.main import main
from harness.errors import HarnessError
from harness.store.lock import LOCK_FILE, StudyLock, this_process
from tests.fake_studies import _dead_pid

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "study": "one-writer", "method": "kd",
    "teacher": {"model": "lenet5_half", "recipe": {"epochs": 2, "batch_size": 64}},
    "student": {"model": "lenet5_half", "width": 0.5},
    "budget": {"epochs": 4}, "asha": {"grace_period": 4},
    "search": {"searcher": "random", "num_samples": 2, "space": {"lr": {"loguniform": [0.02, 0.05]}}},
    "measure": {"repeats": 3, "rounds": 0},
}


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_a_second_writer_of_a_running_study_is_refused_and_the_first_completes(ray_session, tmp_path, studies,
                                                                                capsys):
    spec, storage = _spec(tmp_path), studies
    folder = storage / SPEC["study"]
    first = subprocess.Popen([sys.executable, "-m", "harness", "sweep", str(spec), "--storage", str(storage)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (folder / LOCK_FILE).exists():
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.1)
    for command in (["sweep", str(spec)], ["sweep", str(spec), "--resume"]):
        assert main([*command, "--storage", str(storage)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        if "--resume" not in command:
            assert err.startswith(f"error: study folder {folder} is being written by `harness sweep` "
                                  f"(pid {first.pid} on {socket.gethostname()}")
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    trials = pd.read_parquet(folder / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    assert not (folder / LOCK_FILE).exists() and not list(folder.glob(".*.tmp"))
    assert "previous" not in {p.name for p in folder.iterdir()}  # nothing of the first run was moved
    # Once the first has ended, a third sweep runs as usual (the first's results moved aside).
    assert main(["sweep", str(spec), "--storage", str(storage)]) == 0
    assert len(list((folder / "previous").iterdir())) == 1 and not (folder / LOCK_FILE).exists()


def test_check_says_a_sweep_now_would_be_refused(tmp_path, capsys):
    storage = tmp_path / "studies"
    with StudyLock(storage / SPEC["study"], "sweep"):
        assert main(["check", str(_spec(tmp_path)), "--storage", str(storage)]) == 2
    assert "is being written by `harness sweep` (pid" in capsys.readouterr().err
    assert main(["check", str(_spec(tmp_path)), "--storage", str(storage)]) == 0


def test_a_stale_lock_is_taken_over_and_a_live_one_names_its_holder(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    lock = folder / LOCK_FILE
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "command": "sweep"}))
    with StudyLock(folder, "sweep"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(HarnessError, match=r"is being written by `harness sweep` \(pid \d+ on "):
            StudyLock(folder, "remeasure").__enter__()  # held by a live process (this one)
    assert not lock.exists()  # released
    reused = {**this_process(), "start": -1, "command": "sweep"}  # our pid, another process's start
    lock.write_text(json.dumps(reused))
    with StudyLock(folder, "sweep"):
        pass
    lock.write_text(json.dumps({"host": "node-7", "pid": 1, "command": "sweep --resume", "since": "noon"}))
    with pytest.raises(HarnessError, match=r"by `harness sweep --resume` \(pid 1 on node-7, since noon\); wait "
                                           r"for it to end, or, if that process is gone, delete .*\.lock$"):
        StudyLock(folder, "sweep").__enter__()


@pytest.mark.parametrize("command", ["sweep", "check"])
@pytest.mark.parametrize("storage", ["/proc/studies", "a-file", "a-file/below"])
def test_storage_that_cannot_be_written_is_one_line_before_any_work(tmp_path, capsys, storage, command):
    (tmp_path / "a-file").write_text("not a folder")
    started = time.monotonic()
    assert main([command, str(_spec(tmp_path)), "--storage", str(tmp_path / storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: storage: cannot write ") and len(err.splitlines()) == 1
    assert time.monotonic() - started < 5  # no teacher trained, no Ray started


def test_a_study_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    storage = tmp_path / "studies"
    storage.mkdir()
    (storage / SPEC["study"]).write_text("not a folder")
    assert main(["sweep", str(_spec(tmp_path)), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: storage: cannot write ") and "File exists" in err and "\n" not in err
