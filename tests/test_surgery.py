"""Channel surgery removes exactly the channels it names: zero them first (the producing
convolutions and every BatchNorm over them, so they carry nothing), remove them, and the
network computes what it computed. Removing the wrong input channels downstream keeps the
parameter counts and shapes right but breaks this."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from harness.networks.build import build_network
from harness.networks.zoo import create_model
from methods.surgery import ChannelSurgeon


def _silence(surgeon: ChannelSurgeon, conv: nn.Conv2d, idxs: list[int]) -> None:
    """Make the channels the group would remove carry zeros everywhere they go."""
    with torch.no_grad():
        for dep, group_idxs in surgeon.group(conv, idxs):
            layer, where = dep.target.module, [int(i) for i in group_idxs]
            if isinstance(layer, nn.Conv2d) and dep.handler in (tp.prune_conv_out_channels,
                                                                tp.prune_depthwise_conv_out_channels):
                layer.weight[where] = 0
                if layer.bias is not None:
                    layer.bias[where] = 0
            elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.weight[where] = 0  # gamma and beta zero: the channel's output is 0 whatever comes in
                layer.bias[where] = 0


NETWORKS = {
    "resnet20 (residual units)": lambda: create_model("resnet20", 10, 1.0, (3, 32, 32)),
    "densenet40 (concatenations)": lambda: create_model("densenet40", 10, 0.5, (3, 32, 32)),
    "mobilenet_v2 (depth-wise)": lambda: create_model("mobilenet_v2", 10, 0.5, (3, 32, 32)),
    "torchvision resnet18": lambda: build_network(
        type("M", (), {"model": "torchvision:resnet18", "width": 1.0, "kwargs": {}, "features": None}),
        10, (3, 32, 32), "student"),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_removing_channels_that_carry_nothing_leaves_the_output_unchanged(name):
    torch.manual_seed(0)
    model = NETWORKS[name]().eval()
    with torch.no_grad():  # BatchNorm statistics of a trained network, not the defaults
        for bn in model.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 3, 32, 32)
    surgeon = ChannelSurgeon(model, x[:1])
    units = surgeon.units()
    chosen = [units[1], units[len(units) // 2], units[-1]]  # early, middle and late cuts
    cuts = {id(u): list(range(0, u.out_channels, 3))[: u.out_channels // 3] for u in chosen}
    for unit in chosen:
        _silence(surgeon, unit, cuts[id(unit)])
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        before = model(x)
    for unit in chosen:
        surgeon.remove(unit, cuts[id(unit)])
    with torch.no_grad():
        after = model(x)
    assert sum(p.numel() for p in model.parameters()) < params
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
