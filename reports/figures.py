"""Plotly figures from result tables. Each function takes frames and returns a Figure.

Large studies stay fast: points are drawn one trace per method (not per trial),
learning curves one trace per status with gaps between trials.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from optuna.distributions import BaseDistribution, CategoricalDistribution

from reports.summary import (
    LATENCY,
    LATENCY_HIGH,
    LATENCY_LOW,
    SIZE,
    front_mask,
    is_missing,
    measured,
    teacher_reference,
)

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f")
STATUS_COLOURS = {"completed": "#1f77b4", "stopped": "#ff7f0e", "error": "#d62728", "running": "#2ca02c",
                  "interrupted": "#9467bd"}
WEBGL_ABOVE = 2000  # points; SVG below (renders everywhere), WebGL above (stays fast)
AXIS_TITLES = {LATENCY: "latency (ms, measurement batch)", SIZE: "size (bytes, saved state_dict)",
               "test_acc": "test accuracy", "val_acc": "validation accuracy"}


def colours(names) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def hover_text(trials: pd.DataFrame) -> list[str]:
    """Every point's trial details: id, method, accuracies, cost with the latency's interval, knobs."""
    params = [c for c in trials.columns if c.startswith("param_")]
    lines = []
    for row in trials.to_dict("records"):
        knobs = ", ".join(f"{c[6:]}={_short(row[c])}" for c in params if not is_missing(row[c]))
        lines.append(
            f"<b>{row['trial_id']}</b> ({row['study']}, {row['method']})<br>"
            f"test {_pct(row['test_acc'])}, val {_pct(row['val_acc'])}<br>"
            f"latency {_num(row[LATENCY])} ms{_interval(row)}{_rounds(row)}<br>"
            f"size {_num(row[SIZE] / 1e3 if not is_missing(row[SIZE]) else None)} kB, "
            f"params {_num(row.get('params'))}<br>{row['status']}, {int(row.get('epochs_done') or 0)} epochs<br>"
            f"{knobs}")
    return lines


def _interval(row: dict[str, Any]) -> str:
    low, high = row.get(LATENCY_LOW), row.get(LATENCY_HIGH)
    if is_missing(low) or is_missing(high):
        return ""
    return f" [{_num(low)}–{_num(high)}]"


def _rounds(row: dict[str, Any]) -> str:
    """How the latency was measured: in a window after the search (harness/study/remeasure.py),
    shared by the trials of one network, or in the trial."""
    rounds, shared = row.get("latency_rounds"), row.get("latency_trials")
    words = ["in the trial"] if is_missing(rounds) else [f"{int(rounds)} rounds"]
    if not is_missing(shared) and shared > 1:
        words.append(f"one figure for {int(shared)} trials of this network")
    if not is_missing(row.get("latency_noisy")) and bool(row.get("latency_noisy")):
        words.append("NOISY: rounds stayed far apart")
    return f" ({', '.join(words)})"


TEACHER_COST = {LATENCY: "teacher_latency_ms", SIZE: "teacher_size_bytes"}


def pareto_chart(trials: pd.DataFrame, x: str, front: str, references: list[dict[str, Any]],
                 log_x: bool = False) -> go.Figure:
    """Test accuracy against a cost for every measured trial.

    The cost is a multiple of the teacher's, measured beside it (a study without a teacher
    is held to its data set's), and the teacher is drawn as a point at 1x: the axis spans
    what the students gain, never a zoom onto a few hundredths of a millisecond. Trials
    of one method that share one network (one fingerprint, so one latency and size) are
    one point at their mean test accuracy, with a bar over their range. Lines: each
    method's own front (on validation accuracy and the cost), so methods compare at every
    cost. Diamonds: points on the front of all methods together (the ``front`` column).
    """
    fig = go.Figure()
    placed, title = _relative(trials[measured(trials)], x)
    palette = colours(trials["method"].dropna())
    scatter = go.Scattergl if len(placed) > WEBGL_ABOVE else go.Scatter
    for method, everything in placed.groupby("method"):
        over = everything["feasible"].eq(False) if "feasible" in everything else pd.Series(False, everything.index)
        if over.any():  # completed, but over its study's limits (search.constraints): drawn apart
            apart = one_point_per_network(everything[over], front)
            fig.add_trace(scatter(
                x=apart["_x"], y=apart["test_acc"], mode="markers", name=f"{method}: over its limits",
                legendgroup=method, marker=dict(color=palette[method], size=8, symbol="x-thin-open",
                                                line=dict(width=2, color=palette[method])),
                hovertext=apart["_hover"], hoverinfo="text"))
        group = everything[~over]
        if group.empty:
            continue
        points = one_point_per_network(group, front)
        fig.add_trace(scatter(
            x=points["_x"], y=points["test_acc"], mode="markers", name=method, legendgroup=method,
            marker=dict(color=palette[method], size=np.where(points[front], 12, 7),
                        symbol=np.where(points[front], "diamond", "circle"), opacity=0.8,
                        line=dict(width=np.where(points[front], 1, 0), color="black")),
            error_x=_interval_bars(points) if x == LATENCY else None,
            error_y=dict(type="data", symmetric=False, array=points["_acc_high"] - points["test_acc"],
                         arrayminus=points["test_acc"] - points["_acc_low"], thickness=1, width=4),
            hovertext=points["_hover"], hoverinfo="text"))
        own = points[front_mask(points, {"val_acc": "max", "_x": "min"})].sort_values("_x")
        fig.add_trace(go.Scatter(
            # Markers too: a front of one point is a point, and a line alone would not show it.
            x=own["_x"], y=own["test_acc"], mode="lines+markers", line=dict(color=palette[method], shape="hv", width=2),
            marker=dict(symbol="circle-open", size=14, color=palette[method], line=dict(width=2)),
            name=f"{method} front", legendgroup=method, hoverinfo="skip"))
    teacher_acc = trials["teacher_test_acc"].median() if "teacher_test_acc" in trials else np.nan
    if "_relative" in placed and not is_missing(teacher_acc):
        fig.add_trace(go.Scatter(x=[1.0], y=[teacher_acc], mode="markers+text", name="teacher",
                                 marker=dict(symbol="star", size=16, color="black"), text=["teacher"],
                                 textposition="top center", hovertext=[f"teacher: test {_pct(teacher_acc)}, 1x"],
                                 hoverinfo="text"))
    for i, ref in enumerate(references):
        fig.add_hline(y=ref["acc"], line=dict(color=ref.get("colour", "black"), dash=ref.get("dash", "dash")),
                      annotation_text=ref["label"],
                      annotation_position=("bottom right", "top left", "bottom left", "top right")[i % 4])
    fig.update_layout(title=f"Accuracy vs {AXIS_TITLES[x].split(' (')[0]}: each method's front (lines), "
                            f"the front of all (diamonds), on validation accuracy",
                      xaxis_title=title, yaxis_title="test accuracy", yaxis_tickformat=".1%",
                      template="plotly_white", height=480, legend=dict(groupclick="toggleitem"))
    if log_x:
        fig.update_xaxes(type="log")
    elif "_relative" in placed:
        fig.update_xaxes(rangemode="tozero")  # 0x to past the teacher's 1x
    focus_accuracy(fig, pd.concat([placed["test_acc"], pd.Series([teacher_acc])]), references)
    return fig


def _relative(placed: pd.DataFrame, x: str) -> tuple[pd.DataFrame, str]:
    """The cost as a multiple of the teacher's (``_x``, with its interval), and the axis title;
    the cost itself where no trial has a teacher's figure."""
    column = TEACHER_COST.get(x)
    name = AXIS_TITLES[x].split(" (")[0]
    if column is None or column not in placed or not placed[column].notna().any():
        return placed.assign(_x=placed[x], _low=placed.get(LATENCY_LOW), _high=placed.get(LATENCY_HIGH)), \
            AXIS_TITLES[x]
    reference = teacher_reference(placed, column)  # as the leaderboard holds it
    out = placed.assign(_x=placed[x] / reference, _relative=True)
    if x == LATENCY and LATENCY_LOW in placed and LATENCY_HIGH in placed:
        out = out.assign(_low=placed[LATENCY_LOW] / reference, _high=placed[LATENCY_HIGH] / reference)
    return out, f"{name} (x the teacher's, measured beside it; the teacher is the star at 1x)"


