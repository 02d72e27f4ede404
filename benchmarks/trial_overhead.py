"""Per-trial overhead of Ray Tune, and the speed-up from running trials in parallel.

A study of N short ``scratch`` trials on the embedded digits set (no download, no
teacher) goes through the harness's real path (``run_sweep``: Tune, Optuna, ASHA,
a checkpoint and a Parquet flush at every report) three times, and the same N
trial configurations also run through ``run_trial`` in one plain Python loop in
this process:

- plain loop, one trial after the other, each with all of the machine's threads;
- Tune, one trial at a time, each holding all CPUs (``resources.cpu`` = cores);
- Tune, one trial per core in parallel (``resources.cpu: 1``).

A Tune study's time is split at the first trial's start (``started_at`` in
trials.parquet): before it, the study's start-up (Tune starts its trial workers,
which import torch and the harness), paid once per seed; after it, the trials,
until the last one ends. Overhead per trial = (Tune's trials one at a time -
the plain loop) / N. Ray's own start is timed apart. ASHA's grace period is the
full budget here, so no trial is stopped and every run does the same work.

    uv run python benchmarks/trial_overhead.py [--trials 12] [--epochs 5] [--repeats 3] [--smoke] [--json FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.study.cluster import configure_ray  # noqa: E402

configure_ray(None)  # a local Ray, set up as `python -m harness sweep` does, before ray is imported

from benchmarks.common import Run, common_options  # noqa: E402
from harness.data.datasets import load_splits  # noqa: E402
from harness.spec.load import parse_spec  # noqa: E402
from harness.study.sweep import run_sweep  # noqa: E402
from harness.study.trial import run_trial  # noqa: E402

PROMISES = {"ray_start": "s", "plain_loop": "s", "study": "s", "startup": "s", "trials": "s",
            "overhead_per_trial": "s", "speedup": "x"}


def study_spec(trials: int, epochs: int, cpu: float, concurrent: int, storage: str):
    return parse_spec({
        "study": f"overhead-cpu{cpu:g}-x{concurrent}", "method": "scratch",
        "dataset": {"name": "digits"}, "student": {"model": "lenet5_half"},
        "budget": {"epochs": epochs},
        "search": {"searcher": "random", "num_samples": trials, "max_concurrent": concurrent,
                   "space": {"lr": {"loguniform": [0.01, 0.05]}, "batch_size": 32}},
        "asha": {"grace_period": epochs},
        "resources": {"cpu": cpu}, "storage": storage,
    })


def timed_sweep(spec) -> tuple[dict[str, float], pd.DataFrame]:
    """The study's wall time, and its parts: start-up until the first trial starts, then the trials."""
    start = time.time()
    with contextlib.redirect_stdout(io.StringIO()):  # the progress lines are not what we time
        folder = run_sweep(spec)
    end = time.time()
    trials = pd.read_parquet(folder / "trials.parquet")
    assert (trials["status"] == "completed").all(), trials[["trial_id", "status", "error"]]
    first = pd.to_datetime(trials["started_at"]).min().timestamp()
    last = pd.to_datetime(trials["ended_at"]).max().timestamp()
    return {"study": end - start, "startup": first - start, "trials": last - first}, trials


