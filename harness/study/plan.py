"""``harness check SPEC``: validate a study completely and say what a sweep of it would do,
without starting Ray (and without downloading anything or training a teacher).

Every check the sweep makes before its first trial is made here too: the spec,
the storage (writable, the study not being written by another command), the data
(found, or to be downloaded), the teacher (its checkpoint loaded and fitted, or
whether the cache holds it), and whether one trial fits this machine.
"""
from __future__ import annotations

import os

import methods
from harness.data.datasets import DatasetSplits, data_root, load_dataset, load_substitute
from harness.errors import DataMissing, HarnessError
from harness.networks.build import check_networks
from harness.spec.load import check_sweep
from harness.spec.schema import StudySpec
from harness.store.location import Location, open_location
from harness.store.lock import held_by, lock_holder, probe_storage
from harness.store.tables import PARTS
from harness.study.first_report import check_first_report
from harness.study.search import asha_rungs, chance_guard, describe_searcher
from methods.study import StudyError


def plan(spec: StudySpec, storage: str | None = None, address: str | None = None) -> list[str]:
    """The lines ``harness check`` prints; a ``HarnessError`` for what would stop the sweep."""
    check_sweep(spec)
    method = methods.METHODS.get(spec.method)
    location = open_location(storage or spec.storage)
    probe_storage(location)  # creates it, as the sweep would; a missing bucket or refused keys are said here
    study = location.child(spec.study)
    if (holder := lock_holder(study if study.remote else study.local)) is not None:
        raise HarnessError(held_by(study, holder))
    pair = f"{spec.teacher.model} -> {spec.student.model}" if spec.teacher else f"student {spec.student.model}"
    lines = [f"study     '{spec.study}': {spec.method}{' (data-free)' if method.data_free else ''}, {pair}"]
    data = _data(spec, lines)
    if data is not None:
        lines += [f"networks  {note}" for note in check_networks(spec, data.num_classes, data.input_shape)]
        if ":" in spec.method:  # a method from outside the project: up to its first report, as the sweep does
            try:
                check_first_report(spec, data.without_training_images() if method.data_free else data)
            except StudyError as error:
                raise HarnessError(str(error)) from None
            lines.append(f"method    '{spec.method}' ran to its first report on a few images; its state "
                         f"fits a checkpoint")
    if spec.teacher is not None:
        lines.append(_teacher(spec, data, location))
    searched = ", ".join(spec.searched_params()) or "none"
    fixed = ", ".join(f"{k}={v}" for k, v in spec.fixed_params().items()) or "none"
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in spec.search.objectives)
    lines += [
        f"search    {spec.search.num_samples} trials per seed x {len(spec.seeds)} seed(s) {spec.seeds} = "
        f"{spec.search.num_samples * len(spec.seeds)} trials; {describe_searcher(spec)} on {objectives}",
        f"knobs     searched: {searched}; fixed: {fixed}; the rest take their defaults (harness list)",
        *_limits(spec, data),
        f"asha      budget {spec.budget.epochs} reports; may stop trials at {', '.join(map(str, asha_rungs(spec)))}"
        f"{'; also stops trials at chance level' if chance_guard(spec) else ''}",
        _resources(spec, address),
        *_targets(spec, address),
        _size(spec, method, data, _at_once(spec, address)),
        f"results   {study.uri}"
        + (" (its earlier results move to previous/ unless --resume)"
           if study.exists("trials.parquet") or study.exists(PARTS) else ""),
    ]
    return lines


def _limits(spec: StudySpec, data: DatasetSplits | None) -> list[str]:
    """The study's limits, checked reachable on the smallest network it draws (the teacher's
    architecture stands for the teacher: its cost does not depend on its weights)."""
    if not spec.search.constraints:
        return []
    from harness.networks.build import build_network
    from harness.study.constraints import DrawGate, check_reachable, how_judged, limits_text

    labels = limits_text(spec)
    if data is None or spec.student.from_study or (spec.teacher and spec.teacher.from_study):
        return [f"limits    {labels}: checked against the networks when the sweep starts"]
    teacher = (build_network(spec.teacher, data.num_classes, data.input_shape, "teacher").eval()
               if spec.teacher is not None else None)
    gate = DrawGate(spec, data.num_classes, data.input_shape, data.mean, data.std, teacher)
    check_reachable(gate, spec)
    within = "; the smallest network drawn is within them" if gate.smallest()[1].feasible else ""
    return [f"limits    {labels}: {how_judged(spec)}{within}"]


