"""A study from spec to Parquet: data and teacher once, then one Ray Tune run per seed.

Each seed is an independent search (its own Optuna sampler seed and torch
seed) over ``num_samples`` trials, so a method's best result can be compared
across seeds with its spread. The data set and the teacher's weights are put
in Ray's object store once and shared by every trial, so worker nodes never
read the driver's disk.

Faults: every report is a checkpoint (weights-only state, see
``methods.checkpoint``); a trial whose worker dies is restarted from it up to
``resources.retries`` times. A study whose driver stopped goes on with
``resume=True``: finished seeds are kept, the interrupted seed's Tune run is
restored with its search state, and the Parquet files continue.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs
import ray
import torch
from ray import tune
from ray.tune.logger import JsonLoggerCallback

import methods
from harness.data.datasets import DatasetSplits, load_dataset, load_substitute, split_indices
from harness.errors import HarnessError
from harness.networks.build import check_networks, trained_network
from harness.spec.load import check_sweep, load_spec
from harness.spec.schema import StudySpec
from harness.store import journal
from harness.store.journal import JOURNAL
from harness.store.location import NOT_MIRRORED, Location, open_location
from harness.store.lock import StudyLock, held_by, lock_holder, probe_storage, this_process, writing
from harness.store.tables import PARTS
from harness.study.checkpoints import FinishedTrialCheckpoints, prune_checkpoints
from harness.study.cluster import check_trial_fits, connect
from harness.study.constraints import DrawGate, check_reachable, how_judged, limits_text
from harness.study.first_report import check_first_report
from harness.study.lineage import lineage, lineage_columns, load_parent
from harness.study.old_paths import old_module_paths
from harness.study.progress import choose_mode, make_progress
from harness.study.quantized import int8_images, reads_every_checkpoint, trial_quantization
from harness.study.remeasure import StudyStudents, finished_students, measure_again
from harness.study.results import (
    FINISHED,
    INFEASIBLE,
    LiveCallback,
    ResultsWriter,
    StopOnWriteFailure,
    trial_key,
    utc_now,
    versions,
)
from harness.study.search import asha_rungs, describe_searcher, make_scheduler, make_searcher
from harness.study.targets import check_placement
from harness.study.teachers import Teacher, obtain_teacher, train_teacher
from harness.study.tracking import tracking_callbacks
from harness.study.trial import STATE_FILE, run_trial
from methods.study import StudyError


def tune_trial(config: dict[str, Any], *, spec: StudySpec, seed: int, shared: dict[str, Any],
               study: Location) -> None:
    """The Ray Tune function trainable: a trial that checkpoints at every report."""
    data = ray.get(shared["data"])
    teacher_state = ray.get(shared["teacher"]) if shared["teacher"] is not None else None
    student_state = ray.get(shared["student"]) if shared.get("student") is not None else None
    # Same id as the trial's row in trials.parquet (ResultsWriter._id).
    row_id = trial_key(seed, tune.get_context().get_trial_id())
    samples = f"samples/{row_id}"
    # On object storage, a grid is drawn in a folder of this node's and uploaded from there.
    samples_dir = Path(tempfile.mkdtemp(prefix="harness-samples-")) if study.remote else study.local / samples
    node_id = ray.get_runtime_context().get_node_id()
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # a line per checkpoint

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        if study.remote and metrics.get("samples"):
            grid = Path(metrics["samples"])
            study.write_bytes(grid.read_bytes(), samples, grid.name)
            grid.unlink()
            metrics = {**metrics, "samples": study.uri_of(samples, grid.name)}
        with tempfile.TemporaryDirectory() as tmp:
            # The row it belongs to: an export refuses a row that names another trial's checkpoint.
            torch.save({**state, "trial_id": row_id}, Path(tmp) / STATE_FILE)
            tune.report({**metrics, "node_id": node_id}, checkpoint=tune.Checkpoint.from_directory(tmp))

    try:
        run_trial(config, spec, seed, data, teacher_state, report=report, samples_dir=samples_dir,
                  checkpoints=True, resume=last_state(tune.get_checkpoint()), student_state=student_state)
    finally:
        if study.remote:
            shutil.rmtree(samples_dir, ignore_errors=True)


def last_state(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    """The state saved with the trial's last report, loaded without running any code."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as path:
        return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=True)


