"""Study folders as tables: what the harness wrote, read back without torch or Ray.

A study folder holds ``study.json``, ``trials.parquet``, ``epochs.parquet`` and, with
deployment targets, ``latencies.parquet`` (docs/results.md). Studies are read as they are: still running or interrupted
(``ended_at`` null), with errored trials, with NaN metrics or with one trial;
nothing is dropped here, the figures label what they cannot place.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.store.lock import holder_alive  # the record a sweep's driver leaves (no torch, no Ray)
from harness.store.tables import read_table  # pandas and pyarrow only


class ReportError(Exception):
    """A study folder that cannot be read (missing, or not a study)."""


@dataclass
class Study:
    folder: Path
    info: dict[str, Any]  # study.json
    trials: pd.DataFrame
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    latencies: pd.DataFrame = field(default_factory=pd.DataFrame)  # the deployment targets' (reports.targets)

    @property
    def name(self) -> str:
        return self.info.get("study", self.folder.name)

    @property
    def spec(self) -> dict[str, Any]:
        return self.info.get("spec", {})

    @property
    def state(self) -> str:
        return study_state(self.info)

    @property
    def running(self) -> bool:
        """Not finished: still running, or its driver stopped before the end."""
        return self.state != "finished"

    def state_line(self) -> str:
        """The study's state in words, with what to do about an interrupted one."""
        driver = self.info.get("driver") or {}
        where = f"pid {driver.get('pid')} on {driver.get('host')}"
        return {
            "finished": f"{self.name}: finished at {self.info.get('ended_at')}",
            "running": f"{self.name}: still running (its driver, {where}, is alive); figures show the trials "
                       f"written so far",
            "interrupted": f"{self.name}: interrupted (its driver, {where}, stopped before the end); figures show "
                           f"the trials written so far; `harness sweep {self.folder} --resume` finishes it",
            "running or interrupted": f"{self.name}: not finished (still running, or interrupted: its driver ran "
                                      f"as {where}); figures show the trials written so far",
        }[self.state]

    @property
    def objectives(self) -> list[dict[str, str]]:
        return self.spec.get("search", {}).get("objectives", [{"metric": "val_acc", "mode": "max"}])

    @property
    def teacher(self) -> dict[str, Any]:
        return self.info.get("teacher") or {}


def study_state(info: dict[str, Any]) -> str:
    """``finished``; ``running`` (its driver is alive on this host); ``interrupted`` (its
    driver is gone); or ``running or interrupted`` (its driver ran on another host)."""
    if info.get("ended_at"):
        return "finished"
    alive = holder_alive(info.get("driver") or {})
    return "running or interrupted" if alive is None else "running" if alive else "interrupted"


def read_info(folder: Path) -> dict[str, Any]:
    """A study folder's ``study.json``."""
    path = folder / "study.json"
    if not path.is_file():
        raise ReportError(f"{folder}: not a study folder (no study.json)")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: unreadable ({exc})") from exc


def load_study(folder: str | Path) -> Study:
    folder = Path(folder)
    info = read_info(folder)
    trials = _read(folder, "trials")
    epochs = _read(folder, "epochs")
    if trials.empty:
        trials = pd.DataFrame({"study": pd.Series(dtype=str), "trial_id": pd.Series(dtype=str),
                               "status": pd.Series(dtype=str)})
    return Study(folder, info, normalise_trials(trials, info), epochs, read_latencies(folder, info))


def read_latencies(folder: Path, info: dict[str, Any]) -> pd.DataFrame:
    """The study's deployment targets' figures (empty for a study without targets)."""
    latencies = _read(folder, "latencies")
    if latencies.empty:
        return pd.DataFrame(columns=["study", "trial_id", "target", "batch"])
    latencies["study"] = latencies["study"].fillna(info.get("study")) if "study" in latencies else info.get("study")
    return latencies


def find_studies(storage: str | Path) -> list[Path]:
    """Every study folder under ``storage`` (earlier runs kept in ``previous/`` excluded)."""
    storage = Path(storage)
    if not storage.is_dir():
        raise ReportError(f"{storage}: no such folder")
    return sorted(p.parent for p in storage.rglob("study.json")
                  if "previous" not in p.relative_to(storage).parts and "teachers" not in p.relative_to(storage).parts)


def _read(folder: Path, name: str) -> pd.DataFrame:
    """A table as the running or finished study wrote it (compacted, or in parts)."""
    try:
        return read_table(folder, name)
    except Exception as exc:  # a foreign or damaged file: say which, do not crash the report
        raise ReportError(f"{folder / name}.parquet: unreadable Parquet ({exc})") from exc


NUMERIC = ("val_acc", "test_acc", "params", "size_bytes", "macs", "latency_b1_ms", "latency_ms",
           "epochs_done", "budget_epochs", "duration_s", "teacher_test_acc", "teacher_val_acc",
           "teacher_latency_ms", "teacher_latency_b1_ms", "teacher_size_bytes", "teacher_params")


def normalise_trials(trials: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """Columns every report needs, numeric where they should be, NaN where unknown."""
    trials = trials.copy()
    spec = info.get("spec", {})
    defaults = {"study": info.get("study"), "method": spec.get("method"),
                "dataset": spec.get("dataset", {}).get("name"), "seed": 0, "status": "unknown",
                "student": spec.get("student", {}).get("model"),
                "teacher": (spec.get("teacher") or {}).get("model"), "device": None}
    for column, value in defaults.items():
        if column not in trials:
            trials[column] = value
    trials["teacher"] = trials["teacher"].fillna("-")  # a method without a teacher (scratch)
    if "pair" not in trials:
        trials["pair"] = trials["teacher"].astype(str) + "->" + trials["student"].astype(str)
    for column in NUMERIC:
        trials[column] = pd.to_numeric(trials[column], errors="coerce") if column in trials else np.nan
    trials["status"] = trials["status"].fillna("unknown").astype(str)
    # Studies written before the device said "1 thread" group with those written after.
    trials["device"] = trials["device"].astype(object).where(trials["device"].isna(),
                                                             trials["device"].astype(str).str.replace(
                                                                 " (1 threads)", " (1 thread)", regex=False))
    return trials
