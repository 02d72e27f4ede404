"""Latency measured again once a study's searches have ended, one trial at a time.

During the search, trials share their machine: a latency taken while a
neighbour trains includes that contention, and single runs on a busy 2-core
box can be 50% apart (benchmarks/latency_quality.py). Once every seed's trials
have ended, nothing else of the study runs, so every completed trial's student
(all seeds) is measured again in one Ray task holding one trial's resources:
``rounds`` passes over all of them in turn, the teacher right after each
student, and the median of the rounds kept. Interleaving the rounds spreads any
drift of the machine over every trial alike instead of favouring the ones
measured first, and one window for all seeds keeps them comparable.

The students come from each trial's last checkpoint (the state its final
report saved), so nothing has to be kept in memory while the search runs.
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import ray
import torch

from harness.measure import count_params, device_name, measure_latency
from harness.results import trial_key
from harness.spec import StudySpec
from harness.trial import claim_device, load_teacher, prepare_model, set_threads
from harness.zoo import create_model
from methods.checkpoint import fit_shapes


def finished_students(run_paths: dict[int, Path], spec: StudySpec,
                      state_file: str) -> dict[str, dict[str, torch.Tensor]]:
    """Row id -> the exported student's weights, for every trial of every seed's run folder
    that ran its whole budget (a resumed study's earlier seeds included)."""
    from ray.tune import ExperimentAnalysis

    students = {}
    for seed, path in run_paths.items():
        if not path.exists():
            continue
        for trial in ExperimentAnalysis(str(path)).trials:
            last = trial.last_result or {}
            if trial.status == "ERROR" or last.get("epoch") != spec.budget.epochs or trial.checkpoint is None:
                continue
            state = torch.load(Path(trial.checkpoint.path) / state_file, map_location="cpu", weights_only=True)
            students[trial_key(seed, trial.trial_id)] = state["method"]["student"]
    return students


def measure_students(spec: StudySpec, num_classes: int, input_shape: tuple[int, ...],
                     students: dict[str, dict[str, torch.Tensor]],
                     teacher_state: dict[str, torch.Tensor] | None, rounds: int) -> dict[str, dict[str, Any]]:
    """Per row id: median latencies over ``rounds`` interleaved passes (student, then teacher),
    their spread, the parameter count of what was measured, and the device."""
    set_threads(spec.resources.cpu)
    device = claim_device(spec.resources)
    m = spec.measure
    models = {}
    for trial_id, state in students.items():
        model = create_model(spec.student.model, num_classes, spec.student.width, input_shape)
        fit_shapes(model, state)  # a pruned student is narrower than a fresh one
        model.load_state_dict(state)
        models[trial_id] = prepare_model(model.to(device), spec.resources.channels_last).eval()
    teacher = load_teacher(spec, num_classes, input_shape, teacher_state, device)
    runs: dict[str, list[dict[str, float]]] = {trial_id: [] for trial_id in models}
    for _ in range(rounds):
        for trial_id, model in models.items():
            figures = measure_latency(model, input_shape, device, m.batch_size, m.warmup, m.repeats)
            if teacher is not None:
                teacher_figures = measure_latency(teacher, input_shape, device, m.batch_size, m.warmup, m.repeats)
                figures.update({f"teacher_{k}": v for k, v in teacher_figures.items()})
            runs[trial_id].append(figures)
    return {trial_id: summarise(runs[trial_id], count_params(model), device_name(device))
            for trial_id, model in models.items()}


def summarise(runs: list[dict[str, float]], params: int, device: str) -> dict[str, Any]:
    """One trial's rounds: the median of each figure, and the spread of the batch latency."""
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    values = [r["latency_ms"] for r in runs]
    out.update(latency_rounds=len(runs), params_measured=params, device=device,
               latency_spread=(max(values) - min(values)) / out["latency_ms"] if out["latency_ms"] > 0 else math.nan)
    return out


def remeasure_study(spec: StudySpec, run_paths: dict[int, Path], num_classes: int, input_shape: tuple[int, ...],
                    teacher_state_ref: Any, state_file: str) -> tuple[dict[str, dict[str, Any]], float]:
    """Run :func:`measure_students` as one Ray task with one trial's resources; (figures, seconds)."""
    started = time.monotonic()
    students = finished_students(run_paths, spec, state_file)
    if not students:
        return {}, 0.0
    task = ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)(measure_students)
    figures = ray.get(task.remote(spec, num_classes, input_shape, students, teacher_state_ref,
                                  spec.measure.rounds))
    return figures, time.monotonic() - started