def run_sweep(spec: StudySpec, storage: str | None = None, address: str | None = None,
              resume: bool = False, recorded_data: str | None = None, progress: str = "events") -> Path:
    """Run every seed of the study (or what an interrupted run left); return its results folder.

    ``recorded_data``: the data fingerprint of the study this one repeats (its
    study.json's); different splits are said, since the results will differ.
    ``progress``: how trials are shown (harness.study.progress: events, bar, quiet, auto).
    The storage is checked writable and the study folder locked before any work.
    """
    check_sweep(spec)
    root = open_location(storage or spec.storage)
    probe_storage(root)  # a missing bucket or refused credentials: one line, before any work
    study = root.child(spec.study)
    if study.remote:  # the local mirror starts as the storage holds the study
        if (holder := lock_holder(study)) is not None:  # and is not another driver's to clear
            raise HarnessError(held_by(study, holder))
        shutil.rmtree(study.local, ignore_errors=True)
        if resume:
            study.pull(skip=tuple(n for n in NOT_MIRRORED if n != JOURNAL))  # the Optuna journal too
    if resume:
        check_resumable(spec, study)
    with StudyLock(study, "sweep --resume" if resume else "sweep"):
        return _sweep(spec, root, study, address, resume, recorded_data, progress)


def _sweep(spec: StudySpec, root: Location, study: Location, address: str | None, resume: bool,
           recorded_data: str | None, progress: str) -> Path:
    folder = study.local
    if resume:
        say(f"resuming '{spec.study}' from {study.uri}")
    data = load_dataset(spec.dataset)
    say(f"study '{spec.study}': {spec.method} on {data.name} "
        f"(train {len(data.train)}, val {len(data.val)}, test {len(data.test)}), "
        f"student {spec.student.model}, {spec.search.num_samples} trials x {len(spec.seeds)} seed(s), "
        f"budget {spec.budget.epochs} epochs, searcher {describe_searcher(spec)} + ASHA "
        f"(rungs at {', '.join(map(str, asha_rungs(spec)))} epochs)")
    for note in check_networks(spec, data.num_classes, data.input_shape):  # before Ray and the teacher
        say(note)
    parent = load_parent(spec.student, "student", data) if spec.student.from_study else None
    if parent is not None:  # before Ray and the teacher: a parent on other splits is one line
        say(f"student: {parent.describe()}")
    chain = lineage(spec, parent)
    if recorded_data and data.fingerprint != recorded_data:
        say(f"note: these {data.name} splits ({data.fingerprint}) are not the recorded study's ({recorded_data}): "
            f"other samples, so other results")
    shipped = trial_splits(spec, data)  # before Ray starts: a missing substitute set fails fast
    if ":" in spec.method:  # a method from outside the project (ours are tested): its first report, here
        try:
            check_first_report(spec, shipped)
        except StudyError as error:
            raise HarnessError(str(error)) from None
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's tables
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = USER_SNAPSHOT_S or f"{snapshot_period(spec):g}"
    # Our Parquet files replace Tune's per-result CSV and TensorBoard logs, which cost the
    # driver CPU time at every report (measured: benchmarks/trial_overhead.py).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Under a redrawn bar, workers' own lines (the teacher's epochs) would break it.
    connect(address, spec.code, worker_lines=choose_mode(progress) != "bar")
    if note := check_trial_fits(spec.resources.cpu, spec.resources.gpu, address):
        say(note)
    check_placement(spec)
    teacher = prepare_teacher(spec, data, root)
    gate = draw_gate(spec, data, teacher, parent)
    with writing(folder):
        if not resume and (archived := archive_previous(study)):  # only once the study can start
            say(f"previous results of '{spec.study}' moved to {archived} (--resume continues a run instead)")
        write_study_file(folder, spec, data, teacher, started=None if resume else utc_now(), lineage=chain)
        (folder / "splits.json").write_text(split_indices(data))
        study.push(skip=NOT_MIRRORED)
    shared = {"data": ray.put(shipped),
              "teacher": ray.put(teacher.state) if teacher else None,
              "student": ray.put(parent.state) if parent else None}
    writer = ResultsWriter(spec, folder, teacher.metrics if teacher else None, location=study,
                           lineage=lineage_columns(chain))
    if resume:
        writer.load_previous()
    printer = make_progress(progress, writer)
    stopper = StopOnWriteFailure(writer)
    checkpoints = FinishedTrialCheckpoints(spec.study, study.fs)
    callbacks = [writer, printer, checkpoints]
    searches = journal.open_storage(spec.search.storage, folder) if spec.searched_params() else None
    if searches is not None and study.remote and spec.search.storage is None:
        callbacks.append(JournalUpload(spec.study, study))
    for seed in spec.seeds:
        writer.start_seed(seed)
        run_path = study.path("tune", f"seed{seed}")  # Tune's run folder, local or in the bucket
        restoring = resume and tune.Tuner.can_restore(run_path, storage_filesystem=study.fs)
        if restoring and seed_finished(writer, spec, seed):
            say(f"seed {seed}: finished earlier, kept")
            continue
        say(f"seed {seed}: {'resuming the search' if restoring else 'searching'}")
        if searches is not None:
            name = journal.study_name(spec.study, seed)
            journal.register(name, searches)  # what a restored searcher reopens
            if not restoring and journal.forget_earlier(searches, name):
                say(f"seed {seed}: Optuna study '{name}' of an earlier run removed from {spec.search.storage}")
        printer.start_seed(seed, done=sum(n for status, n in writer.counts(seed).items() if status in FINISHED))
        trainable = tune.with_resources(
            tune.with_parameters(tune_trial, spec=spec, seed=seed, shared=shared, study=study),
            {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        # A run folder written before harness/ had subpackages names its pickled objects' old modules.
        with old_module_paths() if restoring else contextlib.nullcontext():
            if restoring:
                # The searcher's state, the trials and their checkpoints come back from the run folder.
                tuner = tune.Tuner.restore(run_path, trainable=trainable, resume_unfinished=True,
                                           storage_filesystem=study.fs)
            else:
                tuner = new_tuner(spec, seed, trainable, run_path, [*callbacks, *tracking_callbacks(spec, seed)],
                                  stopper=stopper, val_labels=data.val.y, fs=study.fs, searches=searches,
                                  gate=gate, record=writer)
            try:
                results = tuner.fit()
            finally:
                printer.end_seed()
        writer.compact()
        writer.check_written()
        prune_checkpoints(study.fs, run_path)
        study.push(JOURNAL)
        if resume and (lost := writer.mark_lost(seed)):
            say(f"seed {seed}: {lost} trial(s) of the interrupted run could not be resumed (status 'lost')")
        if results.num_terminated + results.num_errors < spec.search.num_samples and seed not in writer.gave_up:
            # Tune ends a run on Ctrl-C and returns normally: stop here, not at the next seed.
            writer.mark_unfinished("interrupted")
            raise KeyboardInterrupt
    remeasure_latency(spec, study, data, teacher, writer)
    writer.compact()
    writer.check_written()
    with writing(folder):
        write_study_file(folder, spec, data, teacher, started=None, ended=utc_now(), lineage=chain)
        study.push(skip=NOT_MIRRORED)
    counts = writer.counts()
    say(f"done: {sum(counts.values())} trials ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
        f"{selected_line(writer.trials.values())}")
    say(f"results: {study.uri}/trials.parquet and epochs.parquet; to see them: harness report {study.uri}")
    return folder


def selected_line(rows: Any) -> str:
    """What the study found: per seed, the completed trial best on validation (the one the
    report and the leaderboard select, reports.summary.selected_trials) and its test accuracy."""
    from reports.summary import selected_trials  # scipy with it: once, at the study's end

    table = pd.DataFrame(list(rows)).reindex(columns=["trial_id", "seed", "status", "val_acc", "test_acc",
                                                      "feasible"])
    chosen = selected_trials(table.assign(study=""))
    if chosen.empty:
        over = int((table["status"].eq("completed") & table["feasible"].eq(False)).sum())
        if over:  # measured again at the study's end, a network drawn near a limit may land over it
            return f"{over} trial(s) completed their budget, none within the limits, so none is selected"
        return "no trial completed its budget, so none is selected"
    if len(chosen) <= 3:
        return "selected (best on validation): " + "; ".join(
            f"{r.trial_id} val_acc {r.val_acc:.4f}, test_acc {r.test_acc:.4f}" for r in chosen.itertuples())
    return (f"selected (best on validation) per seed: test_acc {chosen['test_acc'].mean():.4f} "
            f"± {chosen['test_acc'].std(ddof=1):.4f} over {len(chosen)} seeds")


# Set by the user before the harness started: kept as it is.
USER_SNAPSHOT_S = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S")
SNAPSHOT_S_PER_TRIAL = 0.0025


def snapshot_period(spec: StudySpec) -> float:
    """How often Tune saves the experiment's state (what --resume restores): every second for
    a study of up to 400 trials per seed, then 2.5 ms per trial (10 s at 4,000).

    A trial started after the last save cannot be resumed (it is kept as 'lost'), so the
    period is short; but each save writes every trial of the seed so far and the searcher's
    history, which costs this driver about 0.1 ms per trial (benchmarks/scale.py): every
    second at 4,000 trials, that was a quarter of the driver's time. This period keeps the
    saves near 5% of it. Tune's own default ("auto": at least 10 s, 19 times the last save's
    duration) lets a killed driver lose the trials of the last 10 s in any study."""
    return max(1.0, SNAPSHOT_S_PER_TRIAL * spec.search.num_samples)


def new_tuner(spec: StudySpec, seed: int, trainable: Any, run_path: str | Path, callbacks: list,
              stopper: tune.Stopper | None = None, val_labels: Any = None,
              fs: pyarrow.fs.FileSystem | None = None, searches: Any = None,
              gate: DrawGate | None = None, record: Any = None) -> tune.Tuner:
    """One seed's search: Optuna + ASHA, a retry budget per trial, results to ``run_path``
    (in ``fs``: a local folder or a bucket's prefix, written by every node)."""
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(spec, seed, searches, gate, record),
            scheduler=make_scheduler(spec, val_labels),
            num_samples=spec.search.num_samples, reuse_actors=True,
            max_concurrent_trials=spec.search.max_concurrent or trials_that_fit(spec),
        ),
        run_config=tune.RunConfig(
            name=posixpath.basename(run_path), storage_path=posixpath.dirname(str(run_path)),
            storage_filesystem=fs, verbose=0,
            callbacks=[*callbacks, JsonLoggerCallback()],  # result.json: what Tune's result grid reads
            failure_config=tune.FailureConfig(max_failures=spec.resources.retries), stop=stopper,
            # On object storage, each snapshot goes up as it is taken (Tune's default: every 5 minutes),
            # so that a driver killed at any time resumes from the bucket with its last snapshot.
            sync_config=tune.SyncConfig(sync_period=snapshot_period(spec)),
            # Every report's checkpoint is kept while its trial runs (harness.study.checkpoints).
        ),
    )