def one_point_per_network(group: pd.DataFrame, front: str) -> pd.DataFrame:
    """One method's points: trials that share a network (its fingerprint) folded into one, at
    their mean test accuracy with their range (``_acc_low``, ``_acc_high``), on the front if
    any of them is; a trial alone keeps its own point."""
    group = group.assign(_acc_low=group["test_acc"], _acc_high=group["test_acc"], _hover=hover_text(group))
    if "network" not in group:
        return group
    shared = group["network"].notna() & group.duplicated("network", keep=False)
    if not shared.any():
        return group
    folded = []
    for network, trials in group[shared].groupby("network"):
        best = trials.sort_values("val_acc", ascending=False).iloc[0].to_dict()
        best.update(test_acc=trials["test_acc"].mean(), val_acc=trials["val_acc"].max(),
                    _acc_low=trials["test_acc"].min(), _acc_high=trials["test_acc"].max(),
                    **{front: bool(trials[front].any())},
                    _hover=(f"<b>{len(trials)} trials of one network</b> ({network}, {best['method']})<br>"
                            f"test {_pct(trials['test_acc'].mean())} mean, {_pct(trials['test_acc'].min())} to "
                            f"{_pct(trials['test_acc'].max())}<br>best on validation: {best['trial_id']}, val "
                            f"{_pct(best['val_acc'])}<br>latency {_num(best[LATENCY])} ms{_interval(best)}<br>"
                            f"size {_num(best[SIZE] / 1e3 if not is_missing(best[SIZE]) else None)} kB"))
        folded.append(best)
    return pd.concat([group[~shared], pd.DataFrame(folded)], ignore_index=True)


