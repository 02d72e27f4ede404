"""The numbers behind every report: selected trials per seed, their spread over seeds and
Welch's p between studies, Pareto fronts, and trials counted by status.

Protocol: within a study each seed is a whole search; its *selected* trial is
the completed trial with the best validation accuracy (the search's own
criterion), and only then is its test accuracy read. A method's figure is the
mean and standard deviation of the selected trials' test accuracy over seeds.
Pareto membership is decided on validation accuracy and measured cost, so a
front never selects on the test split; charts plot test accuracy.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ttest_ind_from_stats

from reports.pareto import pareto_mask

LATENCY, SIZE = "latency_ms", "size_bytes"
FRONTS = {"pareto_latency": {"val_acc": "max", LATENCY: "min"},
          "pareto_size": {"val_acc": "max", SIZE: "min"},
          "pareto": {"val_acc": "max", LATENCY: "min", SIZE: "min"}}


def measured(trials: pd.DataFrame) -> pd.Series:
    """Trials that can be placed on a cost chart: completed, with accuracy and cost."""
    return (trials["status"].eq("completed") & trials[["test_acc", "val_acc", LATENCY, SIZE]].notna().all(axis=1))


def with_fronts(trials: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """``trials`` with boolean ``pareto*`` columns, fronts taken within each ``by`` group."""
    trials = trials.copy()
    for column in FRONTS:
        trials[column] = False
    placed = trials[measured(trials)]
    groups = placed.groupby(by, dropna=False) if by else [(None, placed)]
    for _, group in groups:
        for column, objectives in FRONTS.items():
            trials.loc[group.index, column] = pareto_mask(group, objectives)
    return trials


def selected_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Per study and seed, the completed trial with the best validation accuracy."""
    done = trials[trials["status"].eq("completed") & trials["val_acc"].notna()]
    if done.empty:
        return done
    best = done.sort_values(["val_acc", "trial_id"], ascending=[False, True])
    return best.groupby(["study", "seed"], sort=False).head(1).sort_values(["study", "seed"])


def seed_spread(trials: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std and count over seeds of the selected trials' test accuracy (and their cost)."""
    chosen = selected_trials(trials)
    if chosen.empty:
        return pd.DataFrame(columns=[*by, "test_acc_mean", "test_acc_std", "seeds"])
    return chosen.groupby(by, dropna=False).agg(
        test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", lambda s: s.std(ddof=1) if len(s) > 1 else np.nan),
        seeds=("seed", "nunique"), latency_ms=(LATENCY, "median"), size_bytes=(SIZE, "median"),
        per_seed=("test_acc", lambda s: ", ".join(f"{v:.2%}" for v in s)),
    ).reset_index()


def welch_p(mean_a: float, std_a: float, seeds_a: float, mean_b: float, std_b: float, seeds_b: float) -> float:
    """Two-sided p-value of Welch's t-test on two studies' per-seed figures, from their
    means, standard deviations and seed counts; NaN with fewer than two seeds a side.

    A large p says the two means differ by no more than their seeds' spread explains:
    with three seeds, ranks a few tenths of a point apart are often not a finding.
    """
    figures = (mean_a, std_a, seeds_a, mean_b, std_b, seeds_b)
    if any(pd.isna(v) for v in figures) or min(seeds_a, seeds_b) < 2:
        return np.nan
    if std_a == 0 and std_b == 0:  # the test is undefined; equal means are a tie, others are not
        return 1.0 if mean_a == mean_b else 0.0
    return float(ttest_ind_from_stats(mean_a, std_a, seeds_a, mean_b, std_b, seeds_b, equal_var=False).pvalue)


def status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials per study and status, every status shown (errored and running included)."""
    counts = trials.groupby(["study", "status"]).size().unstack(fill_value=0)
    counts.columns.name = None
    return counts.reset_index()


def unplaced(trials: pd.DataFrame) -> dict[str, int]:
    """Why trials are missing from cost charts, by status (nothing silently dropped)."""
    missing = trials[~measured(trials)]
    reasons = missing["status"].where(~missing["status"].eq("completed"), "completed without a measurement")
    return reasons.value_counts().to_dict()
