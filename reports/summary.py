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
# The interval of the median (harness/measure/latency.py).
LATENCY_LOW, LATENCY_HIGH = "latency_low_ms", "latency_high_ms"
INTERVALS = {LATENCY: (LATENCY_LOW, LATENCY_HIGH)}
FRONTS = {"pareto_latency": {"val_acc": "max", LATENCY: "min"},
          "pareto_size": {"val_acc": "max", SIZE: "min"},
          "pareto": {"val_acc": "max", LATENCY: "min", SIZE: "min"}}


def is_missing(value: object) -> bool:
    """None or NaN: a figure a report shows as n/a."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def front_mask(frame: pd.DataFrame, objectives: dict[str, str]) -> pd.Series:
    """The Pareto front with latency as its interval: overlapping latencies are equal."""
    return pareto_mask(frame, objectives, INTERVALS)


def one_latency_per_network(trials: pd.DataFrame) -> pd.DataFrame:
    """Every trial whose network (structural fingerprint, ``network``) was measured on the
    same device at the same batch gets one latency: the median of the group's figures and
    the interval spanning theirs. Measured in one window they are one figure already; from
    several windows (``--no-remeasure``, studies run apart) the pooled interval shows the
    windows' disagreement instead of ranking it. ``latency_trials``: trials sharing it.
    The teachers' figures are pooled the same way by ``teacher_network``."""
    trials = trials.copy()
    for prefix, key in (("", "network"), ("teacher_", "teacher_network")):
        value, low, high = (f"{prefix}{c}" for c in (LATENCY, LATENCY_LOW, LATENCY_HIGH))
        if value not in trials:
            continue
        for column in (low, high):
            trials[column] = pd.to_numeric(trials[column], errors="coerce").fillna(trials[value]) \
                if column in trials else trials[value]
        if key not in trials:
            continue
        keys = [trials[key], trials.get("device", pd.Series("", index=trials.index)).fillna(""),
                trials.get("latency_batch", pd.Series(0, index=trials.index)).fillna(0)]
        placed = trials[key].notna() & trials[value].notna()
        grouped = trials[placed].groupby([k[placed] for k in keys])
        trials.loc[placed, value] = grouped[value].transform("median")
        trials.loc[placed, low] = grouped[low].transform("min")
        trials.loc[placed, high] = grouped[high].transform("max")
        if not prefix:
            trials["latency_trials"] = grouped[value].transform("size").reindex(trials.index)
    return trials


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
            trials.loc[group.index, column] = front_mask(group, objectives)
    return trials


def window_lines(trials: pd.DataFrame) -> list[tuple[str, bool]]:
    """Per data set and device, whether the latencies compared there were measured in one
    window, and which figures stayed noisy: (line, whether it is a warning)."""
    done = trials[measured(trials)]
    out = []
    for (dataset, device), group in done.groupby(["dataset", "device"], dropna=False):
        where = f"{dataset} on {device}"
        windows = group["latency_window"] if "latency_window" in group else pd.Series(np.nan, index=group.index)
        named, in_trial = windows.dropna().unique(), int(windows.isna().sum())
        networks = group["network"].nunique() if "network" in group else len(group)
        if len(named) == 1 and not in_trial:
            out.append((f"{where}: the latencies of {group['study'].nunique()} studies' {len(group)} completed trials "
                        f"({networks} distinct networks) were measured together in one window ({named[0]}, "
                        f"{int(group['latency_rounds'].max())} interleaved rounds)", False))
        else:
            sources = [f"{len(named)} measurement window(s)"] * bool(len(named)) + \
                      [f"{in_trial} trial(s) measured beside their neighbours"] * bool(in_trial)
            out.append((f"{where}: the latencies come from {' and '.join(sources)}, not one window: each network's "
                        f"figure pools its measurements, and differences smaller than the windows' drift may be "
                        f"noise (`harness leaderboard` without --no-remeasure measures them together)", True))
        if "latency_noisy" in group:
            noisy = group[group["latency_noisy"].fillna(False).astype(bool)]
            if len(noisy):
                by = noisy["network"].fillna(noisy["trial_id"]) if "network" in noisy else noisy["trial_id"]
                names = "; ".join(f"{network} ({len(trials)} trial(s) of {', '.join(sorted(trials['study'].unique()))})"
                                  for network, trials in noisy.groupby(by))
                out.append((f"{where}: NOISY latency, rounds still further apart than the bound after every "
                            f"attempt, for network(s) {names}", True))
    return out


def selected_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Per study and seed, the completed trial with the best validation accuracy; in a study with
    limits (``search.constraints``), the best of those within them."""
    done = trials[trials["status"].eq("completed") & trials["val_acc"].notna()]
    if "feasible" in done:
        done = done[done["feasible"].ne(False)]  # None: a study without limits, or an older one
    if done.empty:
        return done
    best = done.sort_values(["val_acc", "trial_id"], ascending=[False, True])
    return best.groupby(["study", "seed"], sort=False).head(1).sort_values(["study", "seed"])


def seed_spread(trials: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std and count over seeds of the selected trials' test accuracy (and their cost)."""
    chosen = selected_trials(trials)
    if chosen.empty:
        # No study selected a trial (none completed, or none within its limits): every column, empty.
        return pd.DataFrame(columns=[*by, "test_acc_mean", "test_acc_std", "seeds", LATENCY, SIZE, "per_seed"])
    bounds = {c: (c, "median") for c in (LATENCY_LOW, LATENCY_HIGH) if c in chosen}
    return chosen.groupby(by, dropna=False).agg(
        test_acc_mean=("test_acc", "mean"),
        test_acc_std=("test_acc", lambda s: s.std(ddof=1) if len(s) > 1 else np.nan),
        seeds=("seed", "nunique"), latency_ms=(LATENCY, "median"), **bounds, size_bytes=(SIZE, "median"),
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


def teacher_reference(frame: pd.DataFrame, column: str) -> pd.Series:
    """Each row's teacher figure (``column``); a row without a teacher (scratch) is held to
    its data set's teacher, the median of the others'."""
    return frame[column].fillna(frame.groupby("dataset")[column].transform("median"))
