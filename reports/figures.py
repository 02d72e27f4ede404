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

from reports.summary import LATENCY, LATENCY_HIGH, LATENCY_LOW, SIZE, front_mask, is_missing, measured

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


def pareto_chart(trials: pd.DataFrame, x: str, front: str, references: list[dict[str, Any]],
                 log_x: bool = False) -> go.Figure:
    """Test accuracy against a cost for every measured trial.

    Lines: each method's own front (on validation accuracy and ``x``), so methods
    compare at every cost. Diamonds: trials on the front of all methods together
    (the ``front`` column).
    """
    fig = go.Figure()
    placed = trials[measured(trials)]
    palette = colours(trials["method"].dropna())
    scatter = go.Scattergl if len(placed) > WEBGL_ABOVE else go.Scatter
    for method, group in placed.groupby("method"):
        fig.add_trace(scatter(
            x=group[x], y=group["test_acc"], mode="markers", name=method, legendgroup=method,
            marker=dict(color=palette[method], size=np.where(group[front], 12, 7),
                        symbol=np.where(group[front], "diamond", "circle"), opacity=0.8,
                        line=dict(width=np.where(group[front], 1, 0), color="black")),
            error_x=_latency_bars(group) if x == LATENCY else None,
            hovertext=hover_text(group), hoverinfo="text"))
        own = group[front_mask(group, {"val_acc": "max", x: "min"})].sort_values(x)
        fig.add_trace(go.Scatter(
            # Markers too: a front of one trial is a point, and a line alone would not show it.
            x=own[x], y=own["test_acc"], mode="lines+markers", line=dict(color=palette[method], shape="hv", width=2),
            marker=dict(symbol="circle-open", size=14, color=palette[method], line=dict(width=2)),
            name=f"{method} front", legendgroup=method, hoverinfo="skip"))
    for i, ref in enumerate(references):
        fig.add_hline(y=ref["acc"], line=dict(color=ref.get("colour", "black"), dash=ref.get("dash", "dash")),
                      annotation_text=ref["label"],
                      annotation_position=("bottom right", "top left", "bottom left", "top right")[i % 4])
    fig.update_layout(title=f"Accuracy vs {AXIS_TITLES[x].split(' (')[0]}: each method's front (lines), "
                            f"the front of all (diamonds), on validation accuracy",
                      xaxis_title=AXIS_TITLES[x], yaxis_title="test accuracy", yaxis_tickformat=".1%",
                      template="plotly_white", height=480, legend=dict(groupclick="toggleitem"))
    if log_x:
        fig.update_xaxes(type="log")
    focus_accuracy(fig, placed["test_acc"], references)
    return fig


def _latency_bars(group: pd.DataFrame) -> dict[str, Any] | None:
    """Each point's latency interval as a horizontal bar."""
    if LATENCY_LOW not in group or LATENCY_HIGH not in group:
        return None
    return dict(type="data", symmetric=False, array=(group[LATENCY_HIGH] - group[LATENCY]).clip(lower=0),
                arrayminus=(group[LATENCY] - group[LATENCY_LOW]).clip(lower=0), thickness=1, width=0)


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
