"""``c2s2``: cost-aware channel sparse selection for progressive network pruning
(Chiu, NTHU 2018: "C2S2: Cost-aware Channel Sparse Selection for Progressive
Network Pruning"; the thesis abstract is the specification, docs/methods.md).

How this implementation reads it:

- **Pruning layers.** For one pruning unit at a time (a convolution, or every
  convolution that writes the same residual stream), a per-channel gate with a
  real-valued weight ``w`` (initially 1) multiplies the output of each unit
  member's BatchNorm (or of the convolution itself when no BatchNorm follows).
  Dual format: the forward pass uses the binary mask ``w > gate_threshold`` and
  the gradient reaches ``w`` straight through.
- **Phase (a).** Only the gates train, by plain SGD at ``gate_lr`` (not Adam:
  a gate must fall only where the task gradient is weaker than the
  regulariser's pull, and Adam's normalised steps would move every gate
  alike), for ``gate_iters`` batches, on the task loss (cross-entropy, or the
  KD mix with the unpruned network when ``alpha > 0``) plus ``reg * sum(w)``,
  the sparsity regulariser that pulls every gate down at the same rate. The
  rest of the network is frozen, BatchNorm statistics included (eval mode).
- **Cost-aware limit.** The channels whose gate ended under the threshold,
  weakest first, are the proposal. Cuts of that size and of 3/4, 1/2, 1/4 and
  1/8 of it are tried, largest first, on a copy of the network, *physically*
  pruned; the largest cut whose validation-accuracy damage is within
  ``max_damage * min(1, cost it saves / fair share)`` is taken, the fair
  share being the cost (MACs or parameters, ``target_metric``) still to save
  divided by the number of units. So a layer that hurts accuracy, or saves
  little for its damage, is pruned less, and pruning stops once the network
  costs at most ``target_ratio`` of the unpruned one (no over-pruning).
- **Phase (b).** The taken cut is the new network (a smaller dense one), then
  ``step_iters`` batches of SGD fine-tuning at a tenth of ``lr`` before the
  next unit.
- **Progressive.** Units are visited in network order, spread over the first
  ``prune_epochs`` reports (the last of them goes on until the target is met);
  further passes run while the target is not met, at most ``max_passes`` in
  all. The remaining reports fine-tune the pruned network as a
  :class:`~methods.base.SupervisedMethod` (warm-up and cosine over those
  reports). Pruning reports carry ``cost_ratio`` and ``pruned_units``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from methods.base import register_method
from methods.knobs import COUNT, NON_NEGATIVE, POSITIVE, UNIT, Bounds, knob
from methods.pruning import PruneParams, PruningMethod
from methods.study import StudyError, StudyView
from methods.surgery import ChannelSurgeon, keep_count
from methods.training import BatchStream, evaluate


@dataclass
class C2S2Params(PruneParams):
    target_ratio: float = knob(0.5, Bounds(0, 1, low_open=True),
                               help="the pruned network's cost as a fraction of the unpruned one's")
    target_metric: str = knob("macs", choices=("macs", "params"),
                              help="what the target counts: MACs of one image, or parameters")
    reg: float = knob(0.1, NON_NEGATIVE,
                      help="sparsity regulariser weight on sum(w): each gate's steady downward pull")
    gate_threshold: float = knob(0.5, UNIT, help="a channel is kept while its gate weight is above this")
    gate_lr: float = knob(0.1, POSITIVE, help="SGD learning rate of the gates")
    gate_iters: int = knob(50, NON_NEGATIVE, help="batches of gate training per unit")
    max_damage: float = knob(0.01, NON_NEGATIVE,
                             help="validation-accuracy drop tolerated for a cut that saves its fair share of the cost")
    step_iters: int = knob(50, NON_NEGATIVE, help="batches of fine-tuning after each cut")
    prune_epochs: int = knob(1, COUNT, help="reports over which the first pass visits every unit")
    max_passes: int = knob(3, COUNT, help="passes over the units while the target is not met")


class Gates:
    """Per-channel gates in C2S2's dual format, applied by forward hooks at a unit's sites.

    The forward pass multiplies by the binary mask ``w > threshold``; the
    gradient reaches the real weight ``w`` straight through. Kept channels are
    therefore untouched, and the gated network is exactly the pruned one.
    """

    def __init__(self, sites: list[nn.Module], channels: int, threshold: float, device: torch.device) -> None:
        self.weight = nn.Parameter(torch.ones(channels, device=device))
        self.threshold = threshold
        self._handles = [m.register_forward_hook(self._apply) for m in sites]

    def mask(self) -> torch.Tensor:
        hard = (self.weight > self.threshold).float()
        return hard + self.weight - self.weight.detach()  # straight-through estimator

    def _apply(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        return output * self.mask().view(1, -1, *([1] * (output.dim() - 2)))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def gate_sites(surgeon: ChannelSurgeon, unit: nn.Conv2d) -> list[nn.Module]:
    """Where a unit's channels are produced: each member's BatchNorm, else the conv itself."""
    sites = []
    for conv in surgeon.coupled(unit):
        node = surgeon.graph.module2node[conv]
        bns = [n.module for n in node.outputs if isinstance(n.module, nn.BatchNorm2d)
               and n.module.num_features == conv.out_channels]
        sites.append(bns[0] if bns else conv)
    return sites


def choose_cut(candidates: list[int], trial: Callable[[int], tuple[float, int, object]],
               fair_share: float, max_damage: float) -> tuple[int, object | None]:
    """The largest candidate cut whose damage fits its cost-weighted tolerance.

    ``trial(k)`` prunes ``k`` channels on a copy and returns (damage, cost_saved, copy).
    A cut may cost ``max_damage`` if it saves at least ``fair_share`` (what
    each unit would save if all shared the remaining reduction), proportionally less
    if it saves less: sensitive or cheap layers are pruned less.
    """
    for k in sorted(set(candidates), reverse=True):
        if k <= 0:
            continue
        damage, saved, pruned = trial(k)
        if damage <= max_damage * min(1.0, saved / max(1.0, fair_share)):
            return k, pruned
    return 0, None


@register_method("c2s2")
class C2S2(PruningMethod):
    Params = C2S2Params

    @classmethod
    def within(cls, params: C2S2Params, limits: dict[str, float]) -> C2S2Params:
        """The cost target at most the tighter limit on what it counts (``size_bytes`` follows the
        parameters); a limit only on the other cost switches what the target counts."""
        aims = {m: r for m, r in limits.items() if m in ("macs", "params")}
        if "size_bytes" in limits:
            aims["params"] = min(aims.get("params", 1.0), limits["size_bytes"])
        if not aims:
            return params
        metric = params.target_metric if params.target_metric in aims else next(iter(aims))
        drawn = params.target_ratio if metric == params.target_metric else 1.0
        return replace(params, target_metric=metric, target_ratio=min(drawn, aims[metric], 1.0))

    @classmethod
    def check_spec(cls, study: StudyView) -> None:
        super().check_spec(study)
        most = max(study.values("prune_epochs", C2S2Params.prune_epochs))
        if most >= study.epochs:
            where = "search.space.prune_epochs" if "prune_epochs" in study.knobs else "budget.epochs"
            raise StudyError(f"{where}: pruning for {most:g} of budget.epochs ({study.epochs}) leaves "
                             f"no epoch to fine-tune; prune for fewer (prune_epochs) or raise the budget")

    def __init__(self, ctx, params: C2S2Params) -> None:
        super().__init__(ctx, params)
        if ctx.epochs <= params.prune_epochs:
            raise ValueError(f"budget.epochs ({ctx.epochs}) must exceed prune_epochs ({params.prune_epochs})")
        if ctx.cost is None:
            raise ValueError("c2s2 needs the context's cost(model, metric) to measure its target")
        self.cost_original = self.cost(ctx.student)
        self.batches = BatchStream(ctx.train, params.batch_size, ctx.generator, augment=True)
        self.queue: list[int] = []  # unit indices still to visit in this pass
        self.passes = 0
        self.log: list[dict] = []  # one entry per unit step: what was proposed, tried and taken

    # --- the schedule ------------------------------------------------------------------
    def train_step(self, epoch: int) -> dict[str, float]:
        prune_reports = self.params.prune_epochs
        if epoch >= prune_reports:
            return super().train_step(epoch)  # fine-tuning, scheduled over the remaining epochs
        share = -(-self.unit_count() // prune_reports)  # units per pruning report, first pass
        last = epoch == prune_reports - 1
        steps = 0
        while not self.target_met() and (last or steps < share):
            if not self.queue:
                if self.passes >= self.params.max_passes:
                    break
                self.passes += 1
                self.queue = list(range(self.unit_count()))
            self.prune_unit(self.queue.pop(0))
            steps += 1
        return {"cost_ratio": self.cost(self.ctx.student) / self.cost_original, "pruned_units": len(self.log)}

    def unit_count(self) -> int:
        return len(ChannelSurgeon(self.ctx.student, self.example).units())

    def cost(self, model: nn.Module) -> int:
        """What the target is measured in: MACs of one image, or parameters."""
        return self.ctx.cost(model, self.params.target_metric)

    def target_met(self) -> bool:
        return self.cost_needed() <= 0

    def cost_needed(self) -> int:
        return int(self.cost(self.ctx.student) - self.params.target_ratio * self.cost_original)

    # --- one progressive step ------------------------------------------------------------
    def prune_unit(self, index: int) -> None:
        p = self.params
        student = self.ctx.student
        surgeon = ChannelSurgeon(student, self.example)
        unit = surgeon.units()[index]
        if unit.out_channels == 1:  # cut to the bone by an earlier pass
            self.log.append({"unit": index, "channels": 1, "proposed": 0, "taken": 0})
            return
        sites = gate_sites(surgeon, unit)
        gates = Gates(sites, unit.out_channels, p.gate_threshold, self.ctx.device)
        self.train_gates(gates)
        gates.remove()
        weight = gates.weight.detach()
        order = weight.argsort().tolist()  # weakest first
        proposal = int((weight < p.gate_threshold).sum())
        channels = unit.out_channels
        candidates = {channels - keep_count(channels, int(proposal * f), p.round_to)
                      for f in (1.0, 0.75, 0.5, 0.25, 0.125)}
        baseline = evaluate(student, self.ctx.val)["acc"]
        cost_now = self.cost(student)

        def trial(k: int):
            pruned = copy.deepcopy(student)
            copy_surgeon = ChannelSurgeon(pruned, self.example)
            copy_surgeon.remove(copy_surgeon.units()[index], order[:k])
            damage = baseline - evaluate(pruned, self.ctx.val)["acc"]
            return damage, cost_now - self.cost(pruned), pruned

        fair_share = self.cost_needed() / max(1, len(surgeon.units()))
        taken, pruned = choose_cut(sorted(candidates), trial, fair_share, p.max_damage)
        self.log.append({"unit": index, "channels": channels, "proposed": proposal, "taken": taken})
        if pruned is None:
            return
        self._adopt(pruned)
        self.step_finetune()

    def _adopt(self, pruned: nn.Module) -> None:
        """Make ``ctx.student`` the pruned copy: swap its submodules in place, so that
        every holder of the student object sees the smaller network."""
        for name, module in pruned.named_children():
            setattr(self.ctx.student, name, module)

    def train_gates(self, gates: Gates) -> None:
        p = self.params
        student = self.ctx.student
        frozen = [q for q in student.parameters() if q.requires_grad]
        for q in frozen:
            q.requires_grad_(False)
        optimizer = torch.optim.SGD([gates.weight], lr=p.gate_lr)
        student.eval()  # frozen means frozen: BatchNorm statistics stay as they are
        for _ in range(p.gate_iters):
            x, y = next(self.batches)
            loss = self.loss(x, y) + p.reg * gates.weight.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()  # no clamp: below the threshold, w still orders channels by usefulness
        for q in frozen:
            q.requires_grad_(True)

    def step_finetune(self) -> None:
        p = self.params
        optimizer = torch.optim.SGD(self.ctx.student.parameters(), lr=p.lr * 0.1, momentum=p.momentum,
                                    weight_decay=p.weight_decay)
        self.ctx.student.train()
        for _ in range(p.step_iters):
            x, y = next(self.batches)
            loss = self.loss(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
