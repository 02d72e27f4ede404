"""The README's main job on a fresh clone, timed as a new user meets it.

Clones this repository's committed tree into a temporary folder, then runs the README's
commands there one after the other, each timed from the shell's point of view: ``uv run
harness sweep search_spaces/kd.yaml`` (which builds the clone's environment from uv's cache,
trains the digits teacher and searches), then ``uv run harness report studies/kd-digits``.
The study's own files give what the sweep did: trials completed and stopped, the teacher's
test accuracy, the selected trial's validation and test accuracy. Nothing is compared with
a baseline: the figures are the wall time a user waits and what the job leaves.

    uv run python benchmarks/main_job.py [--smoke] [--json FILE]

``--smoke``: the same commands with 2 trials of 2 reports and a teacher of 2 epochs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, Run, common_options, fail  # noqa: E402
from reports.load import load_study  # noqa: E402
from reports.summary import selected_trials  # noqa: E402

PROMISES = {"wall": "s", "trials": "trials", "teacher_test_acc": "%", "selected_val_acc": "%",
            "selected_test_acc": "%", "report_files": "files"}
SMOKE = ["--num-samples", "2", "--set", "budget.epochs=2", "--set", "teacher.recipe.epochs=2",
         "--set", "asha.grace_period=1"]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run one command as a user would; its output goes to ours."""
    print(f"\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env)
    if done.returncode != 0:
        fail(f"`{' '.join(command)}` exited {done.returncode} on the fresh clone", 1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = common_options(parser).parse_args()
    run = Run(__file__, PROMISES, args)
    with tempfile.TemporaryDirectory(prefix="main-job-") as tmp:
        clone = Path(tmp) / "clone"
        cloned = subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], capture_output=True, text=True)
        if cloned.returncode != 0:
            fail(f"cannot clone {ROOT}: {cloned.stderr.strip() or 'git failed'}")
        # the clone's own environment and caches: nothing of this checkout's is reused but uv's package cache
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "HARNESS_CACHE", "HARNESS_DATA")}
        sweep = ["uv", "run", "harness", "sweep", "search_spaces/kd.yaml", *(SMOKE if args.smoke else [])]
        seconds = run.figure("wall", timed(sweep, clone, env), command="harness sweep search_spaces/kd.yaml")
        study = load_study(clone / "studies" / "kd-digits")
        counts = study.trials["status"].value_counts()
        for status in ("completed", "stopped"):
            run.figure("trials", int(counts.get(status, 0)), status=status)
        teacher = 100 * study.teacher.get("test_acc", float("nan"))
        run.figure("teacher_test_acc", teacher)
        best = selected_trials(study.trials).iloc[0]
        run.figure("selected_val_acc", 100 * best["val_acc"])
        run.figure("selected_test_acc", 100 * best["test_acc"])
        report = ["uv", "run", "harness", "report", "studies/kd-digits"]
        report_s = run.figure("wall", timed(report, clone, env), command="harness report studies/kd-digits")
        if not (clone / "report.html").is_file():
            fail("`harness report` wrote no report.html in the folder it ran in", 1)
        figures = clone / "report_figures"  # written beside the report, in the folder it ran in
        files = run.figure("report_files", len(list(figures.iterdir())) if figures.is_dir() else 0)
    done = f"{len(study.trials)} trials ({counts.get('completed', 0)} completed, {counts.get('stopped', 0)} stopped)"
    run.table("commands", ["command", "wall time", "what it did"], [
        ["`uv run harness sweep search_spaces/kd.yaml`", f"{seconds:.0f} s",
         f"built the clone's `.venv` from uv's cache, trained the digits teacher ({teacher:.2f}% test), searched "
         f"{done}, selected a trial at {100 * best['val_acc']:.2f}% validation, {100 * best['test_acc']:.2f}% test"],
        ["`uv run harness report studies/kd-digits`", f"{report_s:.0f} s",
         f"report.html and its static figures ({files} files in report_figures/)"],
    ])
    run.finish()


if __name__ == "__main__":
    main()
