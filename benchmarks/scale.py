"""How the harness's driver scales with the size of a study, against Ray Tune alone.

N trials of a method that does no real work (benchmarks/sleeper: each of R reports
waits ``--seconds`` and takes a few SGD steps, so ASHA has choices to make) run
twice per N, interleaved, in one process and one Ray:

- through ``run_sweep``, as ``harness sweep --progress quiet`` runs them;
- through a plain ``tune.Tuner`` with the same trainable, the same Optuna searcher
  and ASHA scheduler (the harness's own), the same concurrency, and Tune's defaults
  for everything else (its loggers, its experiment snapshot period).

It prints per run the wall time, the harness/Tune ratio, the driver's CPU seconds per
trial (this process: Tune's loop, the callbacks, the writer; not Ray's own daemons
nor the trials), the part of that CPU time spent in the searcher's suggestions,
the driver's peak RSS, Tune's experiment snapshots (calls of its
checkpoint step, most of which find the period not yet over, and their seconds), and
the peak disk use of the run's folder (sampled every 10 s); then the cost of one results flush at the
largest N (and at ``--flush-at``), and the searcher's time per suggestion as the
trials it models grow.

A side that fails (a trial that errs or is lost, fewer trials than asked) ends the script
with exit status 1 and says which side: a ratio against a failed run would mean nothing.

    uv run python benchmarks/scale.py [--trials 250 1000 4000] [--reports 5] [--seconds 0.2] [--smoke] [--json FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
SLEEPER = Path(__file__).resolve().parent / "sleeper"
sys.path.insert(0, str(ROOT))

from harness.study.cluster import configure_ray  # noqa: E402

configure_ray(None)  # before ray is imported, as `harness sweep` does

from benchmarks.common import Run, common_options, side_failed  # noqa: E402
from harness.spec.load import parse_spec  # noqa: E402

PROMISES = {"wall": "s", "harness_over_tune": "x", "driver_cpu_per_trial": "s", "searcher_cpu_per_trial": "s",
            "peak_rss": "MB", "snapshot_checks": "calls", "snapshot_time": "s", "peak_disk": "MB",
            "flush_median": "ms", "flush_p99": "ms", "flush_max": "ms", "suggestion": "ms"}
CONCURRENT = 8  # trials at once: each holds a quarter of a CPU, since it mostly waits


def study_spec(trials: int, reports: int, seconds: float, storage: str):
    return parse_spec({
        "study": f"scale-{trials}", "method": "sleeper:Sleep", "code": [str(SLEEPER)],
        "dataset": {"name": "digits"}, "student": {"model": "lenet5_half", "width": 0.5},
        "budget": {"epochs": reports},
        "asha": {"grace_period": 1, "reduction_factor": 3, "stop_at_chance": False},
        "measure": {"repeats": 2, "warmup": 1, "rounds": 0},
        "resources": {"cpu": 2 / CONCURRENT},
        "search": {"searcher": "tpe", "num_samples": trials, "max_concurrent": CONCURRENT,
                   "space": {"lr": {"loguniform": [0.01, 0.5]}, "warmup_epochs": 0, "steps": 10,
                             "seconds": seconds, "batch_size": 64}},
        "storage": storage,
    })


class DriverMeter:
    """Wall time, this process's CPU time, its peak resident memory, the time Tune spent
    saving experiment snapshots, and the peak disk use of the run's folder."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def __enter__(self):
        self.peak, self.disk, self._done = 0, 0, threading.Event()
        SNAPSHOTS.update(count=0, seconds=0.0)
        SUGGESTIONS.update(count=0, seconds=0.0)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0, self.wall0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
        return self

    def __exit__(self, *exc):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.perf_counter() - self.wall0
        self.cpu = usage.ru_utime + usage.ru_stime - self.cpu0
        self._done.set()
        self._thread.join()
        self.disk = max(self.disk, disk_use(self.folder))

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        ticks = 0
        while not self._done.wait(0.25):
            rss = int(Path("/proc/self/statm").read_text().split()[1]) * page
            self.peak = max(self.peak, rss)
            ticks += 1
            if ticks % 40 == 0:  # every 10 s: walking thousands of checkpoint folders costs CPU too
                self.disk = max(self.disk, disk_use(self.folder))


def disk_use(folder: Path) -> int:
    total = 0
    for path, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(path, name)).st_size
    return total