class JournalUpload(LiveCallback):
    """On object storage, the Optuna journal (kept in the local mirror) goes up with each of
    Tune's snapshots, so that a searcher restored from one finds every trial it names; not
    at every write: the journal grows with the study."""

    def __init__(self, study_name: str, study: Location) -> None:
        super().__init__(f"{study_name}#journal")
        self.study = study

    def get_state(self) -> None:
        try:
            self.study.push(JOURNAL)
        except HarnessError as error:
            say(f"{error} (the Optuna journal; the results are written apart)")
        return None


def remeasure_latency(spec: StudySpec, study: Location, data: DatasetSplits, teacher: Teacher | None,
                      writer: ResultsWriter) -> None:
    """Measure every seed's completed trials again on a machine the searches no longer load, and
    on each deployment target; if that fails, the figures taken during the trials stand."""
    default = bool(spec.measure.rounds)
    if default and spec.resources.compile:
        say("latency not measured again (resources.compile: every student would compile again); "
            "the figures taken during the trials stand")
        default = False
    if not default and not spec.deploy.targets:
        return
    try:
        # One checkpoint read per network its trials recorded (the rest share its figure).
        networks = None if reads_every_checkpoint(spec) else {k: r.get("network") for k, r in writer.trials.items()}
        found, same_as = finished_students(spec, study, networks)
        students = StudyStudents(spec, data.num_classes, data.input_shape, found,
                                 teacher.state if teacher else None, same_as, data.mean, data.std,
                                 int8_images(spec, data), trial_quantization(spec, writer.trials.values()))
        [lines] = measure_again([(students, writer)], default=default)
    except Exception as error:  # a step after the search must never cost its results
        cause = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        say(f"measuring latency again failed ({cause}); the figures taken during the trials stand")
        return
    for line in lines:
        say(line)


