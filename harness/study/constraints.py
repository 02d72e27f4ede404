"""Limits inside the search (``search.constraints``): how far a trial's network is over each.

A limit is judged twice. Before a drawn trial trains (:class:`DrawGate`, on the driver): its
network is built at the drawn width and its parameters, size and MACs counted, its latency
measured once per network (by fingerprint) beside the teacher's; a draw over a limit is told
to Optuna as infeasible and never trains. At the trial's end (:func:`judge`, in the trial):
on the figures the trial measured, the teacher's latency beside its own. Optuna gets each
limit's excess (``figure / bound - 1``, feasible at 0 or below) through ``Trial.set_constraint``,
which its TPE and NSGA-II samplers read. A pruning method's network is known only once pruned:
its draws all train, and it is handed the limits it can aim at (``Method.within``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

import methods
from harness.errors import HarnessError
from harness.measure.cost import latency_ms, measure_structure, network_fingerprint
from harness.measure.latency import runtime_window
from harness.networks.build import build_network, trained_network
from harness.networks.deployed import Deployed
from harness.spec.schema import StudySpec, constraint_column, constraint_label

EXCESS = "excess@"  # a trial row's column per limit: excess@latency_ms, excess@params, ...
STATIC = ("params", "size_bytes", "macs")  # costs that do not depend on where the network runs


@dataclass(frozen=True)
class Limit:
    metric: str
    column: str  # the trial figure it holds
    label: str
    max: float | None
    max_x_teacher: float | None
    target: str | None
    batch: int | None

    def bound(self, figures: Mapping[str, Any], teacher: Mapping[str, Any]) -> float | None:
        """The figure's largest allowed value: absolute, or the teacher's (its latency measured
        beside the student's, in ``figures``; its static costs in ``teacher``) times the multiple."""
        if self.max is not None:
            return self.max
        reference = figures.get(f"teacher_{self.column}") if self.metric == "latency" else teacher.get(self.column)
        return None if _missing(reference) else float(reference) * self.max_x_teacher

    def excess(self, figures: Mapping[str, Any], teacher: Mapping[str, Any]) -> float | None:
        """``figure / bound - 1``: at most 0 within the limit; None where either is not measured."""
        value, bound = figures.get(self.column), self.bound(figures, teacher)
        return None if _missing(value) or bound is None else float(value) / bound - 1.0

    def ratio(self, start: Mapping[str, Any], teacher: Mapping[str, Any]) -> float | None:
        """The limit as a fraction of the network a trial starts from (what a pruning method aims at)."""
        bound, value = self.bound(start, teacher), start.get(self.column)
        return None if bound is None or _missing(value) or not value else bound / float(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def study_limits(spec: StudySpec) -> list[Limit]:
    return [Limit(c.metric, constraint_column(c), constraint_label(c), c.max, c.max_x_teacher, c.target, c.batch)
            for c in spec.search.constraints]


def limits_text(spec: StudySpec) -> str | None:
    """The study's limits in words (``latency (batch 64) <= 0.5x teacher; params <= 20,000``), None without."""
    return "; ".join(limit.label for limit in study_limits(spec)) or None


def how_judged(spec: StudySpec) -> str:
    """When the limits are judged: before training, or (a pruning method) once pruned."""
    return ("draws over them never train" if decided_before_training(spec)
            else "judged once pruned; the method aims at the static ones")


def judge(limits: list[Limit], figures: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, Any]:
    """``excess@COLUMN`` per limit and ``feasible``: True within every limit, False over any,
    None while a figure is not measured yet (a latency before the trial's last report)."""
    excess = {f"{EXCESS}{limit.column}": limit.excess(figures, teacher) for limit in limits}
    over = any(v is not None and v > 0 for v in excess.values())
    feasible = False if over else (None if any(v is None for v in excess.values()) else True)
    return {**{k: (math.nan if v is None else v) for k, v in excess.items()}, "feasible": feasible}


def judge_row(limits: list[Limit], row: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`judge` on a trial's row, which carries the teacher's static costs as ``teacher_params``..."""
    return judge(limits, row, {k: row.get(f"teacher_{k}") for k in STATIC})


def handed_limits(limits: list[Limit], start: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, float]:
    """Static limits as fractions of the trial's starting network: ``Method.within``'s argument."""
    ratios = {}
    for limit in limits:
        if limit.metric in STATIC and (ratio := limit.ratio(start, teacher)) is not None:
            ratios[limit.metric] = min(ratio, ratios.get(limit.metric, math.inf))
    return ratios


def decided_before_training(spec: StudySpec) -> bool:
    """Whether a draw's network is known before it trains: not when the method prunes it."""
    return methods.METHODS.get(spec.method).family != "pruning"


LATENCY_NOISE = 0.1  # one measurement's spread here, as a fraction (benchmarks/latency_windows.py)


@dataclass
class Verdict:
    figures: dict[str, Any]  # the draw's network: static costs, and its latencies measured here
    judged: dict[str, Any]  # judge()'s columns

    @property
    def feasible(self) -> bool:
        return self.judged["feasible"] is not False


class DrawGate:
    """What a drawn trial's network will cost, before it trains: built at the drawn width (a
    chained student at its parent's shapes), counted, and timed on this machine at the trial's
    threads beside the teacher, once per network (by fingerprint). Picklable: Tune saves it
    with the searcher, and a resumed study keeps its measurements."""

    def __init__(self, spec: StudySpec, num_classes: int, input_shape: tuple[int, ...],
                 mean: tuple[float, ...], std: tuple[float, ...], teacher: nn.Module | None = None,
                 student_state: dict[str, torch.Tensor] | None = None) -> None:
        self.spec, self.num_classes, self.input_shape = spec, num_classes, tuple(input_shape)
        self.mean, self.std = mean, std
        self.limits = study_limits(spec)
        self.student_state = student_state
        self.measured: dict[str, dict[str, Any]] = {}  # fingerprint -> figures
        # Latency measured here stands for the trial's only on a CPU; on a GPU it is judged at the end.
        self.timed = [limit for limit in self.limits if limit.metric == "latency" and spec.resources.gpu == 0
                      and (limit.target is None or not spec.deploy.targets[limit.target].placed)]
        # The teacher is timed again beside each new network, under the same load (trials may be running).
        self.teacher_network = teacher if any(lim.max_x_teacher for lim in self.timed) else None
        self.teacher = dict(measure_structure(teacher, self.input_shape, torch.device("cpu"))) if teacher else {}

    def __call__(self, config: dict[str, Any]) -> Verdict:
        if not decided_before_training(self.spec):  # pruned in the trial: judged at its end only
            return Verdict({}, {"feasible": None})
        network = self.network(config)
        key = network_fingerprint(network)
        if key not in self.measured:
            self.measured[key] = self._figures(network)
        figures = self.measured[key]
        known = [limit for limit in self.limits if limit.metric in STATIC or limit in self.timed]
        return Verdict(figures, judge(known, figures, self.teacher))

    def network(self, config: dict[str, Any]) -> nn.Module:
        model = self.spec.trial_student(config)
        if self.student_state is not None:
            return trained_network(model, self.num_classes, self.input_shape, "student", self.student_state)
        return build_network(model, self.num_classes, self.input_shape, "student").eval()

    def _figures(self, network: nn.Module) -> dict[str, Any]:
        """Static costs, the latencies the timed limits hold, and the teacher's (``teacher_*``)
        measured right after, as a trial measures them: each limit compares like with like."""
        figures: dict[str, Any] = dict(measure_structure(network, self.input_shape, torch.device("cpu")))
        if self.timed:
            threads = torch.get_num_threads()
            torch.set_num_threads(max(1, math.floor(self.spec.resources.cpu)))  # as the trial measures
            try:
                figures.update(self._latencies(network))
                if self.teacher_network is not None:
                    figures.update({f"teacher_{k}": v for k, v in self._latencies(self.teacher_network).items()})
            finally:
                torch.set_num_threads(threads)
        return figures

    def _latencies(self, network: nn.Module) -> dict[str, float]:
        m, out = self.spec.measure, {}
        for batch in dict.fromkeys(limit.batch for limit in self.timed if limit.target is None):
            x = torch.randn(batch, *self.input_shape)
            out["latency_b1_ms" if batch == 1 else "latency_ms"] = latency_ms(network.eval(), x, m.warmup, m.repeats)
        for limit in (lim for lim in self.timed if lim.target is not None):
            target = self.spec.deploy.targets[limit.target]
            deployed = Deployed(network, self.mean, self.std).eval()
            figures = runtime_window({"net": (deployed, self.input_shape)}, target.runtime, target.threads,
                                     [limit.batch], 1, m.warmup, m.repeats, attempts=1)["net"][limit.batch]
            out[limit.column] = figures["latency_ms"]
        return out

    def smallest(self) -> tuple[dict[str, Any], Verdict]:
        """The draw of the smallest network the study can train, and its verdict."""
        drawn = self.spec.search.space.get("student.width")
        config = {"student.width": min(drawn.args)} if drawn is not None else {}
        return config, self(config)


def check_reachable(gate: DrawGate, spec: StudySpec) -> None:
    """One error line when no network of the study can meet a limit: the smallest width drawn
    (or the only network) is over it already. Pruning methods are not checked: their network is
    as small as their target makes it."""
    if not gate.limits or not decided_before_training(spec):
        return
    config, verdict = gate.smallest()
    for limit in gate.limits:
        excess = verdict.judged.get(f"{EXCESS}{limit.column}")
        # A latency within its noise of the limit may be met: refused only when clearly over it.
        if excess is not None and excess > (LATENCY_NOISE if limit.metric == "latency" else 0):
            value = verdict.figures[limit.column]
            which = f"at its smallest width ({config['student.width']:g})" if config else "(its only network)"
            shown = f"{value:.3g} ms" if limit.metric == "latency" else f"{value:,.0f}"
            raise HarnessError(f"search.constraints: '{limit.label}' cannot be met: the student {which} has "
                               f"{limit.metric} {shown}, {excess + 1:.2f}x the limit, on this machine; loosen "
                               f"the limit or make the student smaller")