# Tune's experiment snapshots (TuneController.checkpoint), wall seconds; the searcher's
# suggestions (Optuna's sampler: TPE's cost grows with the trials it models), CPU seconds.
SNAPSHOTS = {"count": 0, "seconds": 0.0}
SUGGESTIONS = {"count": 0, "seconds": 0.0}


def tally_calls(owner: type, name: str, tally: dict[str, float], clock=time.perf_counter) -> None:
    """Wrap ``owner.name`` so that each call in this driver adds to ``tally``: one call and its time on ``clock``."""
    original = getattr(owner, name)

    def timed(self, *args, **kwargs):
        start = clock()
        try:
            return original(self, *args, **kwargs)
        finally:
            tally["count"] += 1
            tally["seconds"] += clock() - start

    setattr(owner, name, timed)


@contextlib.contextmanager
def tune_defaults():
    """Tune as a user of Tune alone gets it: the harness's settings of Tune undone."""
    saved = {k: os.environ.pop(k) for k in ("TUNE_GLOBAL_CHECKPOINT_S", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS")
             if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def run_harness(spec, storage: str) -> None:
    import pandas as pd

    from harness.study.sweep import run_sweep

    with contextlib.redirect_stdout(io.StringIO()):
        folder = run_sweep(spec, storage=storage, progress="quiet")
    trials = pd.read_parquet(folder / "trials.parquet")
    failed = trials[trials["status"].isin(["error", "lost"])]
    if len(failed) or len(trials) < spec.search.num_samples:  # a ratio against a failed run means nothing
        side_failed("harness", f"{len(failed)} of {len(trials)} trials did not end "
                               f"({failed['error'].dropna().head(1).tolist() or 'no error recorded'})")


def run_tune(spec, storage: str) -> None:
    import ray
    from ray import tune

    from harness.data.datasets import load_dataset
    from harness.store.location import open_location
    from harness.study.search import make_scheduler, make_searcher
    from harness.study.sweep import trial_splits, trials_that_fit, tune_trial

    with contextlib.redirect_stdout(io.StringIO()):
        shared = {"data": ray.put(trial_splits(spec, load_dataset(spec.dataset))), "teacher": None}
    folder = Path(storage) / spec.study
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, spec=spec, seed=0, shared=shared, study=open_location(folder)),
        {"cpu": spec.resources.cpu, "gpu": 0})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=make_searcher(spec, 0), scheduler=make_scheduler(spec),
                                    num_samples=spec.search.num_samples, reuse_actors=True,
                                    max_concurrent_trials=spec.search.max_concurrent or trials_that_fit(spec)),
        run_config=tune.RunConfig(name="tune", storage_path=str(folder), verbose=0))
    with tune_defaults():
        results = tuner.fit()
    if results.num_errors or results.num_terminated < spec.search.num_samples:
        first = next((r.error for r in results if r.error is not None), None)
        cause = (str(first).strip().splitlines() or ["?"])[-1] if first is not None else "no error recorded"
        side_failed("Tune", f"{results.num_errors} of {len(results)} trials raised ({cause})")


