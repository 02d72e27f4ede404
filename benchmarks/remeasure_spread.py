"""How much the measurement after the search steadies latency: spread across trials of one network.

Trials with the same parameter count in a study are the same network (a KD
study's students, say), so any difference between their latencies is
measurement noise. For each such group of completed trials, this prints the
coefficient of variation (std / mean) across trials of the latency measured in
the trial, beside its neighbours (``trial_*`` columns), and of the latency
measured again after the search, one trial at a time (``harness/remeasure.py``).

    uv run python benchmarks/remeasure_spread.py studies/kd-digits [more study folders]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

PAIRS = (("student, batch", "latency_ms"), ("student, batch 1", "latency_b1_ms"),
         ("teacher, batch", "teacher_latency_ms"), ("teacher, batch 1", "teacher_latency_b1_ms"))


def cv(values: pd.Series) -> float:
    return float(values.std() / values.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=Path, help="study folders (holding trials.parquet)")
    parser.add_argument("--min-trials", type=int, default=3, help="smallest group of one network to count")
    args = parser.parse_args()
    for folder in args.studies:
        trials = pd.read_parquet(folder / "trials.parquet")
        done = trials[trials.status.eq("completed") & trials["latency_rounds"].notna()] \
            if "latency_rounds" in trials else trials.iloc[:0]
        if done.empty:
            print(f"{folder}: no completed trial was measured again (measure.rounds: 0, or an older study)")
            continue
        for params, group in done.groupby("params"):
            if len(group) < args.min_trials:
                continue
            print(f"{folder.name}: {len(group)} completed trials of one network ({params} parameters), "
                  f"{int(group.latency_rounds.iloc[0])} rounds; across trials, cv in the trial -> measured again:")
            for label, column in PAIRS:
                if group[column].notna().all() and f"trial_{column}" in group:
                    print(f"  {label:<17} {cv(group[f'trial_{column}']):6.1%} -> {cv(group[column]):6.1%}   "
                          f"(median {group[f'trial_{column}'].median():.3f} -> {group[column].median():.3f} ms)")


if __name__ == "__main__":
    main()
