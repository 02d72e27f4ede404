"""One network, one latency: how far two windows disagree, and what one window tells apart.

Three parts, all in this process, on one thread as a 1-CPU trial measures:

1. Studies run apart. Window A times the digits student (LeNet-5-half) and its
   teacher (LeNet-5), as a `kd` study's sweep does at its end; window B, right
   after, does the same, as the `scratch` study's sweep does. Repeated ``--pairs``
   times: how far apart the same network comes out between the two windows, and
   how often a ranking by medians would call one study's network faster, against
   how often the intervals (harness/measure/latency.py) do.
2. One window over everything a leaderboard would measure: the student, the
   teacher and LeNet-5 pruned to several widths (what C2S2 leaves): each one's
   median and interval, and which are measurably faster than the student.
3. Cost: timing one network once per window against timing it once per trial
   (``--trials`` trials of one architecture, as before fingerprints).

    uv run python benchmarks/latency_windows.py [--pairs 10] [--rounds 5] [--trials 16] [--smoke] [--json FILE]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Run, common_options  # noqa: E402
from harness.measure.latency import TimedNetwork, measure_window  # noqa: E402
from harness.networks.zoo import create_model  # noqa: E402

SHAPE = (1, 28, 28)
PROMISES = {"window_gap_median": "%", "window_gap_max": "%", "faster_by_medians": "pairs",
            "faster_by_intervals": "pairs", "latency": "ms", "interval_width": "%", "window": "s",
            "cost_by_fingerprint": "s", "cost_per_trial": "s"}


def network(name: str, width: float = 1.0) -> TimedNetwork:
    return TimedNetwork(create_model(name, 10, width, SHAPE).eval(), SHAPE, 64, 5, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10, help="pairs of windows run one after the other")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=16, help="trials of one architecture, for the cost")
    args = common_options(parser).parse_args()
    if args.smoke:
        args.pairs, args.rounds, args.trials = 1, 2, 2
    run = Run(__file__, PROMISES, args)
    torch.set_num_threads(1)
    student, teacher = network("lenet5_half"), network("lenet5")

    print(f"1. the student measured in two windows run one after the other, {args.pairs} pairs, "
          f"{args.rounds} rounds each")
    gaps, point_calls, interval_calls = [], 0, 0
    for _ in range(args.pairs):
        a, b = (measure_window({"student": student, "teacher": teacher}, args.rounds)["student"] for _ in "ab")
        gaps.append(abs(a["latency_ms"] - b["latency_ms"]) / min(a["latency_ms"], b["latency_ms"]))
        point_calls += a["latency_ms"] != b["latency_ms"]
        interval_calls += a["latency_high_ms"] < b["latency_low_ms"] or b["latency_high_ms"] < a["latency_low_ms"]
    print(f"   gap between the two windows' medians: median {statistics.median(gaps):.1%}, max {max(gaps):.1%}")
    run.figure("window_gap_median", 100 * statistics.median(gaps), pairs=args.pairs)
    run.figure("window_gap_max", 100 * max(gaps), pairs=args.pairs)
    run.figure("faster_by_medians", point_calls, of=args.pairs)
    run.figure("faster_by_intervals", interval_calls, of=args.pairs)
    print(f"   one study called faster than the other: by medians {point_calls}/{args.pairs}, "
          f"by intervals {interval_calls}/{args.pairs}; in one window (fingerprints): 0/{args.pairs}")

    print("2. one window: the student, the teacher and LeNet-5 pruned to several widths")
    networks = {"lenet5 (teacher)": teacher, "lenet5_half (student)": student,
                **{f"lenet5 pruned to {w:.0%}": network("lenet5", w) for w in (0.8, 0.6, 0.4, 0.25)}}
    started = time.perf_counter()
    figures = measure_window(networks, args.rounds)
    seconds = time.perf_counter() - started
    base = figures["lenet5_half (student)"]
    rows = []
    for name, f in figures.items():
        faster = f["latency_high_ms"] < base["latency_low_ms"]
        slower = base["latency_high_ms"] < f["latency_low_ms"]
        verdict = ("the reference" if f is base else "faster than the student" if faster
                   else "slower than the student" if slower else "not told apart from the student")
        print(f"   {name:<24} {f['latency_ms']:6.3f} ms [{f['latency_low_ms']:.3f}-{f['latency_high_ms']:.3f}] "
              f"width {f['latency_spread']:4.0%}, attempts {f['latency_attempts']}"
              f"{', NOISY' if f['latency_noisy'] else ''}: {verdict}")
        run.figure("latency", f["latency_ms"], network=name)
        run.figure("interval_width", 100 * f["latency_spread"], network=name)
        rows.append([name, f"{f['latency_ms']:.3f} [{f['latency_low_ms']:.3f}-{f['latency_high_ms']:.3f}]",
                     f"{f['latency_spread']:.0%}", verdict])
    run.table("one_window", ["network", "ms [interval]", "interval width", "against the student"], rows)
    run.figure("window", seconds, networks=len(networks))
    print(f"   {len(networks)} networks, {seconds:.1f} s")

    print(f"3. cost for {args.trials} trials of one architecture and their teacher, {args.rounds} rounds")
    started = time.perf_counter()
    measure_window({"student": student, "teacher": teacher}, args.rounds, attempts=1)
    once = time.perf_counter() - started
    per_trial = {f"trial {i}": student for i in range(args.trials)}
    per_trial.update({f"teacher {i}": teacher for i in range(args.trials)})
    started = time.perf_counter()
    measure_window(per_trial, args.rounds, attempts=1)
    every = time.perf_counter() - started
    print(f"   by fingerprint {once:.1f} s, per trial (each followed by its teacher) {every:.1f} s: "
          f"{every / once:.1f}x")
    run.figure("cost_by_fingerprint", once, trials=args.trials)
    run.figure("cost_per_trial", every, trials=args.trials)
    run.table("two_windows", ["what", "figure"], [
        ["the student's medians in two windows, gap (median over pairs; max)",
         f"**{statistics.median(gaps):.1%}** (max {max(gaps):.1%})"],
        ["one study's network called faster than the other's, by medians", f"{point_calls} of {args.pairs}"],
        ["the same, by intervals (apart)", f"{interval_calls} of {args.pairs}"],
        ["the same, one window by fingerprint", f"0 of {args.pairs}"],
        [f"{len(networks)} networks in one window", f"{seconds:.1f} s"],
        [f"{args.trials} trials of one architecture and their teacher: by fingerprint / each trial with its teacher",
         f"{once:.1f} s / {every:.1f} s: **{every / once:.1f}x** less"]])
    run.finish()


if __name__ == "__main__":
    main()
