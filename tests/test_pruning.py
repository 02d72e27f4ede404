"""Physical channel removal and the pruning methods, in plain PyTorch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import methods
from harness.errors import SpecError
from harness.measure.cost import count_macs, count_params, serialized_size
from harness.networks.zoo import create_model
from methods.c2s2 import choose_cut
from methods.surgery import ChannelSurgeon, keep_count, l1_norms
from methods.training import evaluate
from tests.support.contexts import method_context
from tests.support.specs import small_spec

CIFAR = (3, 32, 32)


def _surgeon(name, shape=CIFAR):
    model = create_model(name, 10, input_shape=shape).eval()
    return model, ChannelSurgeon(model, torch.randn(1, *shape))


def test_removing_an_inner_resnet_channel_drops_exactly_its_weights():
    model, surgeon = _surgeon("resnet20")
    block = model.feature_extractor[3]  # first block: conv1 16->16, conv2 16->16, 3x3
    before = count_params(model)
    surgeon.remove(block.conv1, [0, 1, 2, 3])
    # 4 filters of conv1 (16*9 each), their BatchNorm (2 each), 4 input channels of conv2 (16*9 each)
    assert before - count_params(model) == 4 * 16 * 9 + 4 * 2 + 4 * 16 * 9
    assert block.conv1.out_channels == 12 and block.conv2.in_channels == 12
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)


def test_a_residual_stream_is_pruned_consistently_everywhere():
    model, surgeon = _surgeon("resnet20")
    stem = model.feature_extractor[0]
    writers = surgeon.coupled(stem)
    assert len(writers) == 4  # the stem and the last convolution of the three first-stage blocks
    surgeon.remove(stem, [0, 5])
    assert {c.out_channels for c in writers} == {14}
    first_stage_bns = [model.feature_extractor[1]] + [model.feature_extractor[i].bn2 for i in (3, 4, 5)]
    assert {bn.num_features for bn in first_stage_bns} == {14}
    assert model.feature_extractor[6].conv1.in_channels == 14  # the next stage reads the stream
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)


def test_units_are_distinct_groups():
    _, surgeon = _surgeon("resnet20")
    units = surgeon.units()
    assert len(units) == 3 + 9  # three residual streams and nine inner convolutions
    covered = [id(c) for u in units for c in surgeon.coupled(u)]
    assert len(covered) == len(set(covered))


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_depthwise_networks_shrink_and_still_run(name):
    model, surgeon = _surgeon(name)
    params, macs = count_params(model), count_macs(model, CIFAR, torch.device("cpu"))
    for unit in surgeon.units()[:6]:
        surgeon.remove(unit, range(unit.out_channels // 2))
    for m in model.modules():  # every depth-wise convolution still has one filter per channel
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)
    assert count_params(model) < params and count_macs(model, CIFAR, torch.device("cpu")) < macs


def test_depthwise_channel_removal_is_exact():
    model, surgeon = _surgeon("mobilenet_v1")
    pointwise = model.feature_extractor[2][0]  # the first 1x1 conv: 32 -> 64, then a depth-wise 64
    depthwise = model.feature_extractor[3][0]
    next_pointwise = model.feature_extractor[4][0]
    before = count_params(model)
    surgeon.remove(pointwise, range(8))
    # pw filters+bn, dw filters+bn, next pw inputs
    dropped = 8 * (32 + 2) + 8 * (9 + 2) + 8 * next_pointwise.out_channels
    assert before - count_params(model) == dropped
    assert depthwise.in_channels == depthwise.out_channels == depthwise.groups == 56


def test_densenet_concatenations_survive_surgery():
    model, surgeon = _surgeon("densenet40")
    for unit in surgeon.units()[:5]:
        surgeon.remove(unit, [0, 1])
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)


def test_keep_count_rounds_up_to_a_multiple():
    assert keep_count(16, 5) == 11
    assert keep_count(16, 5, round_to=4) == 12
    assert keep_count(16, 15, round_to=4) == 4
    assert keep_count(6, 6) == 1


def test_l1_norm_ranks_filters():
    conv = nn.Conv2d(1, 4, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1, 5).float().view(4, 1, 1, 1).expand(4, 1, 3, 3))
    assert l1_norms(conv).argsort().tolist() == [0, 1, 2, 3]


def test_cost_aware_limit_prunes_a_damaging_layer_less():
    # Each channel saves 20 MACs; the fair share is 100, so a cut of k channels may
    # cost 0.02 * min(1, 20k / 100) accuracy.
    def robust(k):
        return 0.001 * k, 20.0 * k, f"cut {k}"

    def sensitive(k):
        return 0.0035 * k, 20.0 * k, f"cut {k}"

    candidates = [2, 4, 6, 8]
    assert choose_cut(candidates, robust, 100.0, max_damage=0.02) == (8, "cut 8")
    assert choose_cut(candidates, sensitive, 100.0, max_damage=0.02) == (4, "cut 4")  # 6: 0.021 > 0.02


def test_cost_aware_limit_weighs_the_macs_a_cut_saves():
    # Same damage; the layer whose channels save few MACs is pruned less.
    def cheap(k):
        return 0.002 * k, 5.0 * k, k

    def costly(k):
        return 0.002 * k, 50.0 * k, k

    assert choose_cut([2, 4, 6, 8], costly, 100.0, max_damage=0.02)[0] == 8
    assert choose_cut([2, 4, 6, 8], cheap, 100.0, max_damage=0.02)[0] == 0


def test_cost_aware_limit_refuses_every_cut_that_hurts_too_much():
    taken, pruned = choose_cut([1, 2, 3], lambda k: (0.5, 1000.0, "cut"), 100.0, max_damage=0.01)
    assert (taken, pruned) == (0, None)


@pytest.fixture(scope="module")
def trained_lenet(lenet5_teacher, digits_data):
    return lenet5_teacher, digits_data


def _context(student, teacher, data, epochs):
    return method_context(student, teacher, data, epochs, cost=True, seed=None)


def _run(name, knobs, trained_lenet, epochs=3):
    teacher, data = trained_lenet
    cls = methods.METHODS.get(name)
    method = cls(_context(create_model("lenet5", 10), teacher, data, epochs), cls.make_params(knobs))
    for epoch in range(epochs):
        method.train_step(epoch)
    return method, teacher, data


@pytest.mark.parametrize("name, knobs", [
    ("c2s2", {"target_ratio": 0.5, "reg": 0.5, "max_damage": 0.05, "batch_size": 32, "lr": 0.02}),
    ("filter_pruning_kd", {"ratio": 0.5, "batch_size": 32, "lr": 0.02}),
    ("filter_pruning_kd", {"ratio": 0.5, "scope": "global", "alpha": 0.0, "batch_size": 32, "lr": 0.02}),
])
def test_pruned_students_are_smaller_dense_networks_that_still_work(name, knobs, trained_lenet):
    method, teacher, data = _run(name, knobs, trained_lenet)
    student = method.export()
    cpu = torch.device("cpu")
    assert count_params(student) < count_params(teacher)
    assert serialized_size(student) < serialized_size(teacher)
    assert count_macs(student, (1, 28, 28), cpu) <= 0.5 * count_macs(teacher, (1, 28, 28), cpu)
    assert not any(isinstance(m, nn.Module) and m._forward_hooks for m in student.modules())  # no gates left
    assert evaluate(student, data.test)["acc"] > evaluate(teacher, data.test)["acc"] - 0.05


def test_global_l1_removes_the_requested_share_of_filters(trained_lenet):
    teacher, _ = trained_lenet
    total = sum(c.out_channels for c in teacher.modules() if isinstance(c, nn.Conv2d))  # 6 + 16 + 120
    for ratio, expected in ((0.001, 0), (0.25, int(0.25 * total))):
        method, _, _ = _run("filter_pruning_kd", {"ratio": ratio, "scope": "global", "batch_size": 32},
                            trained_lenet, 1)
        kept = sum(c.out_channels for c in method.export().modules() if isinstance(c, nn.Conv2d))
        assert total - kept == expected


def test_c2s2_stops_at_the_target_and_logs_its_steps(trained_lenet):
    method, teacher, _ = _run("c2s2", {"target_ratio": 0.7, "reg": 0.5, "max_damage": 0.05,
                                       "batch_size": 32, "lr": 0.02}, trained_lenet, epochs=2)
    cpu = torch.device("cpu")
    ratio = count_macs(method.export(), (1, 28, 28), cpu) / count_macs(teacher, (1, 28, 28), cpu)
    assert ratio <= 0.7
    assert method.log and all(step["taken"] <= step["channels"] for step in method.log)


def test_c2s2_can_target_a_parameter_ratio(trained_lenet):
    method, teacher, _ = _run("c2s2", {"target_ratio": 0.6, "target_metric": "params", "reg": 0.5,
                                       "max_damage": 0.05, "batch_size": 32, "lr": 0.02}, trained_lenet, epochs=2)
    assert count_params(method.export()) <= 0.6 * count_params(teacher)


def test_pruning_methods_require_the_unpruned_network_as_teacher():
    with pytest.raises(SpecError, match="student.model, width and kwargs must equal the teacher's"):
        small_spec(method="c2s2", **{"search.space": "{}"})  # lenet5_half at width 0.5 vs 1.0
    spec = small_spec(method="c2s2", **{"search.space": "{}", "student.width": "1.0",
                                        "student.model": "lenet5_half", "teacher.model": "lenet5_half"})
    assert spec.method == "c2s2"
