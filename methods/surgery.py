"""Physical channel removal, shared by the pruning methods.

Built on torch-pruning's dependency graph: removing output channels of one
convolution also removes every channel coupled to them (the BatchNorm after
it, the next layer's input channels, every convolution that adds into the same
residual stream, both sides of a depth-wise convolution). The result is a
smaller dense network, not a masked one.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch_pruning as tp
from torch import nn


class ChannelSurgeon:
    """Removes channels from ``model`` in place; rebuilds the graph after each cut."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        self.model = model
        self.example = example
        self._graph: tp.DependencyGraph | None = None

    @property
    def graph(self) -> tp.DependencyGraph:
        if self._graph is None:
            self._graph = tp.DependencyGraph().build_dependency(self.model, example_inputs=self.example)
        return self._graph

    def prunable(self) -> list[nn.Conv2d]:
        """Convolutions whose output channels can go: not depth-wise (those follow their
        input channels). One cut down to a single channel stays listed, so that a unit's
        index means the same unit before and after other cuts; it has nothing left to give."""
        return [m for m in self.model.modules() if isinstance(m, nn.Conv2d)
                and not (m.groups > 1 and m.groups == m.in_channels)]

    def units(self) -> list[nn.Conv2d]:
        """One representative convolution per set of coupled channels, in network order.

        In a ResNet, the stem and every block's last convolution of a stage add
        into one residual stream: they are one unit, pruned together.
        """
        seen: set[int] = set()
        units = []
        for conv in self.prunable():
            if id(conv) in seen:
                continue
            seen.update(id(c) for c in self.coupled(conv))
            units.append(conv)
        return units

    def group(self, conv: nn.Conv2d, idxs: Sequence[int]) -> tp.Group:
        return self.graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(idxs))

    def coupled(self, conv: nn.Conv2d) -> list[nn.Conv2d]:
        """The convolutions whose output channels are removed together with ``conv``'s."""
        group = self.group(conv, [0])
        return [dep.target.module for dep, _ in group
                if dep.handler == tp.prune_conv_out_channels and isinstance(dep.target.module, nn.Conv2d)]

    def remove(self, conv: nn.Conv2d, idxs: Sequence[int]) -> int:
        """Remove output channels ``idxs`` of ``conv`` (and all coupled channels)."""
        idxs = sorted(set(int(i) for i in idxs))
        if not idxs:
            return 0
        if len(idxs) >= conv.out_channels:
            raise ValueError(f"cannot remove all {conv.out_channels} channels of a layer")
        group = self.group(conv, idxs)
        if not self.graph.check_pruning_group(group):
            raise ValueError("torch-pruning refused the group (it would leave a layer empty)")
        group.prune()
        self._graph = None  # shapes changed: the graph must be rebuilt
        return len(idxs)


def keep_count(channels: int, drop: int, round_to: int = 1) -> int:
    """Channels kept after dropping ``drop``, rounded up to a multiple of ``round_to``
    (unrounded counts can run slower on real hardware), at least one multiple."""
    kept = max(1, channels - drop)
    if round_to > 1:
        kept = min(channels, max(round_to, -(-kept // round_to) * round_to))
    return kept


def l1_norms(conv: nn.Conv2d) -> torch.Tensor:
    """Li et al.'s filter importance: the sum of absolute weights of each filter."""
    return conv.weight.detach().abs().flatten(1).sum(1)
