"""Parquet results, written while the study runs and complete when it ends.

``trials.parquet`` has one row per trial, ``epochs.parquet`` one row per report.
The schema is documented in docs/results.md; while a study runs, the rows written
since its last compaction are part files (harness.store.tables), so that each write costs
what changed, and the tally the progress shows is kept as events arrive: the driver's
work per event does not grow with the study.
"""
from __future__ import annotations

import json
import math
import platform
import posixpath
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from ray.tune import Callback
from ray.tune.stopper import NoopStopper, Stopper

from harness.errors import HarnessError
from harness.spec.schema import EPOCH_METRICS, FINAL_METRICS, TEST_METRICS, StudySpec
from harness.store.location import NOT_MIRRORED, Location, StorageError, Uploader
from harness.store.tables import PartTable, deletion, read_table
from harness.study.constraints import EXCESS, STATIC, Verdict, judge_row, limits_text, study_limits
from harness.study.search import stopped_early

FINAL_COLUMNS = ("test_acc", "test_loss", *FINAL_METRICS, "network", "latency_batch", "device", "measure_s")
# A quantizing method's trial (methods.ptq): its int8 network's figures are its own, these beside them.
QUANTIZED_COLUMNS = ("precision", "quantized_for", "fp32_val_acc", "fp32_test_acc", "fp32_size_bytes",
                     "accuracy_drop", "drop_flagged", "calibration_images")
SAME_RUN_TEACHER = ("teacher_latency_b1_ms", "teacher_latency_ms", "teacher_network")  # measured beside the student
# Replaced by the measurement after the search; the in-trial figures stay as trial_* (record_remeasurement).
REMEASURED = ("latency_b1_ms", "latency_ms", "teacher_latency_b1_ms", "teacher_latency_ms", "device")
TEACHER_COLUMNS = ("val_acc", "test_acc", "params", "size_bytes", "macs")
EPOCH_COLUMNS = ("epoch", *EPOCH_METRICS, "params", "size_bytes", "macs", "epoch_s", "train_s", "node_id")
# latencies.parquet: a deployment target's figure of one trial's network at one batch size (docs/results.md).
LATENCY_COLUMNS = ("study", "trial_id", "target", "runtime", "batch", "threads", "node_id", "node", "network",
                   "latency_ms", "latency_low_ms", "latency_high_ms", "latency_spread", "latency_noisy",
                   "latency_rounds", "latency_window", "teacher_network", "teacher_latency_ms",
                   "teacher_latency_low_ms", "teacher_latency_high_ms", "missing")
# Columns per target or limit: a target's latency, its node, the teacher's beside it, a limit's excess.
TRIAL_PREFIXES = ("latency_ms@", "latency_node@", "teacher_latency_ms@", EXCESS)
UNFINISHED = ("pending", "running", "interrupted")
INFEASIBLE = "infeasible"  # a draw over search.constraints before training: never ran (harness.study.constraints)
FINISHED = ("completed", "stopped", "error")
# Reported by some methods only: data-free methods count generator iterations and save image grids;
# DAFL's generator gives its images' spread (0 once it has collapsed to one image).
OPTIONAL_EPOCH_COLUMNS = ("iterations", "samples", "image_spread")


def method_columns(result: dict[str, Any]) -> dict[str, Any]:
    """The optional columns in a report, and every loss term a method reports (``*_loss``)."""
    fixed = (*EPOCH_COLUMNS, *TEST_METRICS)
    return {k: v for k, v in result.items()
            if k in OPTIONAL_EPOCH_COLUMNS or (k.endswith("_loss") and k not in fixed)}


def trial_key(seed: int, tune_id: str) -> str:
    """A trial's row id: Tune's trial ids are unique within one seed's run only."""
    return f"s{seed}-{tune_id}"


def versions() -> str:
    import optuna
    import ray
    import torch

    return json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                       "ray": ray.__version__, "optuna": optuna.__version__})


