"""Deployment targets (``deploy.targets``): each latency measured where the network will run.

A target is a runtime (harness.measure.runtimes), batch sizes, a thread count and,
optionally, a node. Its window runs as one Ray task holding ``threads`` CPUs and the
node's custom resources and labels, so only a node that matches can run it; every
distinct network (structural fingerprint), students and teachers alike, is measured once
per target and batch size, interleaved with the others (harness.measure.latency), and
each figure names the node it was taken on. A target whose node leaves the cluster while
it measures is retried by Ray on another node that matches; when none is left, its
figures are left missing and a line says so: never taken on a node that does not match.

The default target (torch eager at batch 1 and ``measure.batch_size``, the trial's
threads, on the trial's node) is what every trial measures (harness.study.remeasure);
it is not measured here, so a study without targets costs what it did before.
"""
from __future__ import annotations

import copy
import json
import math
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn

from harness.errors import HarnessError, SpecError
from harness.measure.cost import network_fingerprint
from harness.measure.latency import runtime_window
from harness.networks.build import trained_network
from harness.networks.deployed import Deployed
from harness.spec.schema import MeasureSpec, StudySpec, TargetSpec, target_metric
from harness.study.quantized import graph_layout, quantize_network
from harness.study.students import StudyStudents

TEACHER = "<teacher>"  # the key of a study's teacher among its rows' figures
POLL_S = 5.0  # how often a pending window checks that a node matching its target is still there
Row = dict[str, Any]


def describe(name: str, target: TargetSpec) -> str:
    """``ort (onnxruntime, batch 1, 1 thread, on a node with edge_x86=1)``."""
    batches = ", ".join(map(str, target.batch))
    where = ""
    if target.placed:
        wants = [f"{k}={v:g}" for k, v in target.node.resources.items()]
        wants += [f"label {k}={v}" for k, v in target.node.labels.items()]
        where = f", on a node with {', '.join(wants)}"
    precision = ", int8" if target.precision == "int8" else ""
    return (f"{name} ({target.runtime}{precision}, batch {batches}, {target.threads} "
            f"thread{'s' * (target.threads != 1)}{where})")


def matches(node: dict[str, Any], target: TargetSpec) -> bool:
    """Whether a node of ``ray.nodes()`` is alive and can run the target's window."""
    if not node.get("Alive"):
        return False
    have, labels = node.get("Resources") or {}, node.get("Labels") or {}
    wants = dict(target.node.resources) if target.node else {}
    wants["CPU"] = target.threads
    return (all(have.get(r, 0) >= amount for r, amount in wants.items())
            and all(labels.get(k) == v for k, v in (target.node.labels if target.node else {}).items()))


def check_placement(spec: StudySpec) -> None:
    """Every target has a node of the cluster to run on, before any training (Ray connected)."""
    import ray

    nodes = ray.nodes()
    for name, target in spec.deploy.targets.items():
        if not any(matches(node, target) for node in nodes):
            what = describe(name, target).split(" (", 1)[1].rstrip(")")
            raise SpecError(f"deploy.targets.{name}: no node of the Ray cluster can measure it ({what}; "
                            f"{target.threads} CPU); start one with `ray start --resources` / `--labels` "
                            f"and --num-cpus to match, or change the target")


def _options(target: TargetSpec, hold_cpus: bool) -> dict[str, Any]:
    """Ray's placement of a target's window. After the search it holds ``threads`` CPUs; inside
    a trial it holds none (the trial holds its own, and a window waiting for CPUs the trials
    hold would wait for ever), measuring beside the trials as every in-trial figure does."""
    options: dict[str, Any] = {"num_cpus": target.threads if hold_cpus else 0, "max_retries": 3,
                               "scheduling_strategy": "DEFAULT"}  # placed by the target, not in a trial's group
    if target.node and target.node.resources:
        options["resources"] = dict(target.node.resources)
    if target.node and target.node.labels:
        options["label_selector"] = dict(target.node.labels)
    return options


def _window(models: dict[str, tuple[nn.Module, tuple[int, ...]]], target: TargetSpec, batches: list[int],
            rounds: int, measure: MeasureSpec) -> tuple[dict[str, dict[int, dict[str, Any]]], str, str]:
    """The task on the target's node: the figures, and which node took them."""
    import ray

    figures = runtime_window(models, target.runtime, target.threads, batches, rounds, measure.warmup,
                             measure.repeats, measure.max_spread, measure.attempts)
    return figures, ray.get_runtime_context().get_node_id(), socket.gethostname()


