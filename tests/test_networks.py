"""Networks from outside the zoo: torchvision builders, a user's factory shipped with the
job, their features split, and the one-line errors before anything runs."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torchvision
import yaml

from harness.cli.main import main
from harness.errors import SpecError
from harness.networks.build import build_network, check_network
from methods.surgery import ChannelSurgeon
from tests.support.specs import small_spec

USER_CODE = '''
from torch import nn


def build(num_classes, input_shape, channels=8):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1, stride=2), nn.BatchNorm2d(2 * channels), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * channels, num_classes))


def rgb_only(num_classes, input_shape):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, num_classes))


def broken(num_classes, input_shape):
    raise RuntimeError("no layer fits")


def not_a_module(num_classes, input_shape):
    return "a string"
'''


@pytest.fixture
def user_code(tmp_path) -> Path:
    """A package of the user's, outside the project and outside sys.path."""
    folder = tmp_path / "outside" / "usernets"
    folder.mkdir(parents=True)
    (folder / "nets.py").write_text(USER_CODE)
    return folder


def _model(name: str, features: str | None = None, **kwargs) -> SimpleNamespace:
    return SimpleNamespace(model=name, width=1.0, kwargs=kwargs, features=features)


def test_a_torchvision_network_split_at_a_node_computes_what_it_computes_whole():
    net = build_network(_model("torchvision:resnet18", "avgpool"), 10, (1, 28, 28), "teacher").eval()
    x = torch.randn(3, 1, 28, 28)  # grayscale: repeated to the 3 channels ResNet-18 takes
    features = net.features(x)
    assert features.shape == (3, 512, 1, 1) and net(x).shape == (3, 10)
    assert torch.equal(net.classifier(features), net(x))
    copied = copy.deepcopy(net)  # methods copy networks: the copy's split runs the copy's layers
    with torch.no_grad():
        copied.net.fc.weight.zero_()
        copied.net.fc.bias.zero_()
    assert torch.count_nonzero(copied.classifier(copied.features(x))) == 0 and torch.count_nonzero(net(x)) > 0
    bare = torchvision.models.resnet18(num_classes=10)  # a state_dict saved from the user's own network loads
    net.load_state_dict(bare.state_dict())
    assert torch.equal(net.net.conv1.weight, bare.conv1.weight)


def test_channels_removed_by_torch_pruning_shrink_the_split_network_too():
    net = build_network(_model("torchvision:resnet18", "avgpool"), 10, (1, 28, 28), "student").eval()
    before = sum(p.numel() for p in net.parameters())
    surgeon = ChannelSurgeon(net, torch.randn(1, 1, 28, 28))
    surgeon.remove(surgeon.units()[1], range(16))
    x = torch.randn(2, 1, 28, 28)
    assert sum(p.numel() for p in net.parameters()) < before
    assert torch.allclose(net.classifier(net.features(x)), net(x))


@pytest.mark.parametrize("model, field, message", [
    (_model("torchvision:resnet18", "avgpol"), "student", r"^student.features: the network has no node 'avgpol' "
                                                         r"\(did you mean 'avgpool'\?\)$"),
    (_model("torchvision:resnet18", "layer4.1.bn2"), "student", r"a skip connection crosses it"),
    (_model("torchvision:resnet18", "fc"), "teacher", r"is the network's output"),
    (_model("torchvision:resnt18"), "teacher", r"^teacher.model: torchvision has no classification model "
                                               r"'resnt18' \(did you mean 'resnet18'\?\)$"),
    (_model("usernets.nets:broken"), "student", r"^student: usernets.nets:broken\(num_classes=10, input_shape="
                                                r"\(1, 28, 28\), \*\*\{\}\) raised RuntimeError: no layer fits$"),
    (_model("usernets.nets:not_a_module"), "student", r"returned str, not a torch.nn.Module"),
    (_model("usernets.nets:nothing"), "student", r"'usernets.nets' has no function 'nothing'"),
    (_model("nowhere.nets:build"), "student", r"cannot import 'nowhere.nets' \(ModuleNotFoundError"),
])
def test_networks_that_cannot_be_built_are_one_line(user_code, monkeypatch, model, field, message):
    monkeypatch.syspath_prepend(str(user_code.parent))
    with pytest.raises(SpecError, match=message) as caught:
        build_network(model, 10, (1, 28, 28), field)
    assert "\n" not in str(caught.value)


def test_a_network_whose_input_does_not_fit_the_data_is_one_line(user_code, monkeypatch):
    monkeypatch.syspath_prepend(str(user_code.parent))
    net = build_network(_model("usernets.nets:rgb_only"), 10, (1, 28, 28), "student")  # 28x28, not 32x32
    with pytest.raises(SpecError, match=r"^student: the network does not take this data's images of shape "
                                        r"\(1, 28, 28\) \(channels, height, width\): RuntimeError: "):
        check_network(net, (1, 28, 28), "student")