def flush_cost(trials: int, reports: int) -> dict[str, float]:
    """The results writer driven directly: every event of ``trials`` trials of ``reports``
    reports each, with a flush at each start, each end and every 10 reports (Tune's
    snapshots); the time of each flush, and within it the time of the tier merges
    (rewrites of earlier parts: harness/store/tables.py), so that the new work shows apart."""
    from harness.store.tables import PartTable
    from harness.study.results import ResultsWriter

    spec = parse_spec({"study": "flush", "method": "scratch", "student": {"model": "lenet5_half"},
                       "budget": {"epochs": reports}, "asha": {"grace_period": 1},
                       "search": {"num_samples": trials, "space": {"lr": 0.01}}})
    times, new_work, merging = [], [], [0.0]
    merge = PartTable._merge_full_tiers

    def timed_merge(self):
        start = time.perf_counter()
        merge(self)
        merging[0] += time.perf_counter() - start

    PartTable._merge_full_tiers = timed_merge
    try:
        with tempfile.TemporaryDirectory() as folder:
            writer = ResultsWriter(spec, Path(folder), None)

            def timed(event, *args):
                merging[0], start = 0.0, time.perf_counter()
                event(*args)
                times.append(time.perf_counter() - start)
                new_work.append(times[-1] - merging[0])

            for i in range(trials):
                trial = SimpleNamespace(trial_id=f"{i:06d}", config={"lr": 0.01}, last_result={})
                timed(writer.on_trial_start, 0, [], trial)
                for epoch in range(1, reports + 1):
                    writer.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": 0.5, "val_loss": 1.0,
                                                          "train_loss": 1.0, "training_iteration": epoch})
                    if (i * reports + epoch) % 10 == 0:
                        timed(writer.get_state)
                trial.last_result = {"training_iteration": reports, "epoch": reports, "val_acc": 0.5,
                                     "test_acc": 0.5}
                timed(writer.on_trial_complete, 0, [], trial)
            start = time.perf_counter()
            writer.compact()
            compact = time.perf_counter() - start
    finally:
        PartTable._merge_full_tiers = merge
    merges = sorted(t - n for t, n in zip(times, new_work, strict=True) if t - n > 1e-4)
    times.sort()
    new_work.sort()
    return {"median_ms": 1000 * statistics.median(times), "p99_ms": 1000 * times[int(0.99 * len(times))],
            "max_ms": 1000 * times[-1], "total_s": sum(times), "flushes": len(times), "compact_s": compact,
            "new_median_ms": 1000 * statistics.median(new_work),
            "new_p99_ms": 1000 * new_work[int(0.99 * len(new_work))], "new_max_ms": 1000 * new_work[-1],
            "merges": len(merges), "merge_max_ms": 1000 * merges[-1] if merges else 0.0,
            "merge_s": sum(merges)}