def _data(spec: StudySpec, lines: list[str]) -> DatasetSplits | None:
    """The splits, if their files are here; a line either way. Missing files that the sweep
    may not download are an error, as they would be there."""
    d = spec.dataset
    try:
        data = load_dataset(d, download=False)
    except DataMissing:
        if not d.download:
            raise
        lines.append(f"data      {d.name}: not under {data_root(d.root).resolve()}; the sweep downloads it there")
        return None
    lines.append(f"data      {d.name} found: train {len(data.train)}, validation {len(data.val)} "
                 f"(split seed {d.split_seed}), test {len(data.test)}, images {data.input_shape}, "
                 f"{data.num_classes} classes")
    if d.substitute:
        try:
            substitute = load_substitute(d.substitute, d.root, False, data.input_shape)
            lines.append(f"data      substitute {d.substitute} found: {len(substitute)} images")
        except DataMissing:
            if not d.download:
                raise
            lines.append(f"data      substitute {d.substitute}: not under {data_root(d.root).resolve()}; "
                         f"the sweep downloads it")
    return data


def _teacher(spec: StudySpec, data: DatasetSplits | None, location: Location) -> str:
    from harness.study.teachers import cache_files, cache_key, load_checkpoint, teacher_study

    t = spec.teacher
    if t.checkpoint:
        if data is None:
            return f"teacher   {t.model} from {t.checkpoint}: checked once the data is there"
        metrics = load_checkpoint(spec, data).metrics
        return (f"teacher   {t.model} from {t.checkpoint}: fits; validation {metrics['val_acc']:.2%}, "
                f"test {metrics['test_acc']:.2%}")
    epochs = teacher_study(spec).budget.epochs
    if data is None:
        return (f"teacher   {t.model}: trained ({epochs} epochs) and cached in {location.uri_of('teachers')} "
            f"unless it is there")
    weights, meta = cache_files(location.local, spec, data, cache_key(spec, data))
    names = [p.relative_to(location.local).as_posix() for p in (weights, meta)]
    if all(location.exists(name) for name in names):
        return f"teacher   {t.model}: cached ({location.uri_of(names[0])})"
    recipe = ", ".join(f"{k} {v}" for k, v in t.recipe.items() if k != "epochs") or "scratch's defaults"
    return (f"teacher   {t.model}: to be trained ({epochs} epochs; {recipe}) and cached in "
            f"{location.uri_of('teachers')}")


def _resources(spec: StudySpec, address: str | None) -> str:
    """Resources per trial, and how many trials this machine runs at once (an error where
    none fits: a local Ray never grows). On a cluster, Ray decides when it joins."""
    from harness.study.cluster import cluster_address

    r = spec.resources
    each = f"{'resources':<10}{r.cpu:g} CPU, {r.gpu:g} GPU, {r.precision} per trial"
    if cluster_address(address):
        return f"{each}; trials at once: as the cluster's resources fit, decided when the sweep joins it"
    cpus = os.cpu_count() or 1
    gpus = _gpu_count() if r.gpu > 0 else 0
    if r.cpu > cpus or r.gpu > gpus:
        raise HarnessError(f"resources: a trial needs {r.cpu:g} CPU and {r.gpu:g} GPU, and this machine has "
                           f"{cpus} CPU and {gpus} GPU; lower resources.cpu or resources.gpu, or give --address")
    return f"{each}; this machine ({cpus} CPU, {gpus} GPU) runs {_at_once(spec, address)} at once"


