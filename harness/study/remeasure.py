"""Latency measured again once searches have ended, every distinct network once.

During the search, trials share their machine: a latency taken while a
neighbour trains includes that contention, and single runs on a busy 2-core
box can be 50% apart (benchmarks/latency_quality.py). Once every seed's trials
have ended, nothing else of the study runs, so every completed trial's student
(all seeds) is measured again in one Ray task holding one trial's resources:
one window (harness.measure.latency) over the distinct networks of the trials and their
teachers, by structural fingerprint, so that trials of one architecture share
one figure and its interval instead of differing by noise.

``python -m harness remeasure STUDY_DIR...`` and ``harness leaderboard`` do the
same for finished studies together, so that methods run at different times
compare in one window.

The students come from each trial's last checkpoint (the state its final
report saved), so nothing has to be kept in memory while the search runs.
"""
from __future__ import annotations

import io
import json
import posixpath
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
import torch

from harness.errors import HarnessError
from harness.measure.cost import count_params, device_name, network_fingerprint
from harness.measure.latency import TimedNetwork, measure_window
from harness.networks.build import trained_network
from harness.spec.schema import MeasureSpec, ResourcesSpec, StudySpec
from harness.store.location import Location, open_location, open_study
from harness.store.tables import read_table
from harness.study.results import ResultsWriter, trial_key
from harness.study.students import StudyStudents
from harness.study.trial import (
    STATE_FILE,
    claim_device,
    load_teacher,
    prepare_model,
    set_threads,
)

Figures = dict[str, dict[str, Any]]  # row id -> what was measured
Weights = dict[str, torch.Tensor]


def finished_students(spec: StudySpec, study: Path | Location,
                      networks: dict[str, Any] | None = None) -> tuple[dict[str, Weights], dict[str, str]]:
    """For every trial of every seed's run folder that ran its whole budget (a resumed
    study's earlier seeds included): row id -> the exported student's weights, read where
    Tune wrote them (a bucket too), or, for a row whose network (``networks``: row id ->
    the fingerprint its trial recorded) is one already read, row id -> that row."""
    from ray.tune import ExperimentAnalysis

    study = study if isinstance(study, Location) else open_location(study)
    students, same_as, read = {}, {}, {}
    for seed in spec.seeds:
        if not study.exists("tune", f"seed{seed}"):
            continue
        for trial in ExperimentAnalysis(study.path("tune", f"seed{seed}"), storage_filesystem=study.fs).trials:
            last = trial.last_result or {}
            if trial.status == "ERROR" or last.get("epoch") != spec.budget.epochs or trial.checkpoint is None:
                continue
            key = trial_key(seed, trial.trial_id)
            network = (networks or {}).get(key)
            if isinstance(network, str) and network in read:
                same_as[key] = read[network]
                continue
            saved = study.read_file(posixpath.join(trial.checkpoint.path, STATE_FILE))
            state = torch.load(io.BytesIO(saved), map_location="cpu", weights_only=True)
            students[key] = state["method"]["student"]
            if isinstance(network, str):
                read[network] = key
    return students, same_as


def measure_studies(studies: list[StudyStudents], rounds: int, resources: ResourcesSpec,
                    max_spread: float = 0.25, attempts: int = 3) -> list[Figures]:
    """Per study, per row id: the figures of its network in one window (harness.measure.latency) over
    every distinct network of every study, teachers included, each timed once per round;
    the parameter count of what was measured, its fingerprint, the device, and the teacher's
    figures beside them."""
    set_threads(resources.cpu)
    device = claim_device(resources)
    networks: dict[str, TimedNetwork] = {}

    def add(model: torch.nn.Module, spec: StudySpec, shape: tuple[int, ...]) -> str:
        m = spec.measure
        # Speed depends on the structure and on how it is measured, not on the weights.
        key = f"{network_fingerprint(model)}|{shape}|b{m.batch_size}|nhwc={spec.resources.channels_last}"
        networks.setdefault(key, TimedNetwork(model, shape, m.batch_size, m.warmup, m.repeats))
        return key

    rows = []  # (study index, row id, network key, teacher key, parameters)
    for index, study in enumerate(studies):
        spec = study.spec
        teacher = load_teacher(spec, study.num_classes, study.input_shape, study.teacher_state, device)
        teacher_key = add(teacher, spec, study.input_shape) if teacher is not None else None
        for row_id, state in study.students.items():
            model = trained_network(spec.student, study.num_classes, study.input_shape, "student", state)
            model = prepare_model(model.to(device), spec.resources.channels_last).eval()
            rows.append((index, row_id, add(model, spec, study.input_shape), teacher_key, count_params(model)))
        of_row = {row[1]: row for row in rows if row[0] == index}
        rows += [(index, row_id, *of_row[other][2:]) for row_id, other in study.same_as.items()]
    measured = measure_window(networks, rounds, max_spread, attempts)
    window = f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}-{uuid.uuid4().hex[:6]}"
    out: list[Figures] = [{} for _ in studies]
    for index, row_id, key, teacher_key, params in rows:
        figures = {**measured[key], "network": key.split("|")[0], "params_measured": params,
                   "device": device_name(device), "latency_window": window}
        if teacher_key is not None:
            teacher = measured[teacher_key]
            figures.update({f"teacher_{k}": teacher[k] for k in TEACHER_FIGURES},
                           teacher_network=teacher_key.split("|")[0])
        out[index][row_id] = figures
    return out


