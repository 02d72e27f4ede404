"""`harness export`: a study's students as files that load without the harness, at the
accuracy and size their rows state, with a model card."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli.main import main
from harness.deploy.export import chosen_rows
from tests.support.specs import small_spec

ROOT = Path(__file__).resolve().parents[1]

# Run from a folder outside the project with nothing of the harness imported: what a deployment has.
ONNX_SCRIPT = """
import json, sys, numpy as np, onnxruntime as ort
from sklearn.datasets import load_digits
import torch, torch.nn.functional as F
card = json.load(open(sys.argv[1] + ".json"))
images = torch.from_numpy(load_digits().images).float()[:, None] / 16.0
images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
x = ((images.clamp(0, 1) * 255).round() / 255).numpy().astype(np.float32)  # uint8 pixels / 255, as the card says
order = np.random.default_rng(0).permutation(len(x))
test = np.sort(order[:len(x) // 5])
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
logits = session.run(None, {"images": x[test]})[0]
print(json.dumps({"acc": float((logits.argmax(1) == load_digits().target[test]).mean()), "card_acc": card["test_acc"],
                  "params": int(session.get_modelmeta().custom_metadata_map["params"])}))
"""


@pytest.fixture(scope="module")
def studies(ray_session, tmp_path_factory, teacher_cache) -> Path:
    """A KD study and an L1 + KD pruning study on digits, two and one trials."""
    from harness.study.sweep import run_sweep

    storage = tmp_path_factory.mktemp("studies")
    (storage / "teachers").symlink_to(teacher_cache, target_is_directory=True)  # the session's teachers
    run_sweep(small_spec(**{"study": "kd-x", "search.searcher": "random", "budget.epochs": "3",
                            "asha.grace_period": "3", "measure.rounds": "1"}), storage=str(storage))
    run_sweep(small_spec(**{"study": "l1-x", "method": "filter_pruning_kd", "student.width": "1.0",
                            "search.searcher": "random", "search.num_samples": "1", "search.space": "{ratio: 0.5}",
                            "budget.epochs": "2", "asha.grace_period": "2", "measure.rounds": "1"}),
              storage=str(storage))
    return storage


def test_onnx_export_runs_outside_the_project_at_the_rows_accuracy(studies, tmp_path, capsys):
    assert main(["export", str(studies / "kd-x"), "--best", "--format", "onnx", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "the best on validation over all 1 seed(s)" in out and "; onnxruntime b64 " in out
    (exported,) = tmp_path.glob("*.onnx")
    card = json.loads(Path(f"{exported}.json").read_text())
    trials = pd.read_parquet(studies / "kd-x" / "trials.parquet")
    done = trials[trials["status"].eq("completed")]
    best = done.sort_values(["val_acc", "trial_id"], ascending=[False, True])["trial_id"].iloc[0]  # ties: lowest id
    trials = trials.set_index("trial_id")
    assert card["trial"] == best and card["params"] == trials.loc[best, "params"]
    # Timed at the trial's threads (one: resources.cpu 1) and the measurement batch, the file itself in ONNX Runtime.
    assert {k: (t["runtime"], t["threads"], list(t["batch"])) for k, t in card["targets"].items()} == \
        {"default": ("torch", 1, ["64"]), "onnxruntime": ("onnxruntime", 1, ["64"])}
    assert card["targets"]["onnxruntime"]["timed"] == "this file"
    script = tmp_path / "deploy.py"
    script.write_text(ONNX_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(exported)], capture_output=True, text=True,
                         cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(run.stdout)
    assert abs(figures["acc"] - figures["card_acc"]) <= 1 / 359 + 1e-9  # within one test image
    assert figures["params"] == trials.loc[best, "params"]
    assert Path(f"{exported}.md").read_text().startswith("# kd-x / ")


def test_a_pruned_student_is_exported_at_its_pruned_shapes_in_every_format(studies, tmp_path, capsys):
    row = pd.read_parquet(studies / "l1-x" / "trials.parquet").iloc[0]
    assert row["params"] < row["teacher_params"]
    for fmt in ("pt2", "onnx", "state_dict"):
        assert main(["export", str(studies / "l1-x"), "--trial", row["trial_id"], "--format", fmt,
                     "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"{int(row['params']):,} parameters (row: {int(row['params']):,})") == 3
    program = next(tmp_path.glob("*.pt2"))
    code = ("import sys, torch; m = torch.export.load(sys.argv[1]).module(); "
            "print(sum(p.numel() for p in m.parameters()), tuple(m(torch.rand(5, 1, 28, 28)).shape))")
    run = subprocess.run([sys.executable, "-c", code, str(program)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stdout.split()[0] == str(int(row["params"])) and "(5, 10)" in run.stdout


@pytest.mark.parametrize("args, message", [
    (["--trial", "s0-nothing"], "--trial: the study has no trial 's0-nothing'"),
    (["--format", "onnx", "-o", "/proc/no"], None),
])
def test_export_errors_are_one_line(studies, tmp_path, capsys, args, message):
    assert main(["export", str(studies / "kd-x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and (message is None or message in err)
    assert main(["export", str(tmp_path)]) == 2
    assert "no study results here" in capsys.readouterr().err


def test_the_front_keeps_the_trials_no_other_beats_on_every_objective():
    spec = small_spec(**{"search.objectives": "[{metric: val_acc, mode: max}, {metric: latency_ms, mode: min}]"})
    trials = pd.DataFrame({"trial_id": list("abcd"), "seed": 0, "status": "completed",
                           "val_acc": [0.9, 0.95, 0.85, 0.95], "latency_ms": [1.0, 2.0, 1.5, 3.0]})
    rows, how = chosen_rows(trials, spec, None, front=True)
    assert rows["trial_id"].tolist() == ["a", "b"] and "Pareto front over val_acc, latency_ms" in how
    best, how = chosen_rows(trials, spec, None, front=False)
    assert best["trial_id"].tolist() == ["b"] and "best on validation" in how
    assert np.isclose(best["val_acc"].iloc[0], 0.95)


@pytest.mark.parametrize("edit", ["accuracy", "checkpoint"])
def test_an_export_that_does_not_reproduce_its_row_is_refused_without_a_card(studies, tmp_path, capsys, edit):
    import shutil

    folder = tmp_path / "kd-x"
    shutil.copytree(studies / "kd-x", folder)
    trials = pd.read_parquet(folder / "trials.parquet")
    done = trials.index[trials["status"].eq("completed")]
    assert len(done) == 2
    first, second = done
    if edit == "accuracy":  # two test images' worth: more than the one image an export may differ by
        trials.loc[first, "test_acc"] += 2 / 359
    else:  # the row names another trial's checkpoint: other weights, same shapes
        trials.loc[first, "student_state"] = trials.loc[second, "student_state"]
    trials.to_parquet(folder / "trials.parquet", index=False)
    shutil.rmtree(folder / "parts", ignore_errors=True)
    out = tmp_path / "out"
    assert main(["export", str(folder), "--trial", trials.loc[first, "trial_id"], "--format", "onnx",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    refused = (f"does not reproduce trial {trials.loc[first, 'trial_id']}" if edit == "accuracy" else
               f"holds trial {trials.loc[second, 'trial_id']}'s student; the row and the checkpoint do not belong")
    assert err.count("\n") == 1 and refused in err, err
    assert not list(out.glob("*.json")) and not list(out.glob("*.md"))