def check_resumable(spec: StudySpec, study: Location) -> None:
    """``--resume`` continues the same study, never a different one under the same name."""
    path = study.local / "study.json"
    where = posixpath.dirname(study.uri)
    if not path.exists():
        raise HarnessError(f"--resume: no study '{spec.study}' to resume in {where}")
    saved = json.loads(path.read_text())
    if saved.get("ended_at"):
        raise HarnessError(f"--resume: study '{spec.study}' in {where} finished at {saved['ended_at']}; "
                           f"run it without --resume to start again")
    now = json.loads(json.dumps(spec.to_dict(), default=str))
    try:  # read as this version reads it: fields added since (their defaults) are no change
        before = json.loads(json.dumps(load_spec(str(path)).to_dict(), default=str))
    except HarnessError:
        before = saved["spec"]
    changed = sorted(k for k in {*now, *before} if now.get(k) != before.get(k))
    if changed:
        raise HarnessError(f"--resume: the spec differs from the interrupted study's in {', '.join(changed)}; "
                           f"resume with the same spec, or run without --resume")


def seed_finished(writer: ResultsWriter, spec: StudySpec, seed: int) -> bool:
    rows = [r for r in writer.seed_rows(seed) if r["status"] != INFEASIBLE]  # draws that never ran
    done = [r for r in rows if r["status"] in FINISHED]
    return len(done) >= spec.search.num_samples and len(done) == len(rows)