def _interval_bars(points: pd.DataFrame) -> dict[str, Any] | None:
    """Each point's latency interval, on the chart's axis, as a horizontal bar."""
    if "_low" not in points or "_high" not in points or points["_low"].isna().all():
        return None
    return dict(type="data", symmetric=False, array=(points["_high"] - points["_x"]).clip(lower=0),
                arrayminus=(points["_x"] - points["_low"]).clip(lower=0), thickness=1, width=0)


def focus_accuracy(fig: go.Figure, accuracies: pd.Series, references: list[dict[str, Any]]) -> None:
    """Zoom the accuracy axis onto the best point (and the reference lines); count what lies below.

    A diverged trial at chance would otherwise squash every front into a line;
    double-clicking the chart shows everything.
    """
    anchors = [*accuracies.dropna().nlargest(1), *(r["acc"] for r in references)]
    if not anchors:
        return
    low = max(0.0, min(anchors) - 0.05)
    below = int((accuracies < low).sum())
    fig.update_yaxes(range=[low, min(1.0, max(anchors) + 0.01)])
    if below:
        fig.add_annotation(text=f"{below} trial(s) below this range: double-click to show all",
                           xref="paper", yref="paper", x=0, y=0, showarrow=False, xanchor="left", yanchor="bottom",
                           font=dict(color="#a40"))


def cube_chart(trials: pd.DataFrame) -> go.Figure:
    """Accuracy, latency and size together, Pareto-optimal trials (all three) as diamonds."""
    fig = go.Figure()
    placed = trials[measured(trials)]
    palette = colours(trials["method"].dropna())
    for method, group in placed.groupby("method"):
        fig.add_trace(go.Scatter3d(
            x=group[LATENCY], y=group[SIZE], z=group["test_acc"], mode="markers", name=method,
            marker=dict(color=palette[method], size=np.where(group["pareto"], 8, 4),
                        symbol=np.where(group["pareto"], "diamond", "circle")),
            hovertext=hover_text(group), hoverinfo="text"))
    fig.update_layout(title="Accuracy, latency and size", template="plotly_white", height=560,
                      scene=dict(xaxis_title="latency (ms)", yaxis_title="size (bytes)", zaxis_title="test accuracy"))
    return fig


def spread_chart(spread: pd.DataFrame, references: list[dict[str, Any]]) -> go.Figure:
    """Per method: mean test accuracy of the selected trials over seeds, with its std."""
    fig = go.Figure()
    labels = spread["method"] + " (" + spread["study"] + ")"
    fig.add_trace(go.Bar(
        x=labels, y=spread["test_acc_mean"], error_y=dict(type="data", array=spread["test_acc_std"].fillna(0)),
        marker_color=[colours(spread["method"])[m] for m in spread["method"]],
        hovertext=[f"{label}<br>mean {_pct(m)} ± {_pct(s)} over {n} seed(s)<br>per seed: {p}"
                   for label, m, s, n, p in zip(labels, spread["test_acc_mean"], spread["test_acc_std"],
                                                spread["seeds"], spread["per_seed"], strict=True)],
        hoverinfo="text", name="selected trial per seed"))
    for ref in references:
        fig.add_hline(y=ref["acc"], line=dict(color=ref.get("colour", "black"), dash=ref.get("dash", "dash")),
                      annotation_text=ref["label"])
    low = np.nanmin([*(spread["test_acc_mean"] - spread["test_acc_std"].fillna(0)), *(r["acc"] for r in references)]) \
        if len(spread) else 0
    fig.update_layout(title="Spread over seeds: the best-on-validation trial of each seed's search",
                      yaxis_title="test accuracy", yaxis_tickformat=".1%", template="plotly_white", height=420,
                      yaxis_range=[max(0.0, low - 0.02), 1.0])
    return fig


