"""Pareto fronts over result tables: which trials no other trial beats on every objective."""
from __future__ import annotations

import numpy as np
import pandas as pd

Objectives = dict[str, str]  # column -> "max" | "min"


def pareto_mask(frame: pd.DataFrame, objectives: Objectives) -> pd.Series:
    """True for rows no other row dominates (at least as good on all objectives, better on one).

    Rows with a missing objective are never on the front. Vectorised in chunks of
    rows, so 10,000 points cost a fraction of a second and bounded memory.
    """
    columns = list(objectives)
    values = frame[columns].to_numpy(dtype=float, na_value=np.nan)
    # Turn every objective into "smaller is better".
    values = values * np.array([-1.0 if objectives[c] == "max" else 1.0 for c in columns])
    valid = ~np.isnan(values).any(axis=1)
    points = values[valid]
    on_front = np.ones(len(points), dtype=bool)
    for start in range(0, len(points), 512):
        chunk = points[start:start + 512, None, :]  # (chunk, 1, k) against (1, n, k)
        no_worse = (points[None, :, :] <= chunk).all(axis=2)
        better = (points[None, :, :] < chunk).any(axis=2)
        on_front[start:start + 512] = ~(no_worse & better).any(axis=1)
    mask = np.zeros(len(frame), dtype=bool)
    mask[np.flatnonzero(valid)] = on_front
    return pd.Series(mask, index=frame.index, name="pareto")