def _targets(spec: StudySpec, address: str | None) -> list[str]:
    """Each deployment target, and on this machine whether it can be measured here (a local
    Ray has no custom resources or labels; a cluster's nodes are checked when the sweep joins)."""
    from harness.study.cluster import cluster_address
    from harness.study.targets import describe

    lines = []
    for name, target in spec.deploy.targets.items():
        if not cluster_address(address):
            cpus = os.cpu_count() or 1
            if target.placed:
                raise HarnessError(f"deploy.targets.{name}.node: a local Ray has no node with custom resources "
                                   f"or labels; give --address of a cluster that has one, or drop node:")
            if target.threads > cpus:
                raise HarnessError(f"deploy.targets.{name}.threads: {target.threads} threads, and this machine "
                                   f"has {cpus} CPU; lower it, or give --address")
        searched = any(o.target == name for o in spec.search.objectives)
        lines.append(f"{'target':<10}{describe(name, target)}: measured after the search, each distinct network "
                     f"once per batch size" + ("; also at each trial's end (an objective)" if searched else ""))
    if not spec.deploy.targets:
        lines.append(f"{'target':<10}default only (torch eager, batch 1 and {spec.measure.batch_size}, the "
                     f"trial's threads); deploy.targets adds runtimes (docs/protocol.md)")
    return lines


def _at_once(spec: StudySpec, address: str | None) -> int | None:
    """Trials this machine runs at once (None on a cluster: Ray decides)."""
    from harness.study.cluster import cluster_address

    if cluster_address(address):
        return None
    r = spec.resources
    cpus, gpus = os.cpu_count() or 1, (_gpu_count() if r.gpu > 0 else 0)
    fit = max(1, int(cpus // r.cpu) if r.gpu == 0 else min(int(cpus // r.cpu), int(gpus // r.gpu)))
    return min(fit, spec.search.max_concurrent) if spec.search.max_concurrent else fit


def _size(spec: StudySpec, method: type, data: DatasetSplits | None, at_once: int | None) -> str:
    """The study's size in trial-epochs, and the time its training would take at most, from
    an epoch of the student timed here (forward and backward, the teacher's forward pass
    with it), as a trial on this machine's CPU would run it."""
    trials = spec.search.num_samples * len(spec.seeds)
    size = f"{'size':<10}{trials} trials x {spec.budget.epochs} epochs = at most {trials * spec.budget.epochs:,} " \
           f"trial-epochs (ASHA stops most trials sooner)"
    if data is None:
        return f"{size}; an epoch is timed here once the data is there"
    if spec.resources.gpu > 0:
        return f"{size}; its trials run on GPUs, which this estimate does not time"
    epoch_s, how = _epoch_seconds(spec, method, data)
    total = trials * spec.budget.epochs * epoch_s
    parallel = f", {_duration(total / at_once)} with {at_once} at once" if at_once and at_once > 1 else ""
    return (f"{size}; an epoch here: {epoch_s:.2f} s ({how}), so at most {_duration(total)} of training"
            f"{parallel}; the teacher's training and the method's own extra work are not counted")


def _epoch_seconds(spec: StudySpec, method: type, data: DatasetSplits) -> tuple[float, str]:
    import math
    import time

    import torch

    from harness.networks.build import build_network
    from harness.study.trial import set_threads

    fixed = dict(spec.fixed_params())
    searched = spec.searched_params().get("batch_size")
    if searched is not None:  # the smallest batch it may draw: the most steps, the slowest epoch
        fixed["batch_size"] = min(searched.args)
    params = method.make_params(fixed)
    batch = min(params.batch_size, 4096)
    steps = getattr(params, "iterations_per_report", None) or math.ceil(len(data.train) / batch)
    student = build_network(spec.student, data.num_classes, data.input_shape, "student")
    teacher = (build_network(spec.teacher, data.num_classes, data.input_shape, "teacher").eval()
               if spec.teacher is not None and method.needs_teacher else None)
    optimizer = torch.optim.SGD(student.parameters(), lr=1e-3)
    x = torch.randn(batch, *data.input_shape)
    y = torch.randint(0, data.num_classes, (batch,))
    threads = torch.get_num_threads()
    set_threads(spec.resources.cpu)
    try:
        timed = []
        for _ in range(3):  # the first warms up
            start = time.perf_counter()
            if teacher is not None:
                with torch.no_grad():
                    teacher(x)
            loss = torch.nn.functional.cross_entropy(student(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            timed.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    step_s = min(timed[1:])
    return step_s * steps, f"{steps} steps of batch {batch}, timed on {max(1, int(spec.resources.cpu))} thread(s)"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()