def draw_gate(spec: StudySpec, data: DatasetSplits, teacher: Teacher | None, parent: Any) -> DrawGate | None:
    """What checks a drawn trial against ``search.constraints`` before it trains (none without limits);
    a limit no network of the study can meet is one line here, before any trial."""
    if not spec.search.constraints:
        return None
    network = (trained_network(spec.teacher, data.num_classes, data.input_shape, "teacher", teacher.state)
               if teacher is not None else None)
    gate = DrawGate(spec, data.num_classes, data.input_shape, data.mean, data.std, network,
                    parent.state if parent is not None else None)
    check_reachable(gate, spec)
    say(f"limits: {limits_text(spec)} ({how_judged(spec)})")
    return gate


def trial_splits(spec: StudySpec, data: DatasetSplits) -> DatasetSplits:
    """What the study's trials receive: no training images for a data-free method
    (its teacher was built from them above, as in the papers), plus the substitute
    data set's images when the spec names one."""
    if methods.METHODS.get(spec.method).data_free:
        data = data.without_training_images()
        say(f"'{spec.method}' is data-free: its trials receive no training images "
            f"(validation and test are for the harness's evaluation only)")
    if spec.dataset.substitute:
        substitute = load_substitute(spec.dataset.substitute, spec.dataset.root, spec.dataset.download,
                                     data.input_shape)
        say(f"substitute data: {len(substitute)} {spec.dataset.substitute} training images "
            f"resized to {data.input_shape}")
        data = replace(data, substitute=substitute)
    return data


