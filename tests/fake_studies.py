"""Study folders in the harness's on-disk format, written without running anything.

Reports only read Parquet and study.json, so their tests (and the report speed
benchmark) build folders with the same columns a sweep writes: completed,
stopped, errored and running trials, NaN metrics, several seeds.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

STATUSES = ("completed", "stopped", "error", "running")


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def write_study(folder: Path, study: str, method: str, n_trials: int, seeds=(0,), dataset: str = "digits",
                student: str = "lenet5_half", teacher: str | None = "lenet5", statuses=None, epochs: int = 6,
                rng: np.random.Generator | None = None, finished: bool = True,
                driver: dict | None = None) -> Path:
    """A study folder with ``n_trials`` trials per seed; ``statuses`` cycles over the trials.

    Unfinished, its study.json says what a running sweep writes: ``ended_at`` null, and
    the driver (``{"host", "pid"}``; by default a pid on this host that no process has)."""
    rng = rng or np.random.default_rng(0)
    statuses = statuses or ("completed",)
    folder = folder / study
    folder.mkdir(parents=True, exist_ok=True)
    space = {"lr": {"kind": "loguniform", "args": [0.001, 0.1]},
             "batch_size": {"kind": "categorical", "args": [32, 64]},
             "tau": {"kind": "uniform", "args": [1.0, 10.0]}, "weight_decay": 0.0005}
    teacher_info = None if teacher is None else {
        "model": teacher, "dataset": dataset, "test_acc": 0.99, "val_acc": 0.985, "params": 61706,
        "size_bytes": 250885, "latency_ms": 4.0, "source": "trained"}
    info = {"study": study, "spec": {
        "study": study, "method": method, "student": {"model": student}, "teacher": teacher and {"model": teacher},
        "dataset": {"name": dataset}, "budget": {"epochs": epochs},
        "search": {"space": space, "objectives": [{"metric": "val_acc", "mode": "max"}], "searcher": "tpe",
                   "num_samples": n_trials},
        "asha": {"grace_period": 2, "reduction_factor": 2}, "seeds": list(seeds)},
        "dataset": {"name": dataset, "train": 1000, "val": 100, "test": 300},
        "teacher": teacher_info, "versions": {"python": "3.11"}, "started_at": "2026-11-23T00:00:00+00:00",
        "ended_at": "2026-11-23T01:00:00+00:00" if finished else None,
        "driver": driver or {"host": socket.gethostname(), "pid": _dead_pid()}}
    (folder / "study.json").write_text(json.dumps(info))
    trials, curves = [], []
    for seed in seeds:
        for i in range(n_trials):
            status = statuses[i % len(statuses)]
            lr, batch, tau = float(10 ** rng.uniform(-3, -1)), int(rng.choice([32, 64])), float(rng.uniform(1, 10))
            quality = 0.97 - 2.0 * abs(np.log10(lr) + 1.7) ** 2 * 0.05 + rng.normal(0, 0.005)
            done = {"completed": epochs, "stopped": 2, "error": 1, "running": 3}[status]
            curve = [quality * (1 - 0.5 ** (e + 1)) for e in range(done)]
            trial_id = f"s{seed}-{i:04d}"
            measured = status == "completed"
            latency = float(rng.uniform(1.0, 5.0)) if measured else np.nan
            trials.append({
                "study": study, "method": method, "dataset": dataset, "teacher": teacher, "student": student,
                "pair": f"{teacher or '-'}->{student}", "seed": seed, "trial_id": trial_id, "status": status,
                "budget_epochs": epochs, "epochs_done": done,
                "config": json.dumps({"lr": lr, "batch_size": batch, "tau": tau}),
                "param_lr": lr, "param_batch_size": batch, "param_tau": tau, "param_weight_decay": 0.0005,
                "val_acc": curve[-1] if curve else np.nan, "train_loss": 0.1,
                "test_acc": curve[-1] + rng.normal(0, 0.003) if measured else np.nan,
                "params": 15738 if measured else np.nan,
                "size_bytes": float(rng.uniform(2e4, 8e4)) if measured else np.nan,
                "macs": 133740 if measured else np.nan, "latency_ms": latency,
                "latency_b1_ms": latency / 8 if measured else np.nan, "device": "cpu (test)" if measured else None,
                "teacher_test_acc": teacher_info and teacher_info["test_acc"],
                "teacher_size_bytes": teacher_info and teacher_info["size_bytes"],
                "teacher_latency_ms": 4.0 if measured and teacher else np.nan,
                "error": "RuntimeError: boom" if status == "error" else None,
            })
            curves += [{"study": study, "seed": seed, "trial_id": trial_id, "epoch": e + 1, "val_acc": v}
                       for e, v in enumerate(curve)]
    pd.DataFrame(trials).to_parquet(folder / "trials.parquet", index=False)
    pd.DataFrame(curves).to_parquet(folder / "epochs.parquet", index=False)
    return folder
