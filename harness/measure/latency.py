"""Latency of a set of networks in one measurement window.

One window is one process measuring every network it is given in interleaved
rounds: round r times each network once, in turn, so that whatever the machine
does meanwhile (a neighbour's job, frequency scaling) falls on every network
alike. Each network's figure is the median of its rounds, with a distribution-free
confidence interval for that median (order statistics of the rounds), so that
two networks whose intervals overlap are not told apart.

The caller keys the networks by what decides their speed (harness.study.remeasure: the
structural fingerprint and the measurement settings), so identical networks are
timed once and share one figure. A network whose rounds stay further apart than
``max_spread`` is measured again, with the others that are noisy, up to
``attempts`` times; the attempt with the narrowest interval is kept, and the
figure is flagged ``latency_noisy`` if even that one is too wide.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from harness.measure.cost import measure_latency
from harness.measure.runtimes import Session

Figures = dict[str, Any]
Timer = Callable[[Any], dict[str, float]]  # one pass of one network: latency_ms (and latency_b1_ms)


@dataclass(frozen=True)
class TimedNetwork:
    """A network ready to time, and how (the same settings the trial measured with)."""

    model: nn.Module
    input_shape: tuple[int, ...]
    batch_size: int
    warmup: int
    repeats: int


def time_once(network: TimedNetwork) -> dict[str, float]:
    device = next(network.model.parameters(), torch.empty(0)).device
    return measure_latency(network.model, network.input_shape, device, network.batch_size,
                           network.warmup, network.repeats)


def median_interval(values: list[float], confidence: float = 0.9) -> tuple[float, float]:
    """The narrowest symmetric order-statistic interval [x(k), x(n+1-k)] holding the median
    with at least ``confidence`` (binomial(n, 1/2)); the whole range when n is too small for
    that (5 rounds: the range, 94%)."""
    ordered = sorted(values)
    n = len(ordered)
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _binomial_cdf(k + 1, n) >= confidence:
        k += 1  # x(k+1)..x(n-k) still holds the median often enough
    return ordered[k - 1], ordered[n - k]


def _binomial_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k - 1): the chance that fewer than k rounds fall below the median."""
    return sum(math.comb(n, i) for i in range(k)) / 2 ** n


def summarise_rounds(runs: list[dict[str, float]]) -> Figures:
    """One network's rounds: the medians, the interval of the batch latency and its width
    relative to the median (``latency_spread``)."""
    values = [r["latency_ms"] for r in runs]
    low, high = median_interval(values)
    median = statistics.median(values)
    b1 = statistics.median(r["latency_b1_ms"] for r in runs) if "latency_b1_ms" in runs[0] else math.nan
    return {"latency_ms": median, "latency_b1_ms": b1,
            "latency_low_ms": low, "latency_high_ms": high, "latency_rounds": len(runs),
            "latency_spread": (high - low) / median if median > 0 else math.nan}


def measure_window(networks: dict[str, Any], rounds: int, max_spread: float = 0.25,
                   attempts: int = 3, timer: Timer = time_once) -> dict[str, Figures]:
    """Per key: the figures of :func:`summarise_rounds`, ``latency_attempts`` (how many
    times its rounds were taken) and ``latency_noisy`` (still wider than ``max_spread``)."""
    if rounds < 1:
        raise ValueError(f"a window needs at least one round, got {rounds}")
    figures: dict[str, Figures] = {}
    pending = list(networks)
    for attempt in range(1, max(1, attempts) + 1):
        runs: dict[str, list[dict[str, float]]] = {key: [] for key in pending}
        for _ in range(rounds):
            for key in pending:  # interleaved: each round visits every network once
                runs[key].append(timer(networks[key]))
        for key in pending:
            fresh = summarise_rounds(runs[key])
            if key not in figures or _narrower(fresh, figures[key]):
                figures[key] = fresh
            figures[key]["latency_attempts"] = attempt
        pending = [key for key in pending if not figures[key]["latency_spread"] <= max_spread]
        if not pending:
            break
    for figure in figures.values():
        figure["latency_noisy"] = not figure["latency_spread"] <= max_spread
    return figures


def runtime_window(models: dict[str, tuple[nn.Module, tuple[int, ...]]], runtime: str, threads: int,
                   batches: list[int], rounds: int, warmup: int, repeats: int, max_spread: float = 0.25,
                   attempts: int = 3) -> dict[str, dict[int, Figures]]:
    """Per key, per batch size: the figures of :func:`measure_window` of each network set up in
    ``runtime`` at ``threads`` threads (harness.measure.runtimes), every distinct network
    interleaved in each round; one window per batch size."""
    sessions = {key: Session(model, shape, runtime, threads) for key, (model, shape) in models.items()}
    return session_window(sessions, batches, rounds, warmup, repeats, max_spread, attempts)


def session_window(sessions: dict[str, Session], batches: list[int], rounds: int, warmup: int, repeats: int,
                   max_spread: float = 0.25, attempts: int = 3) -> dict[str, dict[int, Figures]]:
    """:func:`runtime_window` of sessions already set up."""
    out: dict[str, dict[int, Figures]] = {key: {} for key in sessions}
    for batch in batches:
        def timer(session: Session, batch: int = batch) -> dict[str, float]:
            return {"latency_ms": session.latency_ms(batch, warmup, repeats)}

        for key, figures in measure_window(sessions, rounds, max_spread, attempts, timer).items():
            out[key][batch] = figures
    return out


def _narrower(new: Figures, old: Figures) -> bool:
    return not old["latency_spread"] <= new["latency_spread"]  # NaN (a zero median) never wins
