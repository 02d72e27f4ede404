"""``filter_pruning_kd``: L1-norm filter pruning (Li et al., "Pruning Filters for
Efficient ConvNets", ICLR 2017), then fine-tuning with KD from the unpruned network
(Prakosa, "Improving the Accuracy of Pruned Network Using Knowledge Distillation",
NTUST master's thesis, 2018).

Each pruning unit (a convolution, or all convolutions writing one residual
stream) loses its filters with the smallest L1 norm; for a residual stream the
norm of a channel is summed over every convolution that writes it. ``scope``
``layer`` removes ``ratio`` of every unit's filters; ``global`` ranks all
filters together after dividing each unit's norms by their mean (so layers of
different scale compare) and removes the lowest ``ratio`` of them. ``skip``
lists unit indices left whole (e.g. ``"0"``, the first convolution).
The baseline that measures the KD gain is the same method with ``alpha: 0``
(plain fine-tuning): see ``search_spaces/filter_pruning.yaml``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from methods.base import register_method
from methods.knobs import UNIT, Bounds, knob
from methods.pruning import PruneParams, PruningMethod
from methods.study import StudyError, StudyView
from methods.surgery import ChannelSurgeon, keep_count, l1_norms


@dataclass
class FilterPruneParams(PruneParams):
    ratio: float = knob(0.5, Bounds(0, 1, high_open=True),
                        help="share of filters removed: of every unit (scope layer), or of all filters (scope global)")
    scope: str = knob("layer", choices=("layer", "global"),
                      help="layer: the same share of every unit; global: the lowest-ranked filters of the "
                           "whole network")
    skip: str = knob("", help="comma-separated unit indices left whole, e.g. '0' for the first convolution")
    alpha: float = knob(0.9, UNIT,
                        help="KD weight from the unpruned network while fine-tuning (0: plain fine-tuning)")


MAX_RATIO = 0.95  # the knob's bound is below 1: every unit keeps a filter or more


def skipped_units(skip: str) -> set[int]:
    """The unit indices in a ``skip`` knob ("0, 3"); ValueError if it is not such a list."""
    parts = [part.strip() for part in skip.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"not comma-separated unit indices: '{skip}'")
    return {int(part) for part in parts}


@register_method("filter_pruning_kd")
class FilterPruningKD(PruningMethod):
    Params = FilterPruneParams

    @classmethod
    def within(cls, params: FilterPruneParams, limits: dict[str, float]) -> FilterPruneParams:
        """At least the share of filters that brings the tightest size limit within reach: a
        convolution between two pruned ones keeps ``(1 - ratio)**2`` of its weights and MACs, so
        ``1 - sqrt(limit)``; layers left whole (``skip``, the first and last) make it a little short,
        which the harness's check at the trial's end sees."""
        if not limits:
            return params
        needed = 1.0 - math.sqrt(min(min(limits.values()), 1.0))
        return replace(params, ratio=min(max(params.ratio, needed), MAX_RATIO))

    @classmethod
    def check_spec(cls, study: StudyView) -> None:
        super().check_spec(study)
        for value in study.values("skip", ""):
            try:
                skipped_units(str(value))
            except ValueError:
                raise StudyError(f"search.space.skip: expected unit indices separated by commas, e.g. '0,3'; "
                                 f"got '{value}'") from None

    def __init__(self, ctx, params: FilterPruneParams) -> None:
        super().__init__(ctx, params)
        self.pruned = False

    def prune(self) -> None:
        p = self.params
        surgeon = ChannelSurgeon(self.ctx.student, self.example)
        skip = skipped_units(p.skip)
        units = [u for i, u in enumerate(surgeon.units()) if i not in skip]
        norms = [sum(l1_norms(c) for c in surgeon.coupled(u)) for u in units]
        if p.scope == "layer":
            drops = [n.numel() - keep_count(n.numel(), int(p.ratio * n.numel()), p.round_to) for n in norms]
        else:
            scaled = torch.cat([n / n.mean() for n in norms])
            count = int(p.ratio * len(scaled))  # filters to drop across the network
            cutoff = scaled.sort().values[count - 1] if count > 0 else float("-inf")
            drops = [n.numel() - keep_count(n.numel(), int((n / n.mean() <= cutoff).sum()), p.round_to)
                     for n in norms]
        for unit, norm, drop in zip(units, norms, drops, strict=True):
            surgeon.remove(unit, norm.argsort()[:drop].tolist())

    def train_step(self, epoch: int) -> dict[str, float]:
        if not self.pruned:
            self.prune()
            self.pruned = True
        return super().train_step(epoch)
