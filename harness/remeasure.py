"""Latency measured again once searches have ended, one trial at a time.

During the search, trials share their machine: a latency taken while a
neighbour trains includes that contention, and single runs on a busy 2-core
box can be 50% apart (benchmarks/latency_quality.py). Once every seed's trials
have ended, nothing else of the study runs, so every completed trial's student
(all seeds) is measured again in one Ray task holding one trial's resources:
``rounds`` passes over all of them in turn, the teacher right after each
student, and the median of the rounds kept. Interleaving the rounds spreads any
drift of the machine over every trial alike instead of favouring the ones
measured first, and one window for all seeds keeps them comparable.

``python -m harness remeasure STUDY_DIR...`` does the same for finished studies
together, so that methods run at different times compare in one window.

The students come from each trial's last checkpoint (the state its final
report saved), so nothing has to be kept in memory while the search runs.
"""
from __future__ import annotations

import io
import json
import math
import posixpath
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch

from harness.errors import HarnessError
from harness.location import Location, open_location, open_study
from harness.measure import count_params, device_name, measure_latency
from harness.networks import build_network
from harness.results import ResultsWriter, trial_key
from harness.spec import ResourcesSpec, StudySpec
from harness.trial import (
    STATE_FILE,
    claim_device,
    load_teacher,
    prepare_model,
    set_threads,
)
from methods.checkpoint import fit_shapes

Figures = dict[str, dict[str, Any]]  # row id -> what was measured


@dataclass
class StudyStudents:
    """One study's completed students (row id -> weights) and its teacher, ready to measure."""

    spec: StudySpec
    num_classes: int
    input_shape: tuple[int, ...]
    students: dict[str, dict[str, torch.Tensor]]
    teacher_state: dict[str, torch.Tensor] | None


def finished_students(spec: StudySpec, study: Path | Location) -> dict[str, dict[str, torch.Tensor]]:
    """Row id -> the exported student's weights, for every trial of every seed's run folder
    that ran its whole budget (a resumed study's earlier seeds included); the run folders
    are read where Tune wrote them (a bucket too)."""
    from ray.tune import ExperimentAnalysis

    study = study if isinstance(study, Location) else open_location(study)
    students = {}
    for seed in spec.seeds:
        if not study.exists("tune", f"seed{seed}"):
            continue
        for trial in ExperimentAnalysis(study.path("tune", f"seed{seed}"), storage_filesystem=study.fs).trials:
            last = trial.last_result or {}
            if trial.status == "ERROR" or last.get("epoch") != spec.budget.epochs or trial.checkpoint is None:
                continue
            saved = study.read_file(posixpath.join(trial.checkpoint.path, STATE_FILE))
            state = torch.load(io.BytesIO(saved), map_location="cpu", weights_only=True)
            students[trial_key(seed, trial.trial_id)] = state["method"]["student"]
    return students


def measure_studies(studies: list[StudyStudents], rounds: int, resources: ResourcesSpec) -> list[Figures]:
    """Per study, per row id: median latencies over ``rounds`` passes over every student of
    every study in turn (each followed by its teacher), their spread, the parameter count
    of what was measured, and the device."""
    set_threads(resources.cpu)
    device = claim_device(resources)
    entries = []  # (study index, row id, student, teacher, measure settings, image shape)
    for index, study in enumerate(studies):
        spec = study.spec
        teacher = load_teacher(spec, study.num_classes, study.input_shape, study.teacher_state, device)
        for key, state in study.students.items():
            model = build_network(spec.student, study.num_classes, study.input_shape, "student")
            fit_shapes(model, state)  # a pruned student is narrower than a fresh one
            model.load_state_dict(state)
            model = prepare_model(model.to(device), spec.resources.channels_last).eval()
            entries.append((index, key, model, teacher, spec.measure, study.input_shape))
    runs: dict[tuple[int, str], list[dict[str, float]]] = {(e[0], e[1]): [] for e in entries}
    for _ in range(rounds):
        for index, key, model, teacher, m, shape in entries:
            figures = measure_latency(model, shape, device, m.batch_size, m.warmup, m.repeats)
            if teacher is not None:
                teacher_figures = measure_latency(teacher, shape, device, m.batch_size, m.warmup, m.repeats)
                figures.update({f"teacher_{k}": v for k, v in teacher_figures.items()})
            runs[index, key].append(figures)
    out: list[Figures] = [{} for _ in studies]
    for index, key, model, *_ in entries:
        out[index][key] = summarise(runs[index, key], count_params(model), device_name(device))
    return out