TEACHER_FIGURES = ("latency_ms", "latency_b1_ms", "latency_low_ms", "latency_high_ms")


def measure_on_cluster(studies: list[StudyStudents], rounds: int, resources: ResourcesSpec,
                       max_spread: float, attempts: int) -> list[Figures]:
    """:func:`measure_studies` as one Ray task holding one trial's resources."""
    if not any(s.students for s in studies):
        return [{} for _ in studies]
    task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu)(measure_studies)
    return ray.get(task.remote(studies, rounds, resources, max_spread, attempts))


def measure_again(studies: list[tuple[StudyStudents, ResultsWriter]], rounds: int | None = None,
                  default: bool = True) -> list[list[str]]:
    """Measure in one window (the first study's resources and ``measure`` settings, and
    ``rounds`` when given, else the most rounds any of them asks for), then each deployment
    target in a window of its own (harness.study.targets); write each study's figures through
    its writer, and return per study the lines to print (none for a study without completed
    trials). ``default=False`` measures the targets only."""
    # A study that kept its in-trial figures (measure.rounds: 0) is measured with the others' rounds.
    rounds = rounds or max(s.spec.measure.rounds for s, _ in studies) or MeasureSpec().rounds
    out = _measure_default(studies, rounds) if default else [[] for _ in studies]
    if any(s.spec.deploy.targets and (s.students or s.same_as) for s, _ in studies):
        from harness.study.targets import measure_targets

        rows, lines = measure_targets([students for students, _ in studies], rounds)
        for index, ((_, writer), mine) in enumerate(zip(studies, rows, strict=True)):
            if mine:
                writer.record_targets(mine)
                out[index] += [line for line, members in lines if index in members]
    return out


def _measure_default(studies: list[tuple[StudyStudents, ResultsWriter]], rounds: int) -> list[list[str]]:
    first = studies[0][0].spec
    m = first.measure
    started = time.monotonic()
    all_figures = measure_on_cluster([students for students, _ in studies], rounds, first.resources,
                                     m.max_spread, m.attempts)
    seconds = time.monotonic() - started
    out = []
    for (students, writer), figures in zip(studies, all_figures, strict=True):
        if not figures:
            out.append([])
            continue
        mismatched = writer.record_remeasurement(figures)
        networks = {f["network"]: f for f in figures.values()}
        spreads = sorted(f["latency_spread"] for f in networks.values())
        noisy = sorted(n for n, f in networks.items() if f["latency_noisy"])
        lines = [f"latency of {len(figures)} completed trial(s), {len(networks)} distinct network(s), measured "
                 f"again in one window: {rounds} interleaved round(s) [{seconds:.0f}s]; interval width at batch "
                 f"{students.spec.measure.batch_size}: median {spreads[len(spreads) // 2]:.0%}, "
                 f"max {spreads[-1]:.0%}"]
        if noisy:
            lines.append(f"latency of network(s) {', '.join(noisy)} stayed noisy (interval wider than "
                         f"{m.max_spread:.0%} of the median after {m.attempts} attempt(s)): flagged latency_noisy")
        if mismatched:
            lines.append(f"the checkpoint of {', '.join(mismatched)} did not hold the student the trial "
                         f"measured; its in-trial latency stands")
        out.append(lines)
    return out


# --- `python -m harness remeasure STUDY_DIR...` -----------------------------------------

def load_finished_study(study: Location) -> StudyStudents:
    """A finished study's spec, students and teacher, from its results folder and the
    teacher cache beside it; one clear error when something is missing."""
    from harness.data.datasets import load_dataset
    from harness.spec.load import load_spec
    from harness.study.teachers import obtain_teacher

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
    trials = read_table(folder, "trials")
    from harness.study.quantized import int8_images, reads_every_checkpoint, trial_quantization

    networks = dict(zip(trials["trial_id"], trials["network"], strict=True)) if "network" in trials else {}
    students, same_as = finished_students(spec, study, None if reads_every_checkpoint(spec) else networks)
    return StudyStudents(spec, data.num_classes, data.input_shape, students, teacher_state, same_as,
                         data.mean, data.std, int8_images(spec, data),
                         trial_quantization(spec, trials.to_dict("records")))


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


def remeasure_studies(studies: list[tuple[StudyStudents, ResultsWriter]], rounds: int | None = None) -> list[str]:
    """Measure them again, all in one window, on the first study's resources (Ray must be
    connected); write each study's results and return the lines to print."""
    results = measure_again(studies, rounds)
    return [f"{writer.location.uri if writer.location else writer.folder}: {line}"
            for (_, writer), lines in zip(studies, results, strict=True)
            for line in lines or ["no completed trial to measure"]]
