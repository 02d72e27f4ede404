"""Trial checkpoints: a trial resumed from the state saved at any report ends exactly as one
that never stopped, for every registered method (pruned students and C2S2's pruning phase
included), and the state loads with ``weights_only=True``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import methods
from harness.method_testing import check_resumes_exactly
from harness.spec.load import load_spec
from harness.study.teachers import train_teacher
from methods.base import SupervisedMethod, TrainParams
from methods.checkpoint import UnsavedState, fit_shapes
from tests.support.specs import is_chain_step
from tests.torchvision_files import write_image_folder

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
# Knobs set whichever method has them: small trials; and C2S2 pruning one unit per report for
# three reports toward a target it cannot meet sooner, so that resuming after the first or
# second report resumes inside its pruning phase.
FIXED = {"batch_size": 32, "iterations_per_report": 10, "gate_iters": 10, "step_iters": 10,
         "generator_width": 0.25, "prune_epochs": 3, "target_ratio": 0.1, "reg": 2.0, "max_damage": 0.5}


def shipped_spec(method: str, folder: Path):
    """The method's own study from search_spaces/ (top level first), made small and put on digits."""
    paths = sorted(ROOT.glob("search_spaces/*.yaml")) + sorted(ROOT.glob("search_spaces/mnist/*.yaml"))
    for path in paths:
        spec = load_spec(path)
        if spec.method == method:
            break
    else:
        pytest.fail(f"method '{method}' has no study in search_spaces/")
    epochs = 1 if methods.METHODS.get(method).quantizes else EPOCHS  # ptq trains nothing: one report
    changes = {"dataset.name": "digits", "budget.epochs": str(epochs), "asha.grace_period": "1",
               "search.num_samples": "1", "teacher.recipe": "{epochs: 2, batch_size: 64}"}
    if spec.dataset.substitute:  # another data set than the study's own: an image folder written here
        write_image_folder(folder, size=28, mode="L")
        changes.update({"dataset.substitute": "imagefolder", "dataset.root": str(folder)})
    return load_spec(path, [f"{key}={value}" for key, value in changes.items()])


def trial_config(spec) -> dict:
    """One value per searched knob (the last choice, or the high bound), as FIXED says."""
    cls = methods.METHODS.get(spec.method)
    config = {name: d.args[-1] for name, d in spec.searched_params().items()}
    config.update({name: value for name, value in FIXED.items() if name in cls.param_names()})
    return config


@pytest.fixture(scope="module")
def teachers(digits):
    """Teachers trained once per architecture, as a study would (weights only)."""
    trained = {}

    def get(spec):
        key = (spec.teacher.model, spec.teacher.width)
        if key not in trained:
            trained[key] = train_teacher(spec, digits).state
        return trained[key]

    return get


@pytest.mark.parametrize("method", methods.METHODS.names())
def test_a_trial_resumed_at_any_report_ends_as_if_it_never_stopped(method, digits, teachers, tmp_path):
    spec = shipped_spec(method, tmp_path)
    reports = check_resumes_exactly(spec, config=trial_config(spec), data=digits,
                                    teacher_state=teachers(spec) if spec.teacher else None)
    if method == "c2s2":
        # The resumes after reports 1 and 2 came back in the middle of pruning, with units left.
        assert reports[0]["pruned_units"] < reports[1]["pruned_units"] < reports[2]["pruned_units"]
        assert reports[2]["cost_ratio"] < reports[0]["cost_ratio"] < 1.0


def test_every_registered_method_is_covered_by_a_shipped_study():
    shipped = {load_spec(path).method for path in ROOT.glob("search_spaces/**/*.yaml") if not is_chain_step(path)}
    assert set(methods.METHODS.names()) <= shipped


class _Counting(SupervisedMethod):
    def __init__(self, ctx, params) -> None:
        super().__init__(ctx, params)
        self.seen = iter(range(10))  # an iterator: a checkpoint cannot hold it


class _CountingTransient(_Counting):
    transient = ("seen",)  # rebuilt by __init__; declared, so checkpoints leave it out


def test_an_attribute_the_checkpoint_cannot_save_is_an_error_unless_declared_transient(digits):
    from harness.data.batches import DeviceData
    from tests.support.contexts import method_context

    data = DeviceData(digits, torch.device("cpu"), parts=("val",))
    ctx = method_context(train=data.val, val=data.val, epochs=1)
    with pytest.raises(UnsavedState, match=r"_Counting.seen: a range_iterator cannot be saved .* "
                                           r"transient = \(\"seen\",\)"):
        _Counting(ctx, TrainParams()).state_dict()
    state = _CountingTransient(ctx, TrainParams()).state_dict()
    assert not any("seen" in part for part in state.values() if isinstance(part, dict))


def test_fit_shapes_narrows_a_network_and_refuses_what_it_cannot_resize():
    from harness.networks.zoo import create_model

    wide = create_model("mobilenet_v2", 10, 1.0, (3, 32, 32))
    narrow = create_model("mobilenet_v2", 10, 0.5, (3, 32, 32))
    fit_shapes(wide, narrow.state_dict())
    wide.load_state_dict(narrow.state_dict())
    x = torch.randn(2, 3, 32, 32)
    wide.eval(), narrow.eval()
    assert torch.allclose(wide(x), narrow(x))  # depth-wise groups followed the channels

    class Odd(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(n))

    with pytest.raises(ValueError, match="cannot resize layer"):
        fit_shapes(Odd(4), {"scale": torch.ones(2)})