def on_target(name: str, target: TargetSpec, models: dict[str, tuple[nn.Module, tuple[int, ...]]],
              batches: list[int], rounds: int, measure: MeasureSpec,
              hold_cpus: bool = True) -> tuple[Any, str, str] | str:
    """Run the target's window as a Ray task on a node that matches: its result, or why there is none."""
    import ray

    ref = ray.remote(_window).options(**_options(target, hold_cpus)).remote(models, target, batches, rounds, measure)
    while True:
        ready, _ = ray.wait([ref], timeout=POLL_S)
        if ready:
            try:
                return ray.get(ref)
            except ray.exceptions.RayError as error:
                cause = (str(error).strip().splitlines() or [type(error).__name__])[-1]
                return f"its window failed ({cause[:200]})"
        if not any(matches(node, target) for node in ray.nodes()):
            ray.cancel(ref, force=True)
            return "no node that matches it is left in the cluster"


def _as_deployed(network: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    """A trial's network as a target runs it: a float32 copy on the CPU, uncompiled, normalisation inside."""
    model = copy.deepcopy(network).float().cpu()
    if hasattr(model, "_compiled_call_impl"):
        model._compiled_call_impl = None  # the runtime compiles (or exports) it its own way
    return Deployed(model.to(memory_format=torch.contiguous_format), mean, std).eval()


def _this_node() -> str | None:
    """The Ray node id of this process, when it runs under Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _student(study: StudyStudents, state: dict[str, torch.Tensor]) -> nn.Module:
    model = trained_network(study.spec.student, study.num_classes, study.input_shape, "student", state)
    return Deployed(model, study.mean, study.std).eval()


def _teacher(study: StudyStudents) -> nn.Module | None:
    if study.spec.teacher is None or study.teacher_state is None:
        return None
    model = trained_network(study.spec.teacher, study.num_classes, study.input_shape, "teacher",
                            study.teacher_state)
    return Deployed(model, study.mean, study.std).eval()


def measure_targets(studies: list[StudyStudents], rounds: int) -> tuple[list[list[Row]], list[tuple[str, list[int]]]]:
    """Each study's targets measured in one window per target (studies whose targets are alike,
    same name, runtime, threads and node, share it): per study, the rows of latencies.parquet;
    and the lines to print, each with the studies it is about."""
    groups: dict[str, tuple[str, TargetSpec, list[int]]] = {}
    for index, study in enumerate(studies):
        for name, target in study.spec.deploy.targets.items():
            same = json.dumps([name, target.runtime, target.threads, target.precision,
                               target.node and vars(target.node)], sort_keys=True, default=str)
            groups.setdefault(same, (name, target, []))[2].append(index)
    out: list[list[Row]] = [[] for _ in studies]
    lines = []
    for name, target, members in groups.values():
        batches = sorted({b for i in members for b in studies[i].spec.deploy.targets[name].batch})
        models: dict[str, tuple[nn.Module, tuple[int, ...]]] = {}
        of_row: dict[tuple[int, str], tuple[str, str | None]] = {}  # (study, row id) -> network keys

        int8_figures: dict[tuple[int, str], dict[str, Any]] = {}  # (study, row id) -> int8 accuracy, size
        for i in members:
            study = studies[i]
            teacher = _teacher(study)
            if teacher is not None and target.precision == "int8":
                teacher, int8_figures[i, TEACHER] = quantize_network(teacher, study, target)
            teacher_key = _add(models, teacher, study.input_shape) if teacher is not None else None
            for row_id, state in study.students.items():
                model = _student(study, state)
                if target.precision == "int8":  # each trial's own weights set its scales and its accuracy
                    model, int8_figures[i, row_id] = quantize_network(model, study, target,
                                                                      study.quantization.get(row_id))
                of_row[i, row_id] = (_add(models, model, study.input_shape), teacher_key)
            for row_id, other in study.same_as.items():
                of_row[i, row_id] = of_row[i, other]
        if not of_row:
            continue
        started = time.monotonic()
        result = on_target(name, target, models, batches, rounds, studies[members[0]].spec.measure)
        seconds = time.monotonic() - started
        window = f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}-{uuid.uuid4().hex[:6]}"
        if isinstance(result, str):
            lines.append((f"target {describe(name, target)}: not measured, {result}; its figures are left "
                          f"missing", members))
            figures, node_id, host = {}, None, None
        else:
            figures, node_id, host = result
            lines.append((f"target {describe(name, target)}: {len(models)} distinct network(s) measured in one "
                          f"window on node {host} ({node_id[:8]}), {rounds} interleaved round(s) per batch "
                          f"[{seconds:.0f}s]", members))
            noisy = sorted({f"{key.split('|')[0]} (batch {b})" for key, per in figures.items()
                            for b, f in per.items() if f.get("latency_noisy")})
            if noisy:
                lines.append((f"target {name}: latency of {', '.join(noisy)} stayed noisy (interval wider than "
                              f"{studies[members[0]].spec.measure.max_spread:.0%} of the median): flagged "
                              f"latency_noisy", members))
        for (i, row_id), (key, teacher_key) in of_row.items():
            accuracy = int8_figures.get((i, row_id), {})
            if (i, TEACHER) in int8_figures:
                accuracy = {**accuracy, **{f"teacher_{k}": v for k, v in int8_figures[i, TEACHER].items()
                                           if k in ("val_acc", "test_acc", "size_bytes")}}
            for batch in studies[i].spec.deploy.targets[name].batch:
                out[i].append({**_row(row_id, name, target, batch, key, teacher_key, figures, node_id, host, window,
                                      None if figures else result), **accuracy})
    return out, lines


def _add(models: dict[str, tuple[Any, tuple[int, ...]]], model: nn.Module | bytes, shape: tuple[int, ...]) -> str:
    """Key a network by what decides its speed; identical networks are measured once (an int8
    graph by its layout: nodes and weight shapes, not the scales its calibration set)."""
    if isinstance(model, bytes):
        key = f"int8-{graph_layout(model)}|{shape}"
    else:
        key = f"{network_fingerprint(model)}|{shape}"
    models.setdefault(key, (model, shape))
    return key


def _row(row_id: str, name: str, target: TargetSpec, batch: int, key: str, teacher_key: str | None,
         figures: dict[str, dict[int, dict[str, Any]]], node_id: str | None, host: str | None, window: str,
         missing: str | None) -> Row:
    mine = figures.get(key, {}).get(batch, {})
    teacher = figures.get(teacher_key, {}).get(batch, {}) if teacher_key else {}
    return {
        "trial_id": row_id, "target": name, "runtime": target.runtime, "precision": target.precision, "batch": batch,
        "threads": target.threads,
        "node_id": node_id, "node": host, "network": key.split("|")[0],
        **{k: mine.get(k, math.nan) for k in ("latency_ms", "latency_low_ms", "latency_high_ms", "latency_spread")},
        "latency_noisy": mine.get("latency_noisy"), "latency_rounds": mine.get("latency_rounds"),
        "latency_window": window if mine else None,
        "teacher_network": teacher_key.split("|")[0] if teacher_key else None,
        **{f"teacher_{k}": teacher.get(k, math.nan) for k in ("latency_ms", "latency_low_ms", "latency_high_ms")},
        "missing": missing,
    }


def trial_figures(student: nn.Module, spec: StudySpec, input_shape: tuple[int, ...], mean: tuple[float, ...],
                  std: tuple[float, ...], teacher: nn.Module | None = None) -> dict[str, float]:
    """The latencies the search needs at a trial's end (objectives and limits naming a target), one
    round each, measured in the target's runtime on a node that matches it, normalisation inside;
    the ``teacher`` beside the student where a limit is a multiple of its latency there."""
    wanted = [(o.target, o.batch) for o in spec.search.objectives if o.target]
    wanted += [(c.target, c.batch) for c in spec.search.constraints if c.target]
    if not wanted:
        return {}
    relative = {c.target for c in spec.search.constraints if c.target and c.max_x_teacher is not None}
    out = {}
    for name in dict.fromkeys(target for target, _ in wanted):
        target = spec.deploy.targets[name]
        batches = list(dict.fromkeys(b for t, b in wanted if t == name))
        models = {"student": (_as_deployed(student, mean, std), tuple(input_shape))}
        if name in relative and teacher is not None:
            models["teacher"] = (_as_deployed(teacher, mean, std), tuple(input_shape))
        one_round = MeasureSpec(warmup=spec.measure.warmup, repeats=spec.measure.repeats, attempts=1)
        if target.placed:
            import ray

            if not ray.is_initialized():
                raise HarnessError(f"deploy.targets.{name}: measured on a node of a Ray cluster; run the trial "
                                   f"under `harness sweep`")
            result = on_target(name, target, models, batches, 1, one_round, hold_cpus=False)
            if isinstance(result, str):
                raise HarnessError(f"deploy.targets.{name}: {result}")
            measured, node = result[0], result[1]
        else:
            measured = runtime_window(models, target.runtime, target.threads, batches, 1, one_round.warmup,
                                      one_round.repeats, attempts=1)
            node = _this_node()
        figures = measured["student"]
        if "teacher" in measured:
            out.update({f"teacher_{target_metric(name, b)}": measured["teacher"][b]["latency_ms"] for b in batches})
        out.update({target_metric(name, b): figures[b]["latency_ms"] for b in batches})
        out[f"latency_node@{name}"] = node
    return out
