"""Chains of methods: a study whose student (or teacher) is another study's trained network,
with its weights and pruned shapes, its lineage in every row, ranked as a method of its own."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.cli.main import main
from harness.errors import HarnessError
from harness.store.tables import read_table
from tests.support.drivers import finish, wait_for
from tests.support.specs import small_spec

ROOT = Path(__file__).resolve().parents[1]
PRUNE = {"method": "filter_pruning_kd", "student.width": "1.0", "search.searcher": "random",
         "search.num_samples": "1", "search.space": "{ratio: 0.5, batch_size: 32}", "budget.epochs": "2",
         "asha.grace_period": "2", "measure.rounds": "1"}
# A KD step that barely moves the weights: its trial's accuracy is its parent's if it started from them.
STILL = {"method": "kd", "search.searcher": "random", "search.num_samples": "1",
         "search.space": "{lr: 1.0e-9, batch_size: 64}", "budget.epochs": "1", "asha.grace_period": "1",
         "measure.rounds": "1"}


def chained(study: str, parent: Path, role: str = "student", **changes: str):
    """A spec whose ``role`` comes from the study in ``parent``, read from its file as a user's is."""
    from harness.spec.load import load_spec

    raw = json.loads(json.dumps(small_spec(**{"study": study, **changes}).to_dict()))
    raw["search"]["space"] = {k: ({v["kind"]: v["args"]} if isinstance(v, dict) else v)
                              for k, v in raw["search"]["space"].items()}
    raw[role] = {"from_study": str(parent)}
    path = parent.parent / f"{study}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


@pytest.fixture(scope="module")
def storage(ray_session, tmp_path_factory, teacher_cache) -> Path:
    """An L1 pruning study of LeNet-5-half on digits (one trial): the chains' first step."""
    from harness.study.sweep import run_sweep

    storage = tmp_path_factory.mktemp("studies")
    (storage / "teachers").symlink_to(teacher_cache, target_is_directory=True)
    run_sweep(small_spec(**{"study": "l1", **PRUNE}), storage=str(storage))
    return storage


def _only(folder: Path) -> pd.Series:
    trials = pd.read_parquet(folder / "trials.parquet")
    assert len(trials) == 1 and trials["status"].iloc[0] == "completed"
    return trials.iloc[0]


def test_a_chained_student_starts_from_its_parent_trial_at_its_pruned_shapes(storage, tmp_path, capsys):
    from harness.study.sweep import run_sweep

    parent = _only(storage / "l1")
    run_sweep(chained("l1-kd", storage / "l1", **STILL), storage=str(storage))
    assert f"student: trial {parent['trial_id']} of 'l1' (filter_pruning_kd;" in capsys.readouterr().out
    child = _only(storage / "l1-kd")
    # The parent's network: its pruned parameter count and, the weights hardly trained, its accuracy.
    assert child["params"] == parent["params"]
    assert (child["val_acc"], child["test_acc"]) == (parent["val_acc"], parent["test_acc"])
    assert (child["method"], child["chain"]) == ("filter_pruning_kd > kd", "filter_pruning_kd > kd")
    assert (child["parent_study"], child["parent_trial"]) == (str(storage / "l1"), parent["trial_id"])
    record = json.loads((storage / "l1-kd" / "study.json").read_text())
    assert record["lineage"]["chain"] == ["filter_pruning_kd", "kd"]
    assert record["spec"]["student"]["trial"] == parent["trial_id"]  # "best", as the trial it was

    # A third step chains from the second: the chain grows, the network stays the pruned one.
    run_sweep(chained("l1-kd-kd", storage / "l1-kd", **STILL), storage=str(storage))
    grandchild = _only(storage / "l1-kd-kd")
    assert grandchild["chain"] == "filter_pruning_kd > kd > kd" and grandchild["params"] == parent["params"]

    # Exported from its own checkpoint (the parent is not read again): the file reproduces the row.
    shutil.move(storage / "l1-kd-kd", tmp_path / "moved")
    assert main(["export", str(tmp_path / "moved"), "--format", "state_dict", "-o", str(tmp_path / "out")]) == 0
    assert "recomputed from the file" in capsys.readouterr().out
    (card,) = (tmp_path / "out").glob("*.pt.json")
    card = json.loads(card.read_text())
    assert card["method"] == "filter_pruning_kd > kd > kd" and card["parent"]["study"] == str(storage / "l1-kd")
    shutil.move(tmp_path / "moved", storage / "l1-kd-kd")

    # Measured again from its own checkpoints, as any study is.
    assert main(["remeasure", str(storage / "l1-kd"), "--rounds", "1"]) == 0
    assert pd.read_parquet(storage / "l1-kd" / "trials.parquet")["latency_rounds"].iloc[0] == 1

    # The leaderboard ranks each chain as a method of its own beside the single method.
    assert main(["leaderboard", str(storage), "--no-remeasure"]) == 0
    board = pd.read_parquet(storage / "leaderboard.parquet")
    default = board[board["target"].eq("default")].set_index("study")
    assert default.loc["l1-kd", "method"] == "filter_pruning_kd > kd"
    assert default.loc["l1-kd-kd", "method"] == "filter_pruning_kd > kd > kd"
    assert default.loc["l1", "method"] == "filter_pruning_kd"
    assert default["rank"].notna().all()


def test_a_chained_teacher_is_the_parent_trial(storage, capsys):
    from harness.study.sweep import run_sweep

    parent = _only(storage / "l1")
    spec = chained("kd-from-l1", storage / "l1", role="teacher", **{**STILL, "search.space": "{lr: 0.02}"})
    run_sweep(spec, storage=str(storage))
    assert f"(trial {parent['trial_id']} of 'l1')" in capsys.readouterr().out
    child = _only(storage / "kd-from-l1")
    assert (child["teacher_test_acc"], child["teacher_params"]) == (parent["test_acc"], parent["params"])
    assert child["method"] == "kd" and pd.isna(child.get("chain"))  # the student is new: no chain