def suggestion_cost(sizes: list[int], searcher: str) -> dict[int, float]:
    """Milliseconds per suggestion of the harness's sampler (``tpe``, ``random``) once it
    models n finished trials, on search_spaces/kd.yaml's space (four knobs, one model)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from harness.study.search import make_sampler

    spec = study_spec(max(sizes), 5, 0.0, tempfile.gettempdir())
    spec = dataclasses.replace(spec, search=dataclasses.replace(spec.search, searcher=searcher))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec, 0))
    space = {"lr": FloatDistribution(0.004, 0.012, log=True), "tau": FloatDistribution(1.0, 5.0),
             "alpha": FloatDistribution(0.1, 0.9), "batch_size": CategoricalDistribution([32, 64])}
    costs = {}
    for n in range(max(sizes) + 1):
        if n in sizes:
            start = time.perf_counter()
            for _ in range(10):
                study.tell(study.ask(space), 0.5)
            costs[n] = 100 * (time.perf_counter() - start)  # ms per suggestion (10 of them)
        else:
            trial = study.ask(space)
            study.tell(trial, float(trial.params["tau"] * trial.params["alpha"]))
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--reports", type=int, default=5, help="reports per trial (default: 5)")
    parser.add_argument("--seconds", type=float, default=0.2, help="wait per report (default: 0.2)")
    parser.add_argument("--flush-at", default="10000x20", help="also time the writer at TRIALSxREPORTS")
    args = common_options(parser).parse_args()
    if args.smoke:
        args.trials, args.reports, args.seconds, args.flush_at = [12], 2, 0.05, "100x5"
    run = Run(__file__, PROMISES, args)

    from harness.study.cluster import connect

    connect(None, [str(SLEEPER)], worker_lines=False)
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.optuna import OptunaSearch

    tally_calls(TuneController, "checkpoint", SNAPSHOTS)
    tally_calls(OptunaSearch, "suggest", SUGGESTIONS, clock=time.thread_time)
    print(f"{os.cpu_count()} CPUs, {CONCURRENT} trials at once, {args.reports} reports of "
          f"{args.seconds} s each per trial")
    with tempfile.TemporaryDirectory() as storage:  # the trial workers start once, before any timed run
        run_harness(study_spec(min(16, min(args.trials)), args.reports, args.seconds, storage), storage)
    print(f"{'trials':>7} {'run':>8} {'wall s':>8} {'ratio':>6} {'driver CPU s/trial':>19} {'of it searcher':>15} "
          f"{'peak RSS MB':>12} {'snapshot checks, s':>19} {'peak disk MB':>13}")
    rows = []
    for i, n in enumerate(args.trials):
        walls = {}
        sides = [("harness", run_harness), ("Tune", run_tune)]
        for name, side in sides if i % 2 == 0 else sides[::-1]:  # alternate which goes first
            with tempfile.TemporaryDirectory() as storage, DriverMeter(storage) as meter:
                side(study_spec(n, args.reports, args.seconds, storage), storage)
            walls[name] = meter.wall
            ratio = walls["harness"] / walls["Tune"] if len(walls) == 2 else None
            figures = {"wall": meter.wall, "driver_cpu_per_trial": meter.cpu / n,
                       "searcher_cpu_per_trial": SUGGESTIONS["seconds"] / n, "peak_rss": meter.peak / 2**20,
                       "snapshot_checks": SNAPSHOTS["count"], "snapshot_time": SNAPSHOTS["seconds"],
                       "peak_disk": meter.disk / 2**20}
            for figure, value in figures.items():
                run.figure(figure, value, trials=n, side=name)
            if ratio is not None:
                run.figure("harness_over_tune", ratio, trials=n)
            print(f"{n:>7} {name:>8} {meter.wall:>8.1f} {'' if ratio is None else f'{ratio:.3f}':>6} "
                  f"{meter.cpu / n:>19.4f} {SUGGESTIONS['seconds'] / n:>15.4f} {meter.peak / 2**20:>12.0f} "
                  f"{SNAPSHOTS['count']:>12}, {SNAPSHOTS['seconds']:>5.1f} {meter.disk / 2**20:>13.1f}", flush=True)
            rows.append([n, name, f"{meter.wall:.1f}", "" if ratio is None else f"**{ratio:.3f}**",
                         f"{meter.cpu / n:.3f}", f"{SUGGESTIONS['seconds'] / n:.3f}", f"{meter.peak / 2**20:.0f}",
                         f"{SNAPSHOTS['count']}, {SNAPSHOTS['seconds']:.1f}", f"{meter.disk / 2**20:.1f}"])
    run.table("runs", ["trials", "driver", "wall s", "harness / Tune", "driver CPU s per trial", "of it searcher",
                       "peak RSS MB", "snapshots: calls, s", "peak disk MB"], rows)
    flushes = []
    for trials, reports in sorted({(max(args.trials), args.reports), tuple(map(int, args.flush_at.split("x")))}):
        cost = flush_cost(trials, reports)
        for figure, key in (("flush_median", "median_ms"), ("flush_p99", "p99_ms"), ("flush_max", "max_ms")):
            run.figure(figure, cost[key], trials=trials, reports=reports)
        print(f"flush at {trials} trials x {reports} reports: median {cost['median_ms']:.1f} ms, "
              f"p99 {cost['p99_ms']:.1f} ms, max {cost['max_ms']:.0f} ms over {cost['flushes']} flushes "
              f"({cost['total_s']:.1f} s in all); new work median {cost['new_median_ms']:.1f} ms, "
              f"p99 {cost['new_p99_ms']:.1f} ms, max "
              f"{cost['new_max_ms']:.1f} ms; {cost['merges']} flushes merged parts (max {cost['merge_max_ms']:.0f} ms, "
              f"{cost['merge_s']:.1f} s in all); compaction {cost['compact_s']:.2f} s", flush=True)
        flushes.append([f"{trials:,} x {reports}", cost["flushes"], f"{cost['median_ms']:.1f}", f"{cost['p99_ms']:.1f}",
                        f"{cost['max_ms']:.0f}", f"{cost['new_median_ms']:.1f}", f"{cost['merges']}",
                        f"{cost['compact_s']:.2f}"])
    run.table("flushes", ["trials x reports", "flushes", "median ms", "p99 ms", "max ms", "new work median ms",
                          "flushes that merged", "compaction s"], flushes)
    sizes = sorted({10, 20} if args.smoke else {250, 1000, *args.trials})
    suggestions = []
    for searcher in ("tpe", "random"):
        costs = suggestion_cost(sizes, searcher)
        for n in sizes:
            run.figure("suggestion", costs[n], searcher=searcher, trials=n)
        print(f"{searcher} suggestion: " + ", ".join(f"{costs[n]:.1f} ms at {n} trials" for n in sizes))
        suggestions.append([searcher, *(f"{costs[n]:.1f}" for n in sizes)])
    run.table("suggestions", ["searcher", *(f"ms at {n:,} trials" for n in sizes)], suggestions)
    run.finish()


if __name__ == "__main__":
    main()
