"""Pareto fronts over result tables: which trials no other trial beats on every objective.

An objective may be an interval rather than a point (a latency measured in rounds
has a confidence interval): on it, a trial is better than another only when its
whole interval lies on the better side of the other's, and no worse when the two
overlap. Two measurements of one network are then never told apart by noise,
while a network measurably faster still dominates.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

Objectives = dict[str, str]  # column -> "max" | "min"
Intervals = dict[str, tuple[str, str]]  # objective column -> (low column, high column)


def pareto_mask(frame: pd.DataFrame, objectives: Objectives, intervals: Intervals | None = None) -> pd.Series:
    """True for rows no other row dominates (no worse on all objectives, better on one).

    Rows with a missing objective are never on the front; a missing interval bound
    falls back to the objective's value. Vectorised in chunks of rows, so 10,000
    points cost a fraction of a second and bounded memory.
    """
    columns = list(objectives)
    values = frame[columns].to_numpy(dtype=float, na_value=np.nan)
    low, high = values.copy(), values.copy()
    for k, column in enumerate(columns):
        if intervals and column in intervals:
            for bound, out in zip(intervals[column], (low, high), strict=True):
                if bound in frame:
                    given = frame[bound].to_numpy(dtype=float, na_value=np.nan)
                    out[:, k] = np.where(np.isnan(given), values[:, k], given)
    # Turn every objective into "smaller is better" (a maximised interval flips its bounds).
    flip = np.array([objectives[c] == "max" for c in columns])
    low, high = np.where(flip, -high, low), np.where(flip, -low, high)
    valid = ~np.isnan(values).any(axis=1)
    low, high = low[valid], high[valid]
    on_front = np.ones(len(low), dtype=bool)
    for start in range(0, len(low), 512):
        # (chunk, 1, k) against (1, n, k): does row j dominate row i?
        no_worse = (low[None, :, :] <= high[start:start + 512, None, :]).all(axis=2)
        better = (high[None, :, :] < low[start:start + 512, None, :]).any(axis=2)
        on_front[start:start + 512] = ~(no_worse & better).any(axis=1)
    mask = np.zeros(len(frame), dtype=bool)
    mask[np.flatnonzero(valid)] = on_front
    return pd.Series(mask, index=frame.index, name="pareto")
