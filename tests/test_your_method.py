"""A researcher's own method, from a package outside the project, benchmarked beside ours:
its studies and a `kd` study on the same pair, through the command line as a user runs them,
on one leaderboard (docs/adding-a-method.md)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SMOOTH_KD = textwrap.dedent('''
    """KD whose hard-label term uses label smoothing."""
    from dataclasses import dataclass

    import torch
    import torch.nn.functional as F

    from methods.base import SupervisedMethod, TrainParams
    from methods.knobs import POSITIVE, UNIT, knob


    @dataclass
    class SmoothParams(TrainParams):
        tau: float = knob(4.0, POSITIVE, help="softmax temperature")
        alpha: float = knob(0.9, UNIT, help="weight of the soft targets")
        smoothing: float = knob(0.1, UNIT, help="label smoothing of the hard-label term")


    class SmoothKD(SupervisedMethod):
        Params = SmoothParams

        def loss(self, x, y):
            with torch.no_grad():
                teacher = self.ctx.teacher(x)
            student = self.ctx.student(x)
            p = self.params
            soft = F.kl_div(F.log_softmax(student / p.tau, 1), F.softmax(teacher / p.tau, 1), reduction="batchmean")
            hard = F.cross_entropy(student, y, label_smoothing=p.smoothing)
            return (1 - p.alpha) * hard + p.alpha * p.tau ** 2 * soft
''')


def _spec(folder: Path, study: str, method: str, space: dict) -> Path:
    spec = {"study": study, "method": method, "dataset": {"name": "digits"},
            "teacher": {"model": "lenet5", "recipe": {"epochs": 3, "batch_size": 64}},
            "student": {"model": "lenet5_half"}, "budget": {"epochs": 4}, "asha": {"grace_period": 4},
            "search": {"num_samples": 3, "space": {"lr": {"loguniform": [0.005, 0.02]}, **space}},
            "measure": {"repeats": 3}}
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _harness(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_an_outside_method_lands_on_the_leaderboard_beside_kd(tmp_path):
    package = tmp_path / "smoothing"
    package.mkdir()
    (package / "__init__.py").write_text(SMOOTH_KD)
    storage = tmp_path / "studies"
    ours = _spec(tmp_path, "kd-beside", "kd", {})
    theirs = _spec(tmp_path, "smooth-beside", "smoothing:SmoothKD", {"smoothing": {"uniform": [0.0, 0.2]}})
    _harness("sweep", str(ours), "--storage", str(storage), "--progress", "quiet", cwd=ROOT)
    _harness("sweep", str(theirs), "--storage", str(storage), "--code", str(package), "--progress", "quiet",
             cwd=ROOT)
    _harness("leaderboard", str(storage), cwd=ROOT)

    board = pd.read_parquet(storage / "leaderboard.parquet").set_index("study")
    assert set(board.index) == {"kd-beside", "smooth-beside"}
    assert board.loc["smooth-beside", "method"] == "smoothing:SmoothKD"
    same = ["dataset", "pair"]
    assert board.loc["smooth-beside", same].tolist() == board.loc["kd-beside", same].tolist()
    assert sorted(board["rank"]) == [1, 2] and board["test_acc_mean"].notna().all()
    trials = pd.read_parquet(storage / "smooth-beside" / "trials.parquet")
    assert set(trials["method"]) == {"smoothing:SmoothKD"} and (trials["status"] == "completed").any()
    study = json.loads((storage / "smooth-beside" / "study.json").read_text())
    assert study["spec"]["method"] == "smoothing:SmoothKD"