def timed_plain_loop(spec, configs: list[dict]) -> float:
    data = load_splits("digits")
    start = time.perf_counter()
    for config in configs:
        run_trial(config, spec, seed=0, data=data, teacher_state=None, report=lambda metrics: None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="N, trials in the large study")
    parser.add_argument("--epochs", type=int, default=5, help="reports per trial")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved rounds of the three runs; medians are printed")
    args = common_options(parser).parse_args()
    if args.smoke:
        args.trials, args.epochs, args.repeats = 2, 1, 1
    run = Run(__file__, PROMISES, args)
    cores = os.cpu_count() or 1
    import ray
    import torch

    from harness.measure.cost import device_name

    load_splits("digits")  # imports and the data set's first read, paid by neither side below
    runs: dict[str, list[dict[str, float]]] = {"serial": [], "parallel": [], "plain": []}
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - start
        for _ in range(args.repeats):  # interleaved: this machine's speed drifts by 20% and more
            for mode, cpu, concurrent in (("serial", cores, 1), ("parallel", 1, cores)):
                seconds, trials = timed_sweep(study_spec(args.trials, args.epochs, cpu, concurrent, storage))
                runs[mode].append(seconds)
            configs = [{k: v for k, v in json.loads(c).items() if k == "lr"} for c in trials["config"]]
            runs["plain"].append({"trials": timed_plain_loop(
                study_spec(args.trials, args.epochs, cores, 1, storage), configs)})
        ray.shutdown()

    def median(mode: str, part: str) -> float:
        return statistics.median(run[part] for run in runs[mode])

    def spread(mode: str, part: str) -> str:
        values = [run[part] for run in runs[mode]]
        return f"{min(values):.1f}-{max(values):.1f}"

    n = args.trials
    plain, serial, parallel = (median(mode, "trials") for mode in ("plain", "serial", "parallel"))
    print(f"machine: {device_name(torch.device('cpu')).rsplit(' (', 1)[0]}, {cores} cores; {n} scratch trials of "
          f"LeNet-5-half on digits, {args.epochs} reports each (a checkpoint and a result row per report); "
          f"medians of {args.repeats} interleaved rounds (range)")
    print(f"{'Ray start (once per study)':<40} {ray_start:7.2f} s")
    print(f"{'':<40} {'whole study':>20} {'start-up':>18} {'trials':>18}")
    print(f"{'plain loop, one at a time':<40} {'':>20} {'':>18} {plain:7.2f} s ({spread('plain', 'trials')})")
    for mode, label in (("serial", "Tune, one at a time (all cores each)"),
                        ("parallel", f"Tune, {cores} at a time (1 core each)")):
        cells = [f"{median(mode, part):7.2f} s ({spread(mode, part)})" for part in ("study", "startup", "trials")]
        print(f"{label:<40} {cells[0]:>20} {cells[1]:>18} {cells[2]:>18}")
    print(f"overhead per trial: (Tune one at a time - plain loop) / {n} = {(serial - plain) / n:.2f} s "
          f"(from the first trial's start to the last one's end)")
    print(f"start-up per study and seed (Tune starts trial workers: a process, torch and harness imports): "
          f"{median('serial', 'startup'):.1f} s")
    print(f"speed-up of {cores} trials at a time over one at a time: {serial / parallel:.2f}x for the trials; "
          f"{median('serial', 'study') / median('parallel', 'study'):.2f}x for the whole study with its start-up")
    run.figure("ray_start", ray_start)
    run.figure("plain_loop", plain, trials=n)
    rows = [["plain loop, one at a time", "", "", f"{plain:.2f} s ({spread('plain', 'trials')})"]]
    for mode, label in (("serial", "Tune, one at a time (all cores each)"),
                        ("parallel", f"Tune, {cores} at a time (1 core each)")):
        for part in ("study", "startup", "trials"):
            run.figure(part, median(mode, part), mode=mode, trials=n)
        rows.append([label, *(f"{median(mode, part):.2f} s ({spread(mode, part)})"
                              for part in ("study", "startup", "trials"))])
    run.figure("overhead_per_trial", (serial - plain) / n)
    run.figure("speedup", serial / parallel, part="trials")
    run.figure("speedup", median("serial", "study") / median("parallel", "study"), part="study")
    run.table("runs", ["run", "whole study", "start-up", "trials"], rows)
    run.table("summary", ["what", "figure"], [
        [f"overhead per trial (Tune one at a time less the plain loop, over {n})", f"**{(serial - plain) / n:.2f} s**"],
        [f"{cores} trials at a time against one at a time: the trials / the whole study",
         f"**{serial / parallel:.2f}x** / {median('serial', 'study') / median('parallel', 'study'):.2f}x"],
        ["Ray's own start, once per study", f"{ray_start:.1f} s"]])
    run.finish()


if __name__ == "__main__":
    main()
