"""Trial checkpoints: a trial resumed from its state after a report ends exactly as one
that never stopped, for every kind of method (pruned students included), and the
state loads with ``weights_only=True``."""
from __future__ import annotations

import io

import pytest
import torch

from harness.teachers import train_teacher
from harness.trial import run_trial
from methods.checkpoint import fit_shapes
from tests.conftest import small_spec

SAME_AS_TEACHER = {"student.width": "1.0"}  # pruning methods start from the teacher itself
CASES = {
    "kd": ({}, {"lr": 0.05, "batch_size": 32}),
    "kdgan": ({}, {"lr": 0.05, "batch_size": 32}),
    "c2s2": (SAME_AS_TEACHER, {"target_ratio": 0.6, "prune_epochs": 2, "batch_size": 32}),
    "filter_pruning_kd": (SAME_AS_TEACHER, {"ratio": 0.5, "batch_size": 32}),
    "dafl": ({}, {"iterations_per_report": 10, "batch_size": 32}),
}


@pytest.fixture(scope="module")
def teacher_state(digits):
    return train_teacher(small_spec(), digits).state


def _saved(state):
    """Through bytes and back, as a checkpoint file would be; no pickled code allowed."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("method", list(CASES))
def test_a_resumed_trial_ends_as_if_it_never_stopped(method, digits, teacher_state):
    overrides, config = CASES[method]
    spec = small_spec(method=method, **{"budget.epochs": "4", "search.space": "{}", **overrides})
    data = digits.without_training_images() if method == "dafl" else digits
    reports, states = [], []

    def keep(metrics, state):
        reports.append(metrics)
        states.append(_saved(state))

    whole = run_trial(config, spec, 0, data, teacher_state, keep, checkpoints=True)
    resumed_reports = []
    resumed = run_trial(config, spec, 0, data, teacher_state, lambda m, s: resumed_reports.append(m),
                        checkpoints=True, resume=states[1])

    assert [r["epoch"] for r in resumed_reports] == [3, 4]
    assert [r["val_acc"] for r in resumed_reports] == [r["val_acc"] for r in reports[2:]]
    assert whole.state_dict().keys() == resumed.state_dict().keys()
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    if method in ("c2s2", "filter_pruning_kd"):
        # The state resumed from was already pruned, so the fresh student had to be narrowed to
        # it. (Only fewer parameters is asserted: C2S2's target is MACs, which the convolutions
        # hold, while LeNet-5's parameters sit mostly in its fully connected layers.)
        assert sum(p.numel() for p in resumed.parameters()) < sum(
            v.numel() for k, v in teacher_state.items() if not k.endswith("num_batches_tracked"))
    if method == "c2s2":
        assert reports[1]["cost_ratio"] < 1.0


def test_fit_shapes_narrows_a_network_and_refuses_what_it_cannot_resize():
    from harness.zoo import create_model

    wide, narrow = create_model("mobilenet_v2", 10, 1.0, (3, 32, 32)), create_model("mobilenet_v2", 10, 0.5, (3, 32, 32))
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