@pytest.mark.parametrize("changes, message", [
    ({"student.model": "torchvision:resnet18", "student.width": "0.5"}, r"^student.width: scales zoo models only"),
    ({"student.kwargs": "{channels: 4}"}, r"^student: kwargs and features are for models outside the zoo"),
    ({"method": "kdgan", "student.model": "torchvision:resnet18", "student.width": "1.0"},
     r"^student.features: this method reads"),
    ({"code": "[/no/such/folder]"}, r"^code\[0\]: '/no/such/folder' is not a folder"),
    ({"method": "filter_pruning_kd", "teacher.model": "torchvision:resnet18", "student.model": "torchvision:resnet18",
      "student.width": "1.0", "student.kwargs": "{groups: 2}"}, r"width and kwargs must equal the teacher's"),
])
def test_spec_fields_of_outside_networks_are_checked_before_any_data(changes, message):
    with pytest.raises(SpecError, match=message):
        small_spec(**changes)


def _spec_file(tmp_path: Path, **fields) -> Path:
    spec = {"study": "outside", "method": "kd", "teacher": {"model": "lenet5_half", "recipe": {"epochs": 2}},
            "student": {"model": "usernets.nets:build", "kwargs": {"channels": 4}},
            "budget": {"epochs": 2}, "asha": {"grace_period": 2},
            "search": {"searcher": "random", "num_samples": 2, "space": {"lr": {"loguniform": [0.01, 0.05]}}},
            "measure": {"repeats": 3, "rounds": 1}, **fields}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_check_builds_the_networks_on_the_data_and_names_the_one_that_does_not_fit(tmp_path, user_code, capsys):
    assert main(["check", str(_spec_file(tmp_path)), "--code", str(user_code), "--storage", str(tmp_path)]) == 0
    assert "ok: " in capsys.readouterr().out
    spec = _spec_file(tmp_path, student={"model": "usernets.nets:rgb_only"})
    assert main(["check", str(spec), "--code", str(user_code), "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: student: the network does not take this data's images") and "\n" not in err


@pytest.mark.parametrize("fields, message", [
    ({"method": "kdgan", "student": {"model": "torchvision:resnet18", "features": "avgpol"}},
     "error: student.features: the network has no node 'avgpol' (did you mean 'avgpool'?)"),
    ({"student": {"model": "usernets.nets:broken"}},
     "error: student: usernets.nets:broken(num_classes=10, input_shape=(1, 28, 28), **{}) raised RuntimeError: "
     "no layer fits"),
    ({"teacher": {"model": "usernets.nets:rgb_only"}},
     "error: teacher: the network does not take this data's images of shape (1, 28, 28)"),
])
def test_a_sweep_of_a_network_that_cannot_run_stops_in_one_line_with_exit_2(tmp_path, user_code, capsys, fields,
                                                                             message):
    spec = _spec_file(tmp_path, **fields)
    assert main(["sweep", str(spec), "--code", str(user_code), "--storage", str(tmp_path / "studies")]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(message) and "\n" not in err
    assert "training teacher" not in captured.out and not list((tmp_path / "studies").rglob("*.parquet"))


@pytest.mark.slow  # two studies in their own processes and Rays: a whole user scenario
def test_a_user_network_from_shipped_code_is_distilled_and_pruned_smaller(tmp_path, user_code):
    """The sweep runs in its own process and Ray: the workers import the user's package only
    because it travels with the job (it is on no path of theirs)."""
    storage = tmp_path / "studies"
    kd = _spec_file(tmp_path)
    pruned = tmp_path / "prune.yaml"
    pruned.write_text(yaml.safe_dump({
        "study": "outside-l1", "method": "filter_pruning_kd",
        "teacher": {"model": "usernets.nets:build", "kwargs": {"channels": 8}, "recipe": {"epochs": 2}},
        "student": {"model": "usernets.nets:build", "kwargs": {"channels": 8}},
        "budget": {"epochs": 2}, "asha": {"grace_period": 2},
        "search": {"searcher": "random", "num_samples": 1, "space": {"ratio": 0.5}},
        "measure": {"repeats": 3, "rounds": 1}}))
    for spec in (kd, pruned):
        run = subprocess.run([sys.executable, "-m", "harness", "sweep", str(spec), "--code", str(user_code),
                              "--storage", str(storage)], capture_output=True, text=True, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
    trials = pd.read_parquet(storage / "outside" / "trials.parquet")
    assert set(trials["status"]) == {"completed"} and trials["params"].notna().all()
    l1 = pd.read_parquet(storage / "outside-l1" / "trials.parquet").iloc[0]
    assert l1["status"] == "completed" and l1["params"] < l1["teacher_params"]