def learning_curves(trials: pd.DataFrame, epochs: pd.DataFrame, title: str) -> go.Figure:
    """Validation accuracy per epoch for every trial; an X where ASHA stopped one."""
    fig = go.Figure()
    if epochs.empty or "val_acc" not in epochs:
        fig.update_layout(title=f"{title}: no epochs recorded yet", template="plotly_white", height=300)
        return fig
    status = trials.set_index("trial_id")["status"]
    curves = epochs.sort_values(["trial_id", "epoch"]).assign(
        status=lambda f: f["trial_id"].map(status).fillna("unknown"))
    line = go.Scattergl if len(curves) > WEBGL_ABOVE else go.Scatter
    for state, group in curves.groupby("status"):
        # One trace per status, trials separated by gaps: 1,000 trials stay a handful of traces.
        xs: list[Any] = []
        ys: list[Any] = []
        ids: list[str] = []
        for trial_id, trial in group.groupby("trial_id", sort=False):
            xs += [*trial["epoch"], None]
            ys += [*trial["val_acc"], None]
            ids += [trial_id] * (len(trial) + 1)
        fig.add_trace(line(x=xs, y=ys, mode="lines", name=f"{state} ({group['trial_id'].nunique()})",
                           line=dict(color=STATUS_COLOURS.get(state, "#7f7f7f"), width=1), opacity=0.6,
                           hovertext=ids, hoverinfo="text+x+y"))
    ends = curves[curves["status"].eq("stopped")].groupby("trial_id").tail(1)
    if len(ends):
        fig.add_trace(line(x=ends["epoch"], y=ends["val_acc"], mode="markers", name="stopped by ASHA here",
                                   marker=dict(symbol="x", color=STATUS_COLOURS["stopped"], size=8),
                                   hovertext=ends["trial_id"], hoverinfo="text+x+y"))
    fig.update_layout(title=f"{title}: learning curves", xaxis_title="epoch (report)",
                      yaxis_title="validation accuracy", yaxis_tickformat=".0%", template="plotly_white", height=380)
    return fig


def parallel_coordinates(trials: pd.DataFrame, space: dict[str, BaseDistribution], title: str) -> go.Figure | None:
    """The searched knobs of every finished trial, coloured by validation accuracy."""
    done = trials[trials["val_acc"].notna() & trials["status"].isin(["completed", "stopped"])]
    names = [n for n in space if f"param_{n}" in done]
    if done.empty or not names:
        return None
    dimensions = []
    for name in names:
        values, dist = done[f"param_{name}"], space[name]
        if isinstance(dist, CategoricalDistribution):
            levels = [str(c) for c in dist.choices]
            codes = {level: i for i, level in enumerate(levels)}
            dimensions.append(dict(label=name, values=values.astype(str).map(codes),
                                   tickvals=list(range(len(levels))), ticktext=levels))
        elif getattr(dist, "log", False):
            dimensions.append(dict(label=f"log10 {name}", values=np.log10(values.astype(float))))
        else:
            dimensions.append(dict(label=name, values=values.astype(float)))
    dimensions.append(dict(label="val_acc", values=done["val_acc"]))
    fig = go.Figure(go.Parcoords(line=dict(color=done["val_acc"], colorscale="Viridis", showscale=True),
                                 dimensions=dimensions))
    fig.update_layout(title=f"{title}: searched knobs (completed and stopped trials, last validation accuracy)",
                      template="plotly_white", height=420)
    return fig


def importance_chart(importances: dict[str, float], title: str) -> go.Figure:
    names = list(importances)[::-1]
    fig = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h"))
    fig.update_layout(title=f"{title}: hyperparameter importance for validation accuracy (PED-ANOVA)",
                      xaxis_title="importance", template="plotly_white", height=160 + 36 * len(names),
                      margin=dict(l=140))
    fig.update_yaxes(tickmode="array", tickvals=names, ticktext=names, automargin=True)
    return fig


def _pct(value: Any) -> str:
    return "n/a" if is_missing(value) else f"{value:.2%}"


def _num(value: Any) -> str:
    return "n/a" if is_missing(value) else f"{value:,.3g}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
