"""Data-free methods (DAFL and its baselines) and the harness's guarantee that they see no data."""
from __future__ import annotations

import bz2
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import methods
from harness.data.datasets import DATASETS, load_substitute
from harness.errors import SpecError
from harness.networks.zoo import create_model
from harness.study.trial import run_trial, trial_data
from methods.base import DataWithheld, WithheldSplit
from methods.dafl import DAFL, Generator, generator_losses
from methods.data_free import DataFreeDistillation, Draw
from methods.training import evaluate, freeze
from tests.support.contexts import method_context
from tests.support.specs import small_spec
from tests.torchvision_files import write_image_folder

CPU = torch.device("cpu")


def _dafl_spec(**changes):
    return small_spec(**{
        "method": "dafl", "search.space": "{}", "search.space.iterations_per_report": "5",
        "search.space.batch_size": "32", "search.space.generator_width": "0.25", "measure.repeats": "2",
        **changes,
    })


def _context(teacher, substitute=None, epochs=3):
    return method_context(teacher=teacher, epochs=epochs, substitute=substitute,
                          train=WithheldSplit("training", "x"), val=WithheldSplit("validation", "x"))


# --- no data leaks ---------------------------------------------------------------------

@dataclass
class _PeekParams:
    batch_size: int = 8
    part: str = "train"


class _Peek(DataFreeDistillation):
    """A data-free method that tries to read real images."""

    Params = _PeekParams

    def __init__(self, ctx, params):
        self.ctx, self.params = ctx, params

    def train_step(self, epoch):
        split = getattr(self.ctx, self.params.part)
        next(iter(split.batches(self.params.batch_size)))
        return {}


@pytest.mark.parametrize("part", ["train", "val"])
def test_a_data_free_method_cannot_read_training_or_validation_images(digits, monkeypatch, part):
    monkeypatch.setitem(methods.METHODS._entries, "peek", _Peek)
    spec = small_spec(**{"method": "peek", "search.space": "{}", "search.space.part": part})
    with pytest.raises(DataWithheld, match="'peek' is data-free"):
        run_trial({}, spec, 0, digits, None, report=lambda m: None)
    with pytest.raises(DataWithheld):
        len(WithheldSplit("training", "peek"))


def test_data_free_trials_hold_no_training_images(digits):
    stripped = digits.without_training_images()
    assert len(stripped.train) == 0 and len(stripped.val) == len(digits.val)
    assert stripped.input_shape == digits.input_shape
    device_data = trial_data(DAFL, stripped, CPU)
    with pytest.raises(AttributeError):
        _ = device_data.train
    assert len(device_data.val) == len(digits.val) and len(device_data.test) == len(digits.test)


def test_the_sweep_ships_data_free_trials_no_training_images(digits):
    from harness.study.sweep import trial_splits

    assert len(trial_splits(_dafl_spec(), digits).train) == 0
    assert len(trial_splits(small_spec(), digits).train) == len(digits.train)


# --- DAFL's parts ----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 30, 30)])
def test_generator_makes_normalised_images_of_the_data_set_shape(shape):
    torch.manual_seed(0)
    images = Generator(100, shape, width=0.25)(torch.randn(64, 100))
    assert images.shape == (64, *shape)
    if shape[1] % 4 == 0:  # the final BatchNorm standardises each channel over the batch
        per_channel = images.transpose(0, 1).reshape(shape[0], -1)
        assert torch.allclose(per_channel.mean(1), torch.zeros(shape[0]), atol=1e-4)
        assert torch.allclose(per_channel.std(1), torch.ones(shape[0]), atol=1e-2)


def test_generator_width_scales_its_channels():
    small, full = Generator(100, (1, 28, 28), 0.25), Generator(100, (1, 28, 28), 1.0)
    assert small.block1[0].out_channels == 32 and full.block1[0].out_channels == 128
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in full.parameters()) / 4


