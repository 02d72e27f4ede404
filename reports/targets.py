"""Deployment targets in the reports: one target's figures read as *the* latency.

A study's trials carry the default target's figures in their own columns (torch eager at
the measurement batch, the trial's threads, on the trial's device); ``latencies.parquet``
holds each named target's, one row per trial, target and batch size (docs/results.md).
:func:`at_target` puts one target's figures into those columns, so that every front,
rank and chart built for the default serves each target unchanged, and says in
``device`` which target, runtime, threads and node the figures are.
"""
from __future__ import annotations

import pandas as pd

DEFAULT = "default"  # the figures every trial takes
DEFAULT_LABEL = "default: torch eager at the measurement batch, the trial's threads, on the trial's device"
# What a target's row holds in the same terms as a trial's own latency columns.
FIGURES = ("latency_ms", "latency_low_ms", "latency_high_ms", "latency_spread", "latency_noisy", "latency_rounds",
           "latency_window", "teacher_latency_ms")
# An int8 target's rows also hold the quantized network's accuracy and size: selection, fronts and ranks
# use those; the float32 figures stay beside them.
INT8_FIGURES = ("val_acc", "test_acc", "size_bytes", "teacher_val_acc", "teacher_test_acc", "teacher_size_bytes",
                "fp32_val_acc", "fp32_test_acc", "accuracy_drop", "drop_flagged")


def targets(latencies: pd.DataFrame) -> list[tuple[str, int]]:
    """Every (target, batch size) the studies were measured at, in name order."""
    if latencies.empty or "target" not in latencies:
        return []
    pairs = latencies[["target", "batch"]].drop_duplicates()
    return sorted((str(t), int(b)) for t, b in pairs.itertuples(index=False))


def label(latencies: pd.DataFrame, target: str, batch: int) -> str:
    """``ort_b1 at batch 1: onnxruntime, 1 thread, on vm``."""
    if target == DEFAULT:
        return DEFAULT_LABEL
    rows = latencies[latencies["target"].eq(target) & latencies["batch"].eq(batch)]
    runtime = ", ".join(sorted(rows["runtime"].dropna().astype(str).unique())) or "?"
    if quantized(rows):
        runtime += " int8"
    threads = ", ".join(str(int(t)) for t in sorted(rows["threads"].dropna().unique())) or "?"
    nodes = ", ".join(sorted(rows["node"].dropna().astype(str).unique())) or "no node (not measured)"
    return f"{target} at batch {batch}: {runtime}, {threads} thread(s), on {nodes}"


def quantized(rows: pd.DataFrame) -> bool:
    """Whether these rows of ``latencies.parquet`` are an int8 target's."""
    return bool("precision" in rows and rows["precision"].eq("int8").any())


def at_target(trials: pd.DataFrame, latencies: pd.DataFrame, target: str, batch: int) -> pd.DataFrame:
    """The trials of the studies measured at ``target`` and ``batch``, with that target's figures
    in the latency columns and the target in ``device``; a trial without a figure there
    (stopped early, or its target's node was lost) has none. A quantizing method's trials
    (``precision`` int8: their accuracy is their int8 network's) are left out of float32 targets."""
    int8 = target != DEFAULT and quantized(latencies[latencies["target"].eq(target)])
    if not int8 and "precision" in trials:  # a quantizing study's trials (ptq) deploy only in int8
        trials = trials[~trials["precision"].eq("int8")]
    if target == DEFAULT:
        return trials
    rows = latencies[latencies["target"].eq(target) & latencies["batch"].eq(batch)]
    replaced = [*FIGURES, *(INT8_FIGURES if int8 else ())]
    replaced = [c for c in replaced if c in rows]
    mine = trials[trials["study"].isin(rows["study"].unique())].drop(
        columns=[c for c in (*replaced, "latency_b1_ms", "latency_trials") if c in trials])
    figures = rows[["study", "trial_id", *replaced]]
    out = mine.merge(figures, on=["study", "trial_id"], how="left")
    out["latency_b1_ms"] = out["latency_ms"] if batch == 1 else float("nan")
    out["latency_batch"] = batch
    # Where each study's figures were taken; its trials without one (stopped early) are placed with them.
    taken = rows[rows["latency_ms"].notna()].drop_duplicates("study").set_index("study")
    where = {study: f"{r.runtime}, {int(r.threads)} thread(s) on {r.node}" for study, r in taken.iterrows()}
    out["device"] = f"{target} (batch {batch}): " + out["study"].map(where).fillna("not measured")
    out["target"] = target
    return out
