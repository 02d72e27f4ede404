"""What ``search.constraints`` and a searched ``student.width`` mean, checked when the spec is read.

Whether any network of the study can meet the limits needs the data's image shape and
is checked by :func:`harness.study.constraints.check_reachable` before anything trains.
"""
from __future__ import annotations

from typing import Any

from harness.errors import SpecError
from harness.networks.build import is_zoo
from harness.spec.schema import CONSTRAINT_METRICS, ConstraintSpec, StudySpec
from methods.knobs import Bounds, format_number, show
from methods.registry import did_you_mean
from methods.study import Distribution

WIDTH = Bounds(0, 64, low_open=True)


def check_width_knob(spec: StudySpec, method: Any) -> None:
    """A searched ``student.width`` (kept in the space as the knob ``student.width``)."""
    drawn = spec.search.space.get("student.width")
    if drawn is None:
        return
    where = "student.width"
    if not isinstance(drawn, Distribution):
        raise SpecError(f"{where}: give the width itself (student.width: 0.5) or a distribution to search "
                        f"({{uniform: [0.25, 1.0]}}), not {show(drawn)} in search.space")
    if spec.student.from_study is not None:
        raise SpecError(f"{where}: a chained student is its parent trial's network, at its shapes; its width "
                        f"cannot be searched")
    if not is_zoo(spec.student.model):
        raise SpecError(f"{where}: width scales the zoo's networks only; '{spec.student.model}' takes its "
                        f"size from student.kwargs")
    if method.family == "pruning":
        raise SpecError(f"{where}: '{spec.method}' prunes the teacher's own network, so the student's width "
                        f"is the teacher's; search the method's pruning target instead")
    for value in drawn.args:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value not in WIDTH:
            raise SpecError(f"{where}: every width must be {WIDTH}, got {show(value)}")


def check_constraints(spec: StudySpec) -> None:
    """Each limit names a known cost, one positive bound, a teacher when relative, and a latency's
    batch among those measured (set here when the figure has one batch)."""
    targets = spec.deploy.targets
    for i, limit in enumerate(spec.search.constraints):
        where = f"search.constraints[{i}]"
        if limit.metric not in CONSTRAINT_METRICS:
            raise SpecError(f"{where}.metric: unknown metric '{limit.metric}'"
                            f"{did_you_mean(limit.metric, CONSTRAINT_METRICS)} (limits hold one of: "
                            f"{', '.join(CONSTRAINT_METRICS)})")
        if (limit.max is None) == (limit.max_x_teacher is None):
            raise SpecError(f"{where}: give one bound, max (absolute) or max_x_teacher (a multiple of the "
                            f"teacher's), e.g. {{metric: {limit.metric}, max_x_teacher: 0.5}}")
        bound, name = (limit.max, "max") if limit.max is not None else (limit.max_x_teacher, "max_x_teacher")
        if not bound > 0:
            raise SpecError(f"{where}.{name}: a limit must be above 0, got {format_number(bound)}")
        if limit.max_x_teacher is not None and spec.teacher is None:
            raise SpecError(f"{where}.max_x_teacher: '{spec.method}' has no teacher to be relative to; "
                            f"give an absolute limit (max)")
        _check_latency(limit, spec, targets, where)
    seen = [(c.metric, c.target, c.batch) for c in spec.search.constraints]
    for i, key in enumerate(seen):
        if key in seen[:i]:
            raise SpecError(f"search.constraints[{i}]: a second limit on {key[0]}"
                            f"{' on ' + key[1] if key[1] else ''}; keep the tighter one")


def _check_latency(limit: ConstraintSpec, spec: StudySpec, targets: dict[str, Any], where: str) -> None:
    if limit.metric != "latency":
        if limit.target is not None or limit.batch is not None:
            raise SpecError(f"{where}: target and batch are a latency's; '{limit.metric}' has neither")
        return
    if limit.target is None:
        batches = (1, spec.measure.batch_size)
        limit.batch = spec.measure.batch_size if limit.batch is None else limit.batch
        if limit.batch not in batches:
            raise SpecError(f"{where}.batch: the trials measure latency at batch 1 and measure.batch_size "
                            f"({spec.measure.batch_size}), not {limit.batch}; or name a deployment target")
        return
    if targets.get(limit.target) is not None and targets[limit.target].precision != "fp32":
        raise SpecError(f"{where}.target: '{limit.target}' is an int8 target, measured after the search; "
                        f"limits hold the trials' float32 networks")
    limit.batch = target_batch(limit.target, limit.batch, targets, where, "limit")


def target_batch(name: str, batch: int | None, targets: dict[str, Any], where: str, what: str) -> int:
    """The batch size of a deployment target an objective or a limit names: the one given, which the
    target must measure, or the target's only one."""
    if name not in targets:
        raise SpecError(f"{where}.target: no deployment target '{name}' in deploy.targets"
                        f"{did_you_mean(name, list(targets))}")
    measured = targets[name].batch
    if batch is None:
        if len(measured) > 1:
            raise SpecError(f"{where}.batch: target '{name}' measures batches {show(measured)}; "
                            f"say which one the {what} is on")
        return measured[0]
    if batch not in measured:
        raise SpecError(f"{where}.batch: target '{name}' measures batches {show(measured)}, not {batch}")
    return batch
