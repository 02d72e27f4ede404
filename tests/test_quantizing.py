"""The quantizing methods: ``ptq`` (the teacher, or a chain's student, quantized to int8 with
searched settings) and ``qat`` (fine-tuned against int8 rounding first); their accuracy and
size are the int8 network's, ranked on int8 targets beside the trained methods."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli.main import main
from harness.errors import SpecError
from tests.support.specs import small_spec

INT8 = "{ort_int8: {runtime: onnxruntime, batch: 1, precision: int8}}"
PTQ = {"method": "ptq", "student.model": "lenet5_half", "student.width": "1.0", "budget.epochs": "1",
       "asha.grace_period": "1", "search.searcher": "random", "search.num_samples": "3", "measure.rounds": "1",
       "deploy.targets": INT8,
       "search.space": "{calibration: {categorical: [16, 200]}, per_channel: {categorical: [true, false]}, "
                       "calibrate: {categorical: [minmax, entropy, percentile]}, symmetric: false}"}


def test_a_ptq_spec_that_cannot_run_is_one_line():
    with pytest.raises(SpecError, match=r"deploy.targets: 'ptq' quantizes to int8 .* precision: int8"):
        small_spec(**{**PTQ, "deploy.targets": "{}"})
    with pytest.raises(SpecError, match="budget.epochs: ptq trains nothing and reports once; set it to 1, not 3"):
        small_spec(**{**PTQ, "budget.epochs": "3"})
    with pytest.raises(SpecError, match="student: ptq quantizes the teacher itself"):
        small_spec(**{**PTQ, "student.width": "0.5"})
    with pytest.raises(SpecError, match="calibrate"):
        small_spec(**{**PTQ, "search.space": "{calibrate: histogram}"})


@pytest.fixture(scope="module")
def storage(ray_session, tmp_path_factory, teacher_cache) -> Path:
    """A ptq study of LeNet-5-half on digits (three settings), and a KD study with the same int8 target."""
    from harness.study.sweep import run_sweep

    storage = tmp_path_factory.mktemp("studies")
    (storage / "teachers").symlink_to(teacher_cache, target_is_directory=True)
    run_sweep(small_spec(**{"study": "ptq", **PTQ}), storage=str(storage))
    run_sweep(small_spec(**{"study": "kd", "search.searcher": "random", "search.num_samples": "1",
                            "search.space": "{lr: 0.02}", "budget.epochs": "2", "asha.grace_period": "2",
                            "measure.rounds": "1", "deploy.targets": INT8}), storage=str(storage))
    return storage


def test_each_trial_is_its_int8_network_quantized_with_its_own_settings(storage):
    trials = pd.read_parquet(storage / "ptq" / "trials.parquet").set_index("trial_id")
    assert set(trials["status"]) == {"completed"} and set(trials["precision"]) == {"int8"}
    # The trial's own figures are the int8 network's, as the target measured it after the search.
    target = pd.read_parquet(storage / "ptq" / "latencies.parquet").set_index("trial_id")
    for column in ("val_acc", "test_acc", "size_bytes", "fp32_val_acc"):
        assert (trials[column] == target.loc[trials.index, column]).all(), column
    assert (trials["calibration_images"] == trials["param_calibration"]).all()
    assert (trials["size_bytes"] < trials["fp32_size_bytes"] / 2).all()
    # Its float32 network is the teacher: same accuracy in the same runtime as the teacher's own.
    teacher = json.loads((storage / "ptq" / "study.json").read_text())["teacher"]
    assert (abs(trials["fp32_val_acc"] - teacher["val_acc"]) <= 1 / 144 + 1e-9).all()
    # Different settings make different graphs: per-tensor scales are fewer numbers than per-channel.
    sizes = trials.groupby("param_per_channel")["size_bytes"].min()
    assert len(sizes) == 1 or sizes[False] < sizes[True]


def test_ptq_ranks_on_the_int8_target_only_beside_the_trained_methods(storage, tmp_path):
    assert main(["leaderboard", str(storage), "--no-remeasure"]) == 0
    board = pd.read_parquet(storage / "leaderboard.parquet")
    assert set(board.loc[board["target"].eq("default"), "study"]) == {"kd"}  # its float32 rows are the teacher's
    int8 = board[board["target"].eq("ort_int8")].set_index("study")
    assert set(int8.index) == {"kd", "ptq"} and int8["rank"].notna().all()
    trials = pd.read_parquet(storage / "ptq" / "trials.parquet")
    best = trials.sort_values(["val_acc", "trial_id"], ascending=[False, True]).iloc[0]
    assert int8.loc["ptq", "test_acc_mean"] == pytest.approx(best["test_acc"])

    # The exported int8 file is the selected trial's, quantized with its settings: it reproduces its figure.
    assert main(["export", str(storage / "ptq"), "--format", "onnx", "-o", str(tmp_path)]) == 0
    (int8_file,) = tmp_path.glob("*-ort_int8.onnx")
    card = json.loads(Path(f"{int8_file}.json").read_text())
    assert card["trial"] == best["trial_id"] and card["precision"] == "int8"
    assert abs(card["test_acc"] - best["test_acc"]) <= 1 / 359 + 1e-9


def test_ptq_in_a_chain_quantizes_the_parents_network_not_the_teacher(storage, tmp_path):
    from harness.spec.load import load_spec
    from harness.study.sweep import run_sweep

    raw = json.loads(json.dumps(small_spec(**{"study": "kd-ptq", **PTQ}).to_dict()))
    raw["search"]["space"] = {"calibration": 64}
    raw["search"]["num_samples"] = 1
    raw["student"] = {"from_study": str(storage / "kd")}
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(raw))
    run_sweep(load_spec(path), storage=str(storage))
    (row,) = pd.read_parquet(storage / "kd-ptq" / "trials.parquet").to_dict("records")
    (parent,) = pd.read_parquet(storage / "kd" / "trials.parquet").to_dict("records")
    assert row["chain"] == "kd > ptq" and row["params"] == parent["params"]
    assert abs(row["fp32_test_acc"] - parent["test_acc"]) <= 1 / 359 + 1e-9  # the parent's, in ONNX Runtime
    assert np.isfinite(row["val_acc"]) and row["size_bytes"] < row["fp32_size_bytes"]


@pytest.mark.parametrize("count", [7, 200])
def test_any_number_of_calibration_images_quantizes(count):
    """ONNX Runtime's calibrators stack equal batches: a count that is no multiple of the batch still works."""
    from harness.measure.quantize import quantize_int8
    from harness.measure.runtimes import Session, onnx_bytes
    from harness.networks.zoo import create_model

    model = create_model("lenet5_half", 10).eval()
    images = np.random.default_rng(0).random((count, 1, 28, 28), dtype=np.float32)
    for calibrate in ("minmax", "entropy", "percentile"):
        int8 = quantize_int8(onnx_bytes(model, (1, 28, 28)), images, calibrate=calibrate)
        assert Session(int8, (1, 28, 28), "onnxruntime", 1)(images[:3]).shape == (3, 10)