def _check(spec: dict, tmp_path: Path, capsys) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_a_bad_parent_is_one_line_before_any_work(storage, tmp_path, capsys):
    base = {"study": "bad", "method": "kd", "dataset": {"name": "digits"},
            "teacher": {"model": "lenet5_half", "recipe": {"epochs": 2, "batch_size": 64}},
            "student": {"from_study": str(storage / "l1")}, "search": {"num_samples": 1}}
    assert "no study at" in _check({**base, "student": {"from_study": str(tmp_path / "none")}}, tmp_path, capsys)
    assert "leave out model" in _check({**base, "student": {"from_study": str(storage / "l1"), "model": "lenet5"}},
                                       tmp_path, capsys)
    assert "ran on other data (split_seed 0 against 3)" in _check(
        {**base, "dataset": {"name": "digits", "split_seed": 3}}, tmp_path, capsys)
    assert "has no trial 's0-nope'" in _check({**base, "student": {"from_study": str(storage / "l1"),
                                                                   "trial": "s0-nope"}}, tmp_path, capsys)
    # A parent still running (no end recorded), and one whose trial was stopped early.
    running = tmp_path / "running"
    shutil.copytree(storage / "l1", running)
    record = json.loads((running / "study.json").read_text())
    (running / "study.json").write_text(json.dumps({**record, "ended_at": None}))
    assert "has not finished" in _check({**base, "student": {"from_study": str(running)}}, tmp_path, capsys)
    (running / "study.json").write_text(json.dumps(record))
    trials = read_table(running, "trials").assign(status="stopped")
    trials.to_parquet(running / "trials.parquet")
    trial = trials["trial_id"].iloc[0]
    assert f"trial '{trial}' of {running} is stopped" in _check(
        {**base, "student": {"from_study": str(running), "trial": trial}}, tmp_path, capsys)
    assert "no completed trial" in _check({**base, "student": {"from_study": str(running)}}, tmp_path, capsys)


def test_a_parent_on_other_splits_stops_the_sweep_before_ray(storage, tmp_path):
    from harness.study.sweep import run_sweep

    other = tmp_path / "other"
    shutil.copytree(storage / "l1", other)
    record = json.loads((other / "study.json").read_text())
    record["dataset"]["fingerprint"] = "0123456789abcdef"  # same settings, other images (another release)
    (other / "study.json").write_text(json.dumps(record))
    with pytest.raises(HarnessError, match="ran on other splits"):
        run_sweep(chained("on-other", other, **STILL), storage=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "on-other" / "trials.parquet").exists()


@pytest.mark.slow
def test_a_chained_study_resumes_after_its_driver_is_killed_with_its_lineage(storage, tmp_path):
    chained("l1-kd-long", storage / "l1", **{**STILL, "search.space": "{lr: {loguniform: [0.001, 0.01]}, "
                                                                   "batch_size: 4}",
                                          "search.num_samples": "3", "budget.epochs": "10",
                                          "asha.grace_period": "10"})
    path = storage / "l1-kd-long.yaml"  # the file chained() wrote: from_study, as a user writes it
    folder = storage / "l1-kd-long"

    def sweep(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "harness", "sweep", str(path), "--storage", str(storage),
                                 *extra], cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "RAY_ADDRESS": ""})

    driver = sweep()

    def half_way():
        epochs = read_table(folder, "epochs") if (folder / "study.json").exists() else pd.DataFrame()
        return True if len(epochs) and epochs.groupby("trial_id")["epoch"].max().max() >= 4 else None

    wait_for(half_way, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    out = finish(sweep("--resume"))
    assert "resuming" in out
    trials = pd.read_parquet(folder / "trials.parquet")
    kept = trials[trials["status"] != "lost"]
    assert len(kept) == 3 and set(kept["status"]) == {"completed"}, out[-2000:]
    parent = _only(storage / "l1")
    assert set(trials["chain"]) == {"filter_pruning_kd > kd"} and set(trials["parent_trial"]) == {parent["trial_id"]}
    assert (kept["params"] == parent["params"]).all()  # every trial, resumed or not, on the parent's network
    assert (kept["resumes"] >= 1).any()
    assert json.loads((folder / "study.json").read_text())["lineage"]["student"]["trial"] == parent["trial_id"]


@pytest.mark.slow
def test_the_shipped_chain_runs_step_by_step_onto_one_leaderboard(teacher_cache, tmp_path, monkeypatch):
    """search_spaces/examples/chain/: prune, distil into the pruned network, quantize it; made small."""
    monkeypatch.chdir(tmp_path)  # its from_study paths are relative to where the harness runs
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "teachers").symlink_to(teacher_cache, target_is_directory=True)
    steps = ROOT / "search_spaces" / "examples" / "chain"
    small = ["--num-samples", "2", "--set", "budget.epochs=2", "--set", "asha.grace_period=1"]
    assert main(["sweep", str(steps / "1-prune.yaml"), *small]) == 0
    assert main(["sweep", str(steps / "2-distil.yaml"), *small]) == 0
    assert main(["sweep", str(steps / "3-int8.yaml"), "--num-samples", "2"]) == 0
    assert main(["leaderboard", "studies", "--no-remeasure"]) == 0
    board = pd.read_parquet(tmp_path / "studies" / "leaderboard.parquet")
    assert set(board.loc[board["target"].eq("ort_int8"), "method"]) == {"c2s2", "c2s2 > kd", "c2s2 > kd > ptq"}
    assert set(board.loc[board["target"].eq("ort_fp32"), "method"]) == {"c2s2", "c2s2 > kd"}