def trials_that_fit(spec: StudySpec) -> int:
    """How many trials the cluster's CPUs and GPUs hold at once.

    Tune lets a custom searcher have a single pending trial unless a
    concurrency limit is set, which would run the study one trial at a time.
    """
    total = ray.cluster_resources()
    fit = int(total.get("CPU", 1) // spec.resources.cpu)
    if spec.resources.gpu > 0:
        fit = min(fit, int(total.get("GPU", 0) // spec.resources.gpu))
    return max(1, fit)


def prepare_teacher(spec: StudySpec, data: DatasetSplits, root: Location) -> Teacher | None:
    if spec.teacher is None:
        return None
    started = time.monotonic()
    remote = ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)(train_teacher)

    def train_on_cluster(study_spec: StudySpec, splits: DatasetSplits) -> Teacher:
        say(f"training teacher {spec.teacher.model} (cached for later studies)")
        try:
            return ray.get(remote.remote(study_spec, splits))
        except ray.exceptions.RayError as error:  # the training raised, or its worker or node died
            cause = getattr(error, "cause", None) or error
            line = (str(cause).strip().splitlines() or [""])[-1]
            raise HarnessError(f"teacher {spec.teacher.model}: its training failed ({type(cause).__name__}: "
                               f"{line}); nothing was cached and no trial ran") from None

    teacher = obtain_teacher(spec, data, root, train=train_on_cluster)
    m = teacher.metrics
    say(f"teacher {spec.teacher.model} ({m['source']}): val_acc {m['val_acc']:.4f}, "
        f"test_acc {m['test_acc']:.4f} [{time.monotonic() - started:.0f}s]")
    return teacher


def archive_previous(study: Location) -> str | None:
    """Move an earlier run's results aside rather than mixing or deleting them."""
    if not (study.exists("trials.parquet") or study.exists(PARTS)):
        return None
    target = posixpath.join("previous", datetime.now().strftime("%Y%m%d-%H%M%S"))
    for name in ("trials.parquet", "epochs.parquet", PARTS, "study.json", "splits.json", "tune", "samples",
                 "optuna.journal"):
        if study.exists(name):
            study.move(name, posixpath.join(target, name))
    return study.uri_of(target)


def write_study_file(folder: Path, spec: StudySpec, data: DatasetSplits, teacher: Teacher | None,
                     started: str | None, ended: str | None = None, lineage: dict[str, Any] | None = None) -> None:
    """``study.json``: the protocol behind the results (spec, splits, teacher, versions), and
    the driver writing them, so that a report can tell a running study from an interrupted one."""
    path = folder / "study.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "study": spec.study, "spec": spec.to_dict(),
        "dataset": {"name": data.name, "fingerprint": data.fingerprint, "train": len(data.train),
                    "val": len(data.val), "test": len(data.test), "augment": data.augment},
        "teacher": teacher.metrics if teacher else None,
        "lineage": lineage,  # a chain's parents and methods (harness.study.lineage)
        "versions": json.loads(versions()),
        "optuna": {"storage": spec.search.storage or journal.JOURNAL,
                   "studies": [journal.study_name(spec.study, seed) for seed in spec.seeds]}
        if spec.searched_params() else None,
        "started_at": started or previous.get("started_at"), "ended_at": ended,
        "driver": this_process(),
    }
    path.write_text(json.dumps(info, indent=2, default=str))


def say(text: str) -> None:
    print(text, flush=True)