def summarise(runs: list[dict[str, float]], params: int, device: str) -> dict[str, Any]:
    """One trial's rounds: the median of each figure, and the spread of the batch latency."""
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    values = [r["latency_ms"] for r in runs]
    out.update(latency_rounds=len(runs), params_measured=params, device=device,
               latency_spread=(max(values) - min(values)) / out["latency_ms"] if out["latency_ms"] > 0 else math.nan)
    return out


def measure_on_cluster(studies: list[StudyStudents], rounds: int, resources: ResourcesSpec) -> list[Figures]:
    """:func:`measure_studies` as one Ray task holding one trial's resources."""
    if not any(s.students for s in studies):
        return [{} for _ in studies]
    task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu)(measure_studies)
    return ray.get(task.remote(studies, rounds, resources))


def measure_again(studies: list[tuple[StudyStudents, ResultsWriter]], rounds: int,
                  resources: ResourcesSpec) -> list[list[str]]:
    """Measure, write each study's figures through its writer, and return per study the
    lines to print (none for a study without completed trials)."""
    started = time.monotonic()
    all_figures = measure_on_cluster([students for students, _ in studies], rounds, resources)
    seconds = time.monotonic() - started
    out = []
    for (students, writer), figures in zip(studies, all_figures):
        if not figures:
            out.append([])
            continue
        mismatched = writer.record_remeasurement(figures)
        spreads = sorted(f["latency_spread"] for f in figures.values())
        lines = [f"latency of {len(figures)} completed trial(s) measured again, one at a time, {rounds} "
                 f"interleaved round(s) [{seconds:.0f}s]; spread between rounds at batch "
                 f"{students.spec.measure.batch_size}: median {spreads[len(spreads) // 2]:.0%}, "
                 f"max {spreads[-1]:.0%}"]
        if mismatched:
            lines.append(f"the checkpoint of {', '.join(mismatched)} did not hold the student the trial "
                         f"measured; its in-trial latency stands")
        out.append(lines)
    return out


# --- `python -m harness remeasure STUDY_DIR...` -----------------------------------------

def load_finished_study(study: Location) -> StudyStudents:
    """A finished study's spec, students and teacher, from its results folder and the
    teacher cache beside it; one clear error when something is missing."""
    from harness.data import load_dataset
    from harness.spec import load_spec
    from harness.teachers import obtain_teacher

    folder = study.local
    if not folder.is_dir():  # load_spec would take the name for a spec file
        raise HarnessError(f"{folder}: no such study folder")
    spec = load_spec(str(folder))
    info = json.loads((folder / "study.json").read_text())
    if not info.get("ended_at"):
        raise HarnessError(f"{folder}: the study has not finished (still running, or interrupted: "
                           f"`python -m harness sweep {folder} --resume` finishes it)")
    if spec.resources.compile:
        raise HarnessError(f"{folder}: its latencies are of networks compiled with torch.compile "
                           f"(resources.compile), which this command would measure uncompiled")
    data = load_dataset(spec.dataset)
    teacher_state = None
    if spec.teacher is not None:
        def not_cached(*_: Any) -> None:
            raise HarnessError(f"{study.uri}: its teacher is not in {study.parent().uri_of('teachers')} "
                               f"(the cache its sweep wrote); measure it where it ran")

        teacher_state = obtain_teacher(spec, data, study.parent(), train=not_cached).state
    return StudyStudents(spec, data.num_classes, data.input_shape, finished_students(spec, study), teacher_state)


def load_finished_studies(folders: list[str | Path]) -> list[tuple[StudyStudents, ResultsWriter]]:
    """Each study's students and a writer holding its results (no Ray needed yet); folders
    or URIs."""
    studies = []
    for folder in folders:
        study = open_study(folder)
        students = load_finished_study(study)
        writer = ResultsWriter(students.spec, study.local, None, location=study)
        writer.load_previous()
        studies.append((students, writer))
    return studies


def remeasure_studies(studies: list[tuple[StudyStudents, ResultsWriter]], rounds: int) -> list[str]:
    """Measure them again, all in one window, on the first study's resources (Ray must be
    connected); write each study's results and return the lines to print."""
    results = measure_again(studies, rounds, studies[0][0].spec.resources)
    return [f"{writer.location.uri if writer.location else writer.folder}: {line}"
            for (_, writer), lines in zip(studies, results)
            for line in lines or ["no completed trial to measure"]]
