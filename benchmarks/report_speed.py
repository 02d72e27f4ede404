"""How long reports take for a large study: HTML report and leaderboard over N trials.

Writes study folders in the harness's format (tests/fake_studies.py: completed,
stopped, errored and running trials with learning curves), then times each step
in this process and prints the figures.

    uv run python benchmarks/report_speed.py [--trials 1000] [--smoke] [--json FILE]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Run, common_options  # noqa: E402
from reports.leaderboard import build_leaderboard  # noqa: E402
from reports.study_report import build_report  # noqa: E402
from tests.fake_studies import STATUSES, write_study  # noqa: E402

PROMISES = {"step": "s", "report_file": "MB", "leaderboard_reads": "studies"}


def timed(run: Run, label: str, action):
    start = time.perf_counter()
    result = action()
    seconds = run.figure("step", time.perf_counter() - start, step=label)
    print(f"{label:<48} {seconds:6.2f} s")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials in all (default 1000)")
    parser.add_argument("--studies", type=int, default=4, help="studies they are split over (default 4)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20, help="reports per completed trial")
    args = common_options(parser).parse_args()
    if args.smoke:
        args.trials, args.studies, args.seeds, args.epochs = 8, 2, 2, 3
    run = Run(__file__, PROMISES, args)
    per_study = args.trials // (args.studies * args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        rng = np.random.default_rng(0)
        folders = [write_study(storage, f"study{i}", ("kd", "kdgan", "c2s2", "dafl")[i % 4], per_study,
                               seeds=tuple(range(args.seeds)), statuses=STATUSES[:2] * 3 + STATUSES,
                               epochs=args.epochs, rng=rng)
                   for i in range(args.studies)]
        total = per_study * args.studies * args.seeds
        print(f"{total} trials in {args.studies} studies x {args.seeds} seeds, up to {args.epochs} reports each")
        timed(run, "report (HTML, no static images)",
              lambda: build_report(folders, storage / "report.html", images=False))
        timed(run, "leaderboard, first run (reads every study)", lambda: build_leaderboard(storage))
        timed(run, "leaderboard, again (nothing changed)", lambda: build_leaderboard(storage))
        write_study(storage, "study_new", "kd", per_study, seeds=tuple(range(args.seeds)), rng=rng)
        (board, _), _ = timed(run, "leaderboard after one new study", lambda: build_leaderboard(storage))
        print(f"  read {board.read} study, {board.cached} unchanged")
        run.figure("leaderboard_reads", board.read, unchanged=board.cached)
        size = run.figure("report_file", (storage / "report.html").stat().st_size / 1e6, trials=total)
        print(f"report file: {size:.1f} MB (plotly.js embedded once)")
    rows = [[f["step"], f"{f['value']:.2f} s"] for f in run.figures if f["name"] == "step"]
    rows.append([f"the report file ({total:,} trials)", f"{size:.1f} MB"])
    run.table("steps", ["step", "time"], rows)
    run.finish()


if __name__ == "__main__":
    main()
