"""The whole way a user takes (slow: ``uv run pytest -m slow``): a torchvision ResNet-18
teacher and a student from a factory of the user's, shipped with the job, on a folder of
their images; KD, C2S2 and L1 + KD studies; the best of each exported to ONNX and run by
ONNX Runtime in a script that knows nothing of the harness."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.torchvision_files import write_image_folder

pytestmark = pytest.mark.slow

FACTORY = '''
from torch import nn


def small_cnn(num_classes, input_shape, channels=16):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1, stride=2), nn.BatchNorm2d(2 * channels), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * channels, num_classes))
'''

# What a deployment runs: the PNGs of the test folder, scaled as the model card says.
DEPLOY = '''
import json, sys
from pathlib import Path
import numpy as np, onnxruntime as ort
from PIL import Image

model, root = sys.argv[1], Path(sys.argv[2])
classes = sorted(p.name for p in (root / "train").iterdir())
xs, ys = [], []
for k, name in enumerate(classes):
    for path in sorted((root / "test" / name).iterdir()):
        xs.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255)
        ys.append(k)
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
logits = session.run(None, {"images": np.stack(xs)})[0]
print(json.dumps({"acc": float((logits.argmax(1) == np.array(ys)).mean()), "images": len(ys),
                  "params": int(session.get_modelmeta().custom_metadata_map["params"])}))
'''

STUDIES = {  # method, student, search space
    "shop-kd": ("kd", {"model": "shopnets.nets:small_cnn", "kwargs": {"channels": 16}},
                {"lr": {"loguniform": [0.01, 0.05]}, "batch_size": 16}),
    "shop-c2s2": ("c2s2", {"model": "torchvision:resnet18"},
                  {"target_ratio": 0.5, "max_damage": 0.5, "prune_epochs": 1, "batch_size": 16}),
    "shop-l1kd": ("filter_pruning_kd", {"model": "torchvision:resnet18"}, {"ratio": 0.5, "batch_size": 16}),
}


def _run(*args: str, cwd: Path) -> str:
    run = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_a_users_resnet18_and_factory_on_their_images_end_as_smaller_onnx_files(tmp_path):
    images, storage, out = tmp_path / "images", tmp_path / "studies", tmp_path / "out"
    code = tmp_path / "code" / "shopnets"  # the user's package, on no path of the workers'
    write_image_folder(images, per_class=(30, 10), size=32)
    code.mkdir(parents=True)
    (code / "nets.py").write_text(FACTORY)
    (tmp_path / "deploy.py").write_text(DEPLOY)
    for study, (method, student, space) in STUDIES.items():
        spec = tmp_path / f"{study}.yaml"
        spec.write_text(yaml.safe_dump({
            "study": study, "method": method, "dataset": {"name": "imagefolder", "root": str(images),
                                                          "val_fraction": 0.2},
            "teacher": {"model": "torchvision:resnet18", "recipe": {"epochs": 5, "lr": 0.05, "batch_size": 16}},
            "student": student, "budget": {"epochs": 3}, "asha": {"grace_period": 3}, "measure": {"rounds": 1},
            "search": {"searcher": "random", "num_samples": 1, "space": space}}))
        _run("-m", "harness", "sweep", str(spec), "--code", str(code), "--storage", str(storage), cwd=tmp_path)
        row = pd.read_parquet(storage / study / "trials.parquet").iloc[0]
        assert row["status"] == "completed"
        if method != "kd":  # the pruned ResNet-18 is physically smaller than the teacher
            assert row["params"] < 0.8 * row["teacher_params"]
        printed = _run("-m", "harness", "export", str(storage / study), "--best", "--format", "onnx",
                       "-o", str(out), cwd=tmp_path)
        assert "recomputed from the file" in printed
        exported = out / f"{study}-{row['trial_id']}.onnx"
        card = json.loads(Path(f"{exported}.json").read_text())
        outside = json.loads(subprocess.run(
            [sys.executable, str(tmp_path / "deploy.py"), str(exported), str(images)], capture_output=True,
            text=True, check=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}).stdout)
        assert abs(outside["acc"] - row["test_acc"]) <= 1 / outside["images"] + 1e-9
        assert outside["params"] == card["params"] == row["params"]