class Live:
    """A driver-side object that Tune's saved experiment refers to by name only.

    Tune pickles its callbacks and stopper into the experiment it saves; a study
    resumed in a new driver must report to that driver's objects, not to unpickled
    copies of the old ones. Pickling stores the key, unpickling finds the live
    object (or, where none is, an instance of ``idle``, which does nothing).
    """

    live: ClassVar[dict[str, Any]] = {}
    idle: ClassVar[type]

    def __init__(self, key: str) -> None:
        self.key = key
        Live.live[key] = self

    def __reduce__(self):
        return _live_object, (self.key, self.idle)


def _live_object(key: str, idle: type) -> Any:
    return Live.live.get(key) or idle()


class LiveCallback(Live, Callback):
    idle = Callback


class StopOnWriteFailure(Live, Stopper):
    """Stops every trial once the results can no longer be written: training on would be lost."""

    idle = NoopStopper

    def __init__(self, writer: "ResultsWriter") -> None:
        super().__init__(f"{writer.spec.study}#stop")
        self.writer = writer

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.writer.failure is not None

    def stop_all(self) -> bool:
        return self.writer.failure is not None


class ResultsWriter(LiveCallback):
    """Collects Tune events for one study (all its seeds) into two Parquet files.

    Every trial has exactly one row: Tune's trial id is the key, a retried trial
    (its worker died) keeps its row and counts ``retries``, a trial carried over by
    a resumed study counts ``resumes``, and report rows are unique per trial and epoch.
    """

    FRESH_S = 1.0  # reports reach the files at least this often, whatever Tune's snapshot period

    def __init__(self, spec: StudySpec, folder: Path, teacher: dict[str, Any] | None,
                 location: Location | None = None, lineage: dict[str, Any] | None = None) -> None:
        super().__init__(f"{spec.study}#results")
        self.spec = spec
        self.folder = folder  # written here; on object storage, the study's local mirror...
        self.location = location if location is not None and location.remote else None  # ...pushed here
        self._uploader = Uploader(self.location, NOT_MIRRORED) if self.location is not None else None
        self.teacher = teacher or {}
        self.lineage = lineage or {}  # a chained study's columns (harness.study.lineage.lineage_columns)
        self.seed = spec.seeds[0]
        self._limits = limits_text(spec)  # search.constraints, in words
        self.gave_up: set[int] = set()  # seeds whose search ended without a draw within the limits
        self.trials: dict[str, dict[str, Any]] = {}
        self.tables = {"trials": PartTable(folder, "trials"),
                       "epochs": PartTable(folder, "epochs", ["study", "seed", "trial_id", *EPOCH_COLUMNS])}
        self._changed: dict[str, None] = {}  # trials whose rows changed since the last flush, in order
        self._reports: list[dict[str, Any]] = []  # reports since the last flush
        self._last_epoch: dict[str, int] = {}  # by unfinished trial: the latest epoch it reported
        self._counts: Counter[tuple[int, str]] = Counter()  # trials by seed and status
        objective = spec.search.objectives[0]
        self.metric, self.mode = objective.metric, objective.mode
        self._best: dict[int, dict[str, Any]] = {}  # by seed: the completed trial best on the first objective
        self._versions = versions()
        self._carried: set[str] = set()  # unfinished trials of an interrupted run, until Tune restarts them
        self._earlier: set[str] = set()  # every trial of an interrupted run, until Tune restarts it
        self.failure: str | None = None  # why the files could not be written, once they could not
        self._unwritten = False  # reports or rows not yet flushed
        self._flushed = time.monotonic()

    def start_seed(self, seed: int) -> None:
        self.seed = seed

    def load_previous(self) -> None:
        """Continue the files of an interrupted run of this study (``--resume``)."""
        trials = _rows(read_table(self.folder, "trials"))
        self.trials = {row["trial_id"]: row for row in trials}
        self._carried = {row["trial_id"] for row in trials if row["status"] in UNFINISHED}
        self._earlier = set(self.trials)
        self._counts = Counter((row["seed"], row["status"]) for row in trials)
        for row in trials:
            self._consider_best(row)
        reports = read_table(self.folder, "epochs")
        if not reports.empty:  # every trial's: one the files say finished may be continued from an
            # older checkpoint too (the driver died after its end, before Tune's next snapshot)
            self._last_epoch = {k: int(v) for k, v in reports.groupby("trial_id")["epoch"].max().items()}

    def seed_rows(self, seed: int) -> list[dict[str, Any]]:
        return [row for row in self.trials.values() if row["seed"] == seed]

    def mark_lost(self, seed: int) -> int:
        """Trials of an interrupted run that its saved experiment state never knew of
        (started after the driver's last save): Tune cannot resume them. Labelled, kept."""
        lost = [r for r in self.seed_rows(seed) if r["trial_id"] in self._carried]
        for row in lost:
            self._set_status(row, "lost")
            row["error"] = ("started after the interrupted driver last saved the experiment; "
                            "the resumed search ran another trial in its place")
        self._carried -= {row["trial_id"] for row in lost}
        self.flush()
        return len(lost)

    # --- Tune callback hooks ---------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        row = self._row(trial)
        self._carried.discard(row["trial_id"])
        if row["trial_id"] in self._earlier:  # started by an earlier driver, continued by this one
            self._earlier.discard(row["trial_id"])
            row["resumes"] = (row.get("resumes") or 0) + 1
        self._set_status(row, "running")
        row["started_at"] = row.get("started_at") or utc_now()
        self.flush()  # every trial that started has a row, should the driver die before the next snapshot

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """The trial's worker died; Tune restarts it from its last checkpoint."""
        row = self._row(trial)
        row.update(retries=(row.get("retries") or 0) + 1, error=f"retried: {_error_line(trial)}")
        self.flush()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        key = self._id(trial)
        if result.get("epoch") is not None:
            self._last_epoch[key] = max(self._last_epoch.get(key, 0), int(result["epoch"]))
        self._reports.append({
            "study": self.spec.study, "seed": self.seed, "trial_id": key,
            **{k: result.get(k) for k in EPOCH_COLUMNS},
            **method_columns(result),
            "training_iteration": result.get("training_iteration"),
            "time_total_s": result.get("time_total_s"), "timestamp": result.get("timestamp"),
        })
        self._row(trial).update(epochs_done=result.get("training_iteration"),
                                **{k: result.get(k) for k in EPOCH_METRICS},
                                **{k: result[k] for k in OPTIONAL_EPOCH_COLUMNS if k in result})
        self._unwritten = True  # written with Tune's next experiment snapshot (get_state), or
        if time.monotonic() - self._flushed >= self.FRESH_S:  # sooner, for readers of a running study
            self.flush()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        status = "stopped" if stopped_early(result, self.spec.budget.epochs) else "completed"
        self._finish(trial, status, result)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "error", trial.last_result or {}, error=_error_line(trial))

    def on_experiment_end(self, trials, **info) -> None:
        self.flush()

    def get_state(self) -> None:
        """Tune calls this whenever it snapshots the experiment (what ``--resume`` restores,
        at most every TUNE_GLOBAL_CHECKPOINT_S): the files are written first, so a resumed
        run finds every report its checkpoints cover. Reports are written at most once a
        second besides, never one write per report. Nothing to store in the snapshot itself."""
        if self._unwritten:
            self.flush()
        return None

    # --- rows ------------------------------------------------------------------------
    def _id(self, trial) -> str:
        return trial_key(self.seed, trial.trial_id)

    def _row(self, trial) -> dict[str, Any]:
        """The trial's row, to be changed: it goes into the next flush."""
        return self._keyed_row(self._id(trial), trial.config)

    def _keyed_row(self, key: str, config: dict[str, Any]) -> dict[str, Any]:
        self._changed[key] = None
        if key not in self.trials:
            self._counts[self.seed, "pending"] += 1
            spec = self.spec
            params = {**spec.fixed_params(), **config}
            self.trials[key] = {
                "study": spec.study, "method": spec.method, "dataset": spec.dataset.name,
                "teacher": spec.teacher.model if spec.teacher else None,
                "student": spec.student.model,
                "pair": f"{spec.teacher.model if spec.teacher else '-'}->{spec.student.model}",
                "seed": self.seed, "trial_id": key, "status": "pending",
                "budget_epochs": spec.budget.epochs, "epochs_done": 0, "retries": 0, "resumes": 0,
                "config": json.dumps(params, sort_keys=True, default=str),
                **{f"param_{k}": v for k, v in params.items()},
                **{f"teacher_{k}": self.teacher.get(k) for k in TEACHER_COLUMNS},
                "error": None, "versions": self._versions, **self.lineage,
                "limits": self._limits,
            }
        return self.trials[key]

    def _finish(self, trial, status: str, result: dict[str, Any], error: str | None = None) -> None:
        row = self._row(trial)
        if error is None and row.get("retries"):
            error = row.get("error")  # keep what the retries were about
        self._set_status(row, status)
        row.update(ended_at=utc_now(), error=error,
                   epochs_done=result.get("training_iteration", row.get("epochs_done", 0)),
                   duration_s=result.get("time_total_s"),
                   node=result.get("hostname"), node_ip=result.get("node_ip"), node_id=result.get("node_id"),
                   **{k: result.get(k) for k in (*EPOCH_METRICS, *FINAL_COLUMNS)},
                   **{k: result[k] for k in (*SAME_RUN_TEACHER, *QUANTIZED_COLUMNS) if k in result},
                   **{k: v for k, v in result.items() if k.startswith(TRIAL_PREFIXES) or k in ("feasible", "aimed")})
        # A trial continued from a checkpoint older than its last report (the driver died between
        # snapshots) may end before it reports those epochs again: the earlier run's go.
        done = int(row.get("epochs_done") or 0)  # rows hold None, never NaN (_rows)
        for epoch in range(done + 1, self._last_epoch.pop(row["trial_id"], 0) + 1):
            self._reports.append(deletion(trial_id=row["trial_id"], epoch=epoch))
        if status == "completed" and getattr(trial, "checkpoint", None) is not None:  # what `harness export` reads
            from harness.study.trial import STATE_FILE

            # Relative to the study folder, in the terms of the filesystem Tune checkpoints to.
            top = self.location.base if self.location else str(self.folder)
            row["student_state"] = posixpath.relpath(posixpath.join(trial.checkpoint.path, STATE_FILE), top)
        self._consider_best(row)
        self.flush()

    def record_infeasible(self, number: int, config: dict[str, Any], verdict: Verdict) -> None:
        """A draw over ``search.constraints`` before training (the searcher's ``number``-th): a row of
        its own, never trained, with its network's static costs, its latencies measured by the gate
        (``draw_*``) and how far it is over each limit."""
        row = self._keyed_row(trial_key(self.seed, f"infeasible_{number:05d}"), config)
        figures = verdict.figures
        row.update(epochs_done=0, ended_at=utc_now(), **{k: figures.get(k) for k in STATIC},
                   **{f"draw_{k}": v for k, v in figures.items() if k.startswith(("latency", "teacher_latency"))},
                   **verdict.judged)
        self._set_status(row, INFEASIBLE)
        self.flush()

    def search_gave_up(self) -> None:
        """The seed's searcher found no draw within the limits (search.constraints) and ended it."""
        self.gave_up.add(self.seed)

    def judge_again(self) -> None:
        """Each completed trial's limits on the figures it has now (latencies measured again after
        the search, the teacher's in the same window): what selection and the leaderboard read."""
        limits = study_limits(self.spec)
        if not limits:
            return
        for key, row in self.trials.items():
            if row["status"] == "completed":
                row.update(judge_row(limits, row))
                self._changed[key] = None

    def record_remeasurement(self, figures: dict[str, dict[str, Any]]) -> list[str]:
        """Latencies measured again after the search (harness.study.remeasure), by row id, replace the
        in-trial ones, which are kept as ``trial_*``. Returns the trials whose measured model
        did not have the parameter count the trial reported: left as they were."""
        mismatched = []
        for key, measured in figures.items():
            row = self.trials.get(key)
            if row is None:
                continue
            measured = dict(measured)
            if measured.pop("params_measured") != row.get("params"):
                mismatched.append(row["trial_id"])
                continue
            if row.get("latency_rounds") is None:  # the first time: keep what the trial measured
                row.update({f"trial_{k}": row.get(k) for k in REMEASURED})
            row.update(measured)
            self._changed[key] = None
        self.judge_again()
        self.compact()  # the study has ended: its files are whole again
        return mismatched

    def record_targets(self, rows: list[dict[str, Any]]) -> None:
        """Each deployment target's figures (harness.study.targets), one row per trial, target and
        batch size; a later measurement of the same replaces it."""
        table = self.tables.setdefault("latencies", PartTable(self.folder, "latencies", LATENCY_COLUMNS))
        table.append([{"study": self.spec.study, **row} for row in rows])
        self.compact()

    def mark_unfinished(self, status: str) -> None:
        """Give trials that never ended (an interrupted run) a final status, and write."""
        for row in self.trials.values():
            if row["status"] in ("pending", "running"):
                self._set_status(row, status)
                row["ended_at"] = utc_now()
        self.compact()

    def flush(self) -> None:
        """Write the rows that changed and the new reports, as one part of each table.

        A write that fails leaves the tables as the last flush wrote them and sets
        ``failure`` (one line: the path and the OS error); StopOnWriteFailure then
        stops the trials, and the sweep ends with that line."""
        self._unwritten = False
        self._flushed = time.monotonic()
        if self.failure:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.tables["trials"].append([self.trials[key] for key in self._changed])
            self.tables["epochs"].append(self._reports)
            if self._uploader is not None:
                self._uploader.request()  # uploaded in the background
        except (OSError, StorageError) as exc:
            self._failed(exc)
            return
        self._changed.clear()
        self._reports = []

    def compact(self) -> None:
        """Flush, then fold each table into its one file (at the end of a seed, and of the study)."""
        self.flush()
        if self.failure:
            return
        try:
            for table in self.tables.values():
                table.compact()
            if self._uploader is not None:
                self._uploader.drain()  # a seed's or the study's end: its files are in the bucket
        except (OSError, StorageError) as exc:
            self._failed(exc)

    def _failed(self, exc: OSError | StorageError) -> None:
        if isinstance(exc, StorageError):
            self.failure = f"{exc}; the results written before stay in {self.location.uri}"
            return
        self.failure = (f"storage: cannot write '{exc.filename or self.folder}' ({exc.strerror or exc}); "
                        f"the results written before stay in {self.folder}")

    def check_written(self) -> None:
        """Raise the write failure, if there was one, as the sweep's one error line."""
        if self.failure:
            raise HarnessError(self.failure)

    # --- the tally, kept as events arrive ----------------------------------------------
    def _set_status(self, row: dict[str, Any], status: str) -> None:
        self._changed[row["trial_id"]] = None
        self._counts[row["seed"], row["status"]] -= 1
        self._counts[row["seed"], status] += 1
        row["status"] = status

    def _consider_best(self, row: dict[str, Any]) -> None:
        if row["status"] != "completed" or row.get("feasible") is False:
            return
        held = self._best.get(row["seed"])
        if best([*([held] if held else []), row], self.metric, self.mode) is row:  # ties: the earlier stays
            self._best[row["seed"]] = row

    def counts(self, seed: int | None = None) -> dict[str, int]:
        """Trials by status, of one seed or of the study."""
        counts: Counter[str] = Counter()
        for (s, status), n in self._counts.items():
            if n and (seed is None or s == seed):
                counts[status] += n
        return dict(counts)

    def best_trial(self, seed: int | None = None) -> dict[str, Any] | None:
        """The completed trial best on the first objective, of one seed or of the study."""
        held = [row for s, row in self._best.items() if seed is None or s == seed]
        return best(held, self.metric, self.mode)


def _rows(frame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def utc_now() -> str:
    """The time now, as results record it (milliseconds: short trials last about a second)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _error_line(trial) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    try:
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
        return lines[-1].strip() if lines else "error"
    except (OSError, TypeError):
        return "error (no error file)"


def best(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and not math.isnan(r[metric])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[metric])