def test_qat_trains_the_student_against_int8_rounding_of_its_weights_and_inputs(digits_data):
    import torch

    import methods
    from tests.support.contexts import method_context

    qat = methods.METHODS.get("qat")
    ctx = method_context("lenet5_half", teacher=None, data=digits_data, epochs=2)
    method = qat(ctx, qat.make_params({"alpha": 0.0, "batch_size": 64, "per_channel": False}))
    x, y = next(iter(digits_data.train.batches(64, shuffle=False)))
    # The training forward is the rounded network's: close to the float one, never equal to it.
    loss = method.loss(x, y)
    plain = torch.nn.functional.cross_entropy(ctx.student(x), y)
    assert loss.item() != plain.item() and abs(loss.item() - plain.item()) < 0.1 * plain.item()
    loss.backward()  # straight through the rounding: every weight gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in ctx.student.named_parameters()
               if n.endswith("weight"))
    # Every layer's input range was observed: inputs of the first layer are normalised images.
    assert not method.ranges.isnan().any() and (method.ranges[:, 0] <= method.ranges[:, 1]).all()
    before = method.ranges.clone()
    method.train_step(0)  # the first half of the budget moves the ranges; the second keeps them
    moved = method.ranges.clone()
    method.train_step(1)
    assert not torch.equal(before, moved) and torch.equal(moved, method.ranges)
    # What the harness quantizes is the plain student: no hook is left on it.
    assert all(not m._forward_pre_hooks for m in method.export().modules())


def test_a_qat_study_reports_its_int8_network(storage):
    from harness.study.sweep import run_sweep

    run_sweep(small_spec(**{**PTQ, "study": "qat", "method": "qat", "budget.epochs": "2", "asha.grace_period": "2",
                            "search.num_samples": "1",
                            "search.space": "{lr: 0.002, alpha: 0.5, calibration: 64, batch_size: 64}"}),
              storage=str(storage))
    (row,) = pd.read_parquet(storage / "qat" / "trials.parquet").to_dict("records")
    assert row["status"] == "completed" and row["precision"] == "int8" and row["calibration_images"] == 64
    target = pd.read_parquet(storage / "qat" / "latencies.parquet").iloc[0]
    assert (row["val_acc"], row["test_acc"], row["size_bytes"]) == (target["val_acc"], target["test_acc"],
                                                                    target["size_bytes"])