def test_generator_losses_follow_the_paper():
    uniform = torch.zeros(4, 10)  # the batch's mean prediction is uniform: entropy log10(10) = 1
    confident = torch.full((4, 10), -10.0)
    confident[:, 3] = 10.0  # all four images predicted as class 3
    features = torch.tensor([[1.0, -3.0], [0.0, 2.0]])
    terms = generator_losses(uniform, features)
    assert terms["entropy_loss"].item() == pytest.approx(-1.0)
    assert terms["one_hot_loss"].item() == pytest.approx(np.log(10), rel=1e-5)
    assert terms["activation_loss"].item() == pytest.approx(-1.5)
    sure = generator_losses(confident, features)
    assert sure["one_hot_loss"].item() < 1e-6 and sure["entropy_loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_dafl_steps_generator_and_student_and_leaves_the_teacher(digits):
    teacher = freeze(create_model("lenet5", 10))
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    ctx = _context(teacher)
    method = DAFL(ctx, DAFL.make_params({"iterations_per_report": 3, "batch_size": 16, "generator_width": 0.25}))
    gen_before = [p.clone() for p in method.generator.parameters()]
    student_before = [p.clone() for p in ctx.student.parameters()]
    metrics = method.train_step(0)
    assert metrics["iterations"] == 3 and {"kd_loss", "one_hot_loss", "activation_loss", "entropy_loss",
                                           "image_spread"} <= set(metrics)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(a, b) for a, b in zip(gen_before, method.generator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(student_before, ctx.student.parameters(), strict=True))
    assert method.samples().shape == (16, 1, 28, 28)


def test_a_collapsed_generator_shows_as_an_image_spread_near_zero():
    method = DAFL(_context(freeze(create_model("lenet5", 10))),
                  DAFL.make_params({"iterations_per_report": 1, "batch_size": 16, "generator_width": 0.25}))
    assert method.draw(16).terms["image_spread"].item() > 0.3  # distinct images for distinct noise
    last = method.generator.block2[3]  # the conv before tanh: zeroed, every image is the same flat one
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    assert method.draw(16).terms["image_spread"].item() < 1e-6


def test_with_zero_coefficients_the_generator_does_not_move():
    ctx = _context(freeze(create_model("lenet5", 10)))
    method = DAFL(ctx, DAFL.make_params({"alpha": 0, "beta": 0, "one_hot": 0, "iterations_per_report": 2,
                                         "batch_size": 16, "generator_width": 0.25}))
    before = [p.clone() for p in method.generator.parameters()]
    method.train_step(0)
    assert all(torch.equal(a, b) for a, b in zip(before, method.generator.parameters(), strict=True))


def test_dafl_teaches_a_student_without_data(digits, tmp_path):
    """The DAFL loop learns real digits from a trained teacher alone, well above chance."""
    from harness.study.teachers import train_teacher

    spec = _dafl_spec(**{"budget.epochs": "6", "search.space.iterations_per_report": "40",
                         "search.space.batch_size": "64", "teacher.model": "lenet5",
                         "teacher.recipe": "{epochs: 8, lr: 0.05, batch_size: 32}"})
    teacher = train_teacher(spec, digits)
    reports = []
    run_trial({}, spec, 0, digits.without_training_images(), teacher.state, reports.append, samples_dir=tmp_path)
    assert reports[-1]["val_acc"] > 0.6
    assert [r["iterations"] for r in reports] == [40 * (i + 1) for i in range(6)]
    assert reports[-1]["samples"].endswith("report006.png") and len(list(tmp_path.glob("*.png"))) == 6


# --- baselines ---------------------------------------------------------------------------

def test_noise_baseline_distils_on_standard_normal_inputs():
    noise = methods.METHODS.get("noise_kd")
    method = noise(_context(freeze(create_model("lenet5", 10))), noise.make_params({"batch_size": 4096}))
    draw: Draw = method.draw(4096)
    assert draw.inputs.shape == (4096, 1, 28, 28) and draw.own_loss is None
    assert abs(draw.inputs.mean().item()) < 0.01 and abs(draw.inputs.std().item() - 1) < 0.01


def test_substitute_baseline_needs_and_uses_a_substitute_set(tmp_path):
    from harness.data.batches import DeviceSplit

    with pytest.raises(SpecError, match="dataset.substitute"):
        small_spec(**{"method": "substitute_kd", "search.space": "{}"})
    write_image_folder(tmp_path, size=28, mode="L")
    spec = small_spec(**{"method": "substitute_kd", "search.space": "{}", "dataset.substitute": "imagefolder",
                         "dataset.root": str(tmp_path)})
    images = load_substitute(spec.dataset.substitute, spec.dataset.root, False, (1, 28, 28))
    assert images.source.startswith("imagefolder:") and len(images) == 36
    substitute = DeviceSplit(images, (0.5,), (0.25,), CPU, "none")
    cls = methods.METHODS.get("substitute_kd")
    method = cls(_context(freeze(create_model("lenet5", 10)), substitute=substitute),
                 cls.make_params({"batch_size": 50}))
    draws = [method.draw(50).inputs for _ in range(len(substitute) // 50 + 2)]  # wraps around
    assert all(d.shape[1:] == (1, 28, 28) for d in draws)
    assert any(torch.equal(draws[0][i], substitute.x[j]) for i in range(50) for j in range(len(substitute)))


@pytest.mark.parametrize("name", ["digits", "imagefolder"])
def test_a_substitute_that_is_the_study_s_own_data_set_is_refused(tmp_path, name, capsys):
    """Its training split holds the validation images: a 'data-free' study would train on them."""
    from harness.cli.main import main

    with pytest.raises(SpecError, match=rf"^dataset.substitute: '{name}' is the study's own data set"):
        small_spec(**{"method": "substitute_kd", "search.space": "{}", "dataset.name": name,
                      "dataset.root": str(tmp_path), "dataset.substitute": name})
    spec = tmp_path / "leak.yaml"
    spec.write_text("study: leak\nmethod: substitute_kd\ndataset: {name: digits, substitute: digits}\n"
                    "teacher: {model: lenet5}\nstudent: {model: lenet5_half}\n")
    assert main(["check", str(spec), "--storage", str(tmp_path / "studies")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: dataset.substitute: 'digits' is the study's own")


def test_substitute_images_take_the_target_shape():
    split = load_substitute("digits", None, False, (3, 32, 32))
    assert split.x.shape[1:] == (3, 32, 32) and split.x.dtype == np.uint8
    assert np.array_equal(split.x[:, 0], split.x[:, 2])  # grey copied to each colour channel


def test_usps_loads_through_torchvision_from_files_in_its_format(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "USPS").mkdir()
    for name, n in (("usps.bz2", 12), ("usps.t.bz2", 5)):
        lines = []
        for i in range(n):
            pixels = rng.uniform(-1, 1, 256)
            lines.append(f"{i % 10 + 1} " + " ".join(f"{j + 1}:{v:.4f}" for j, v in enumerate(pixels)))
        (tmp_path / "USPS" / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    raw = DATASETS.get("usps")(tmp_path, False)
    assert raw.train.x.shape == (12, 1, 16, 16) and raw.test.x.shape == (5, 1, 16, 16)
    assert list(raw.train.y[:3]) == [0, 1, 2]


def test_iterations_per_report_cannot_be_searched():
    with pytest.raises(SpecError, match="iterations_per_report: must be a fixed value"):
        _dafl_spec(**{"search.space.iterations_per_report": "{int: [10, 100]}"})


def test_untrained_student_is_near_chance(digits):
    """Guards the learning test above: accuracy there comes from training, not the initialisation."""
    from harness.data.batches import DeviceData

    torch.manual_seed(0)
    assert evaluate(create_model("lenet5_half", 10), DeviceData(digits, CPU, ("val",)).val)["acc"] < 0.25


def test_a_dafl_study_records_iterations_and_image_grids(ray_session, tmp_path):
    import pandas as pd

    from harness.study.sweep import run_sweep

    spec = _dafl_spec(**{"search.num_samples": "2", "search.space.iterations_per_report": "3",
                         "search.space.beta": "{uniform: [1.0, 10.0]}", "asha.grace_period": "2"})
    folder = run_sweep(spec, storage=str(tmp_path))
    trials = pd.read_parquet(folder / "trials.parquet")
    epochs = pd.read_parquet(folder / "epochs.parquet")
    assert list(trials.status) == ["completed", "completed"]
    assert sorted(epochs.iterations) == [3, 3, 6, 6]
    terms = ["kd_loss", "one_hot_loss", "activation_loss", "entropy_loss", "image_spread"]  # the method's own
    assert epochs[terms].notna().all().all() and "test_loss" not in epochs.columns
    for row in trials.itertuples():
        grid = folder / "samples" / row.trial_id / "report002.png"
        assert row.samples == str(grid) and grid.stat().st_size > 0
