"""Study folders as tables: what the harness wrote, read back without torch or Ray.

A study folder holds ``study.json``, ``trials.parquet`` and ``epochs.parquet``
(README, "Results"). Studies are read as they are: still running (no
``ended_at``), with errored trials, with NaN metrics or with one trial; nothing
is dropped here, the figures label what they cannot place.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


class ReportError(Exception):
    """A study folder that cannot be read (missing, or not a study)."""


@dataclass
class Study:
    folder: Path
    info: dict[str, Any]  # study.json
    trials: pd.DataFrame
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def name(self) -> str:
        return self.info.get("study", self.folder.name)

    @property
    def spec(self) -> dict[str, Any]:
        return self.info.get("spec", {})

    @property
    def running(self) -> bool:
        """No end time recorded: the study is still running, or its driver died."""
        return "ended_at" not in self.info

    @property
    def objectives(self) -> list[dict[str, str]]:
        return self.spec.get("search", {}).get("objectives", [{"metric": "val_acc", "mode": "max"}])

    @property
    def teacher(self) -> dict[str, Any]:
        return self.info.get("teacher") or {}


def load_study(folder: str | Path) -> Study:
    folder = Path(folder)
    info_path = folder / "study.json"
    if not info_path.is_file():
        raise ReportError(f"{folder}: not a study folder (no study.json)")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{info_path}: unreadable ({exc})") from exc
    trials = _read(folder / "trials.parquet")
    epochs = _read(folder / "epochs.parquet")
    if trials.empty:
        trials = pd.DataFrame({"study": pd.Series(dtype=str), "trial_id": pd.Series(dtype=str),
                               "status": pd.Series(dtype=str)})
    return Study(folder, info, normalise_trials(trials, info), epochs)


def find_studies(storage: str | Path) -> list[Path]:
    """Every study folder under ``storage`` (earlier runs kept in ``previous/`` excluded)."""
    storage = Path(storage)
    if not storage.is_dir():
        raise ReportError(f"{storage}: no such folder")
    return sorted(p.parent for p in storage.rglob("study.json")
                  if "previous" not in p.relative_to(storage).parts and "teachers" not in p.relative_to(storage).parts)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # a half-written or foreign file: say which, do not crash the report
        raise ReportError(f"{path}: unreadable Parquet ({exc})") from exc


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
                "teacher": (spec.get("teacher") or {}).get("model")}
    for column, value in defaults.items():
        if column not in trials:
            trials[column] = value
    trials["teacher"] = trials["teacher"].fillna("-")  # a method without a teacher (scratch)
    if "pair" not in trials:
        trials["pair"] = trials["teacher"].astype(str) + "->" + trials["student"].astype(str)
    for column in NUMERIC:
        trials[column] = pd.to_numeric(trials[column], errors="coerce") if column in trials else np.nan
    trials["status"] = trials["status"].fillna("unknown").astype(str)
    return trials
