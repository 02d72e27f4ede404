"""What watching and object storage cost the driver, against the same work without them.

1. The Optuna journal (the default ``search.storage``): the searcher's work per trial
   (suggest, one intermediate value per report, the end) with the seed's Optuna study
   in memory (Ray's default) and in ``optuna.journal``, interleaved in one process.
2. A results flush on object storage: one new part of each table, as the writer makes
   once a second while reports arrive, written to a local study folder; and written to
   the local mirror then uploaded to an S3-compatible server on 127.0.0.1 (moto, in its
   own process), in line and, as the writer does, from the uploader's thread. Loopback
   has no network latency: on a real bucket add a round trip per uploaded file (two per
   flush) and one per deleted part after a merge.

    uv run python benchmarks/storage_cost.py [--trials 200] [--reports 20] [--flushes 400] [--smoke] [--json FILE]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Run, common_options  # noqa: E402
from harness.store.journal import open_storage  # noqa: E402
from harness.store.location import Uploader, open_location  # noqa: E402
from harness.store.tables import PartTable  # noqa: E402
from harness.study.search import make_searcher  # noqa: E402
from tests.support.specs import small_spec  # noqa: E402

PROMISES = {"searcher_event": "ms", "journal_over_memory": "x", "journal_per_trial": "ms", "flush_median": "ms",
            "flush_p99": "ms", "flush_max": "ms", "all_written": "s"}


def searcher_seconds(trials: int, reports: int, folder: Path | None) -> float:
    """Seconds of searcher work for a study of ``trials`` trials of ``reports`` reports each."""
    spec = small_spec(**{"budget.epochs": str(reports), "search.num_samples": str(trials),
                         "search.searcher": "random"})
    storage = open_storage(None, folder) if folder is not None else None
    searcher = make_searcher(spec, 0, storage)
    searcher.set_search_properties(None, None, {})
    start = time.perf_counter()
    for t in range(trials):
        searcher.suggest(f"t{t}")
        for epoch in range(1, reports + 1):
            searcher.on_trial_result(f"t{t}", {"val_acc": 0.5, "training_iteration": epoch})
        searcher.on_trial_complete(f"t{t}", {"val_acc": 0.5, "training_iteration": reports})
    return time.perf_counter() - start


def flush_ms(folder: Path, flushes: int, location=None, background: bool = True) -> tuple[list[float], float]:
    """Milliseconds the writer waits per flush (a part of 8 trial rows and 8 reports, then the
    upload: requested from the uploader's thread, or made in line), and the seconds until
    everything is uploaded, one flush every 10 ms."""
    tables = {"trials": PartTable(folder, "trials"), "epochs": PartTable(folder, "epochs")}
    uploader = Uploader(location, ("tune",)) if location is not None and background else None
    times = []
    begin = time.perf_counter()
    for k in range(flushes):
        start = time.perf_counter()
        tables["trials"].append([{"trial_id": f"t{k % 50}", "status": "running", "val_acc": 0.5, "seed": 0}] * 8)
        tables["epochs"].append([{"trial_id": f"t{k % 50}", "epoch": k, "val_acc": 0.5, "seed": 0}] * 8)
        if uploader is not None:
            uploader.request()
        elif location is not None:
            location.push(skip=("tune",))
        times.append(1000 * (time.perf_counter() - start))
        time.sleep(0.01)
    if uploader is not None:
        uploader.drain()
    return times, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--flushes", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = common_options(parser).parse_args()
    if args.smoke:
        args.trials, args.reports, args.flushes, args.repeats = 5, 2, 10, 1
    run = Run(__file__, PROMISES, args)

    print(f"1. searcher work, {args.trials} trials x {args.reports} reports, random sampler "
          f"(so that the storage is what differs), {args.repeats} interleaved repeats")
    memory, journal = [], []
    for _ in range(args.repeats):
        memory.append(searcher_seconds(args.trials, args.reports, None))
        with tempfile.TemporaryDirectory() as tmp:
            journal.append(searcher_seconds(args.trials, args.reports, Path(tmp)))
    events = args.trials * (args.reports + 2)
    m, j = statistics.median(memory), statistics.median(journal)
    print(f"   in memory: {1e3 * m / events:.3f} ms per event; journal file: {1e3 * j / events:.3f} ms per event "
          f"({j / m:.2f}x); per trial {1e3 * (j - m) / args.trials:.1f} ms more")
    run.figure("searcher_event", 1e3 * m / events, storage="memory")
    run.figure("searcher_event", 1e3 * j / events, storage="journal")
    run.figure("journal_over_memory", j / m)
    run.figure("journal_per_trial", 1e3 * (j - m) / args.trials)
    run.table("journal", ["Optuna study", "per event", "per trial"],
              [["in memory (Ray's default)", f"{1e3 * m / events:.3f} ms", ""],
               ["journal file, the harness's writer", f"{1e3 * j / events:.3f} ms",
                f"**{1e3 * (j - m) / args.trials:+.1f} ms**"]])

    from tests.s3_server import S3Server

    server = S3Server()
    try:
        server.make_bucket("bench")
        os.environ.update(server.env)
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["HARNESS_CACHE"] = str(Path(tmp) / "cache")
            runs = {"local folder": flush_ms(Path(tmp) / "local", args.flushes)}
            inline = open_location("s3://bench/studies").child("inline")
            runs["S3, uploaded in line"] = flush_ms(inline.local, args.flushes, inline, background=False)
            study = open_location("s3://bench/studies").child("study")
            runs["S3, uploader thread"] = flush_ms(study.local, args.flushes, study)
    finally:
        server.stop()
    print(f"2. what the writer waits per results flush ({args.flushes} flushes 10 ms apart; parts merged in "
          f"tiers of 16 as they go); S3 is moto on 127.0.0.1")
    rows = []
    for name, (times, total) in runs.items():
        times = sorted(times)
        median, p99, most = statistics.median(times), times[int(0.99 * len(times))], times[-1]
        print(f"   {name:>22}: median {median:.1f} ms, p99 {p99:.1f} ms, max {most:.1f} ms; all written and "
              f"uploaded after {total:.1f} s")
        for figure, value in (("flush_median", median), ("flush_p99", p99), ("flush_max", most),
                              ("all_written", total)):
            run.figure(figure, value, where=name)
        rows.append([name, f"{median:.1f} ms", f"{p99:.1f} ms", f"{most:.1f} ms", f"{total:.1f} s"])
    run.table("flushes", ["where", "median", "p99", "max", "all written and uploaded after"], rows)
    run.finish()


if __name__ == "__main__":
    main()
