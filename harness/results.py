"""Parquet results, written while the study runs and complete when it ends.

``trials.parquet`` has one row per trial, ``epochs.parquet`` one row per report.
The schema is documented in the README ("Results").
"""
from __future__ import annotations

import json
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import Callback

from harness.search import stopped_early
from harness.spec import EPOCH_METRICS, FINAL_METRICS, TEST_METRICS, StudySpec

FINAL_COLUMNS = ("test_acc", "test_loss", *FINAL_METRICS, "latency_batch", "device", "measure_s")
SAME_RUN_TEACHER = ("teacher_latency_b1_ms", "teacher_latency_ms")  # measured beside the student
TEACHER_COLUMNS = ("val_acc", "test_acc", "params", "size_bytes", "macs")
EPOCH_COLUMNS = ("epoch", *EPOCH_METRICS, "params", "size_bytes", "macs", "epoch_s", "train_s")
# Reported by some methods only: data-free methods count generator iterations and save image grids.
OPTIONAL_EPOCH_COLUMNS = ("iterations", "samples")


def method_columns(result: dict[str, Any]) -> dict[str, Any]:
    """The optional columns in a report, and every loss term a method reports (``*_loss``)."""
    fixed = (*EPOCH_COLUMNS, *TEST_METRICS)
    return {k: v for k, v in result.items()
            if k in OPTIONAL_EPOCH_COLUMNS or (k.endswith("_loss") and k not in fixed)}


def versions() -> str:
    import optuna
    import ray
    import torch

    return json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                       "ray": ray.__version__, "optuna": optuna.__version__})


class ResultsWriter(Callback):
    """Collects Tune events for one study (all its seeds) into two Parquet files."""

    def __init__(self, spec: StudySpec, folder: Path, teacher: dict[str, Any] | None,
                 flush_every_s: float = 5.0) -> None:
        self.spec = spec
        self.folder = folder
        self.teacher = teacher or {}
        self.seed = spec.seeds[0]
        self.flush_every_s = flush_every_s
        self.trials: dict[str, dict[str, Any]] = {}
        self.epochs: list[dict[str, Any]] = []
        self._last_flush = 0.0
        self._versions = versions()

    def start_seed(self, seed: int) -> None:
        self.seed = seed

    # --- Tune callback hooks ---------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        row = self._row(trial)
        row.update(status="running", started_at=_now())

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.epochs.append({
            "study": self.spec.study, "seed": self.seed, "trial_id": self._id(trial),
            **{k: result.get(k) for k in EPOCH_COLUMNS},
            **method_columns(result),
            "training_iteration": result.get("training_iteration"),
            "time_total_s": result.get("time_total_s"), "timestamp": result.get("timestamp"),
        })
        self._row(trial).update(epochs_done=result.get("training_iteration"),
                                **{k: result.get(k) for k in EPOCH_METRICS},
                                **{k: result[k] for k in OPTIONAL_EPOCH_COLUMNS if k in result})
        self._flush_if_due()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        status = "stopped" if stopped_early(result, self.spec.budget.epochs) else "completed"
        self._finish(trial, status, result)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "error", trial.last_result or {}, error=_error_line(trial))

    def on_experiment_end(self, trials, **info) -> None:
        self.flush()

    # --- rows ------------------------------------------------------------------------
    def _id(self, trial) -> str:
        return f"s{self.seed}-{trial.trial_id}"

    def _row(self, trial) -> dict[str, Any]:
        key = self._id(trial)
        if key not in self.trials:
            spec = self.spec
            params = {**spec.fixed_params(), **trial.config}
            self.trials[key] = {
                "study": spec.study, "method": spec.method, "dataset": spec.dataset.name,
                "teacher": spec.teacher.model if spec.teacher else None,
                "student": spec.student.model,
                "pair": f"{spec.teacher.model if spec.teacher else '-'}->{spec.student.model}",
                "seed": self.seed, "trial_id": key, "status": "pending",
                "budget_epochs": spec.budget.epochs, "epochs_done": 0,
                "config": json.dumps(params, sort_keys=True, default=str),
                **{f"param_{k}": v for k, v in params.items()},
                **{f"teacher_{k}": self.teacher.get(k) for k in TEACHER_COLUMNS},
                "error": None, "versions": self._versions,
            }
        return self.trials[key]

    def _finish(self, trial, status: str, result: dict[str, Any], error: str | None = None) -> None:
        row = self._row(trial)
        row.update(status=status, ended_at=_now(), error=error,
                   epochs_done=result.get("training_iteration", row.get("epochs_done", 0)),
                   duration_s=result.get("time_total_s"),
                   node=result.get("hostname"), node_ip=result.get("node_ip"),
                   **{k: result.get(k) for k in (*EPOCH_METRICS, *FINAL_COLUMNS)},
                   **{k: result[k] for k in SAME_RUN_TEACHER if k in result})
        self.flush()

    def mark_unfinished(self, status: str) -> None:
        """Give trials that never ended (an interrupted run) a final status, and write."""
        for row in self.trials.values():
            if row["status"] in ("pending", "running"):
                row.update(status=status, ended_at=_now())
        self.flush()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Rewrite both files atomically (write, then rename) from the rows so far."""
        self.folder.mkdir(parents=True, exist_ok=True)
        _write(pd.DataFrame(list(self.trials.values())), self.folder / "trials.parquet")
        _write(pd.DataFrame(self.epochs), self.folder / "epochs.parquet")
        self._last_flush = time.monotonic()

    # --- summaries for the progress line ---------------------------------------------
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.trials.values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _error_line(trial) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    try:
        lines = [l for l in Path(trial.error_file).read_text().splitlines() if l.strip()]
        return lines[-1].strip() if lines else "error"
    except (OSError, TypeError):
        return "error (no error file)"


def best(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and not math.isnan(r[metric])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[metric])
