"""The README's main job and its tests on a fresh clone, timed as a new user meets them.

Clones this repository's committed tree into a temporary folder (with ``../shared`` beside
it where this checkout has one: the real-data tests read MNIST there), then runs the README's
commands there one after the other, each timed from the shell's point of view: ``uv run
harness sweep search_spaces/kd.yaml`` (which builds the clone's environment from uv's cache,
trains the digits teacher and searches), ``uv run harness report studies/kd-digits``, and
the tests as CI runs them, ``bash .ci/run`` (ruff, the README's test command, then the slow
set). The study's own files give what the sweep did: trials completed and stopped, the
teacher's test accuracy, the selected trial's validation and test accuracy; pytest's summary
and durations what the tests did. Nothing is compared with a baseline: the figures are the
wall time a user waits and what the commands leave.

    uv run python benchmarks/main_job.py [--smoke] [--json FILE]

``--smoke``: the same commands with 2 trials of 2 reports and a teacher of 2 epochs, and
``.ci/run`` narrowed (``PYTEST_ADDOPTS``) to one test of each set.
"""
from __future__ import annotations

import argparse
import os
import re
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
            "selected_test_acc": "%", "report_files": "files", "tests": "tests", "test_time": "s"}
SMOKE = ["--num-samples", "2", "--set", "budget.epochs=2", "--set", "teacher.recipe.epochs=2",
         "--set", "asha.grace_period=1"]
# One test of each set: the README's tables check (default) and the quickest script's smoke run (slow).
SMOKE_TESTS = "tests/test_benchmarks.py -k 'readme_tables or report_speed'"
SUMMARY = re.compile(r"^=+ (?P<counts>.*?) in (?P<seconds>[\d.]+)s")  # pytest's last line
DURATION = re.compile(r"^(?P<seconds>[\d.]+)s call\s+(?P<test>\S+)")  # a line of --durations
BENCHMARK_SMOKE = "tests/test_benchmarks.py::test_the_smoke_mode"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run one command as a user would; its output goes to ours."""
    print(f"\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env)
    if done.returncode != 0:
        fail(f"`{' '.join(command)}` exited {done.returncode} on the fresh clone", 1)
    return time.perf_counter() - start


def ci(clone: Path, env: dict[str, str], smoke: bool) -> tuple[float, list[dict], list[tuple[float, str]]]:
    """``bash .ci/run`` in the clone, its output passed on: its wall time, then per pytest run
    (default, slow) its counts and seconds, and the slow run's test calls with their seconds."""
    print("\n$ bash .ci/run", flush=True)
    env = {**env, "PYTEST_ADDOPTS": SMOKE_TESTS} if smoke else {k: v for k, v in env.items() if k != "PYTEST_ADDOPTS"}
    start, lines = time.perf_counter(), []
    with subprocess.Popen(["bash", ".ci/run"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
    seconds = time.perf_counter() - start
    runs = [{"counts": m["counts"], "seconds": float(m["seconds"]),
             "passed": int(re.search(r"(\d+) passed", m["counts"])[1]) if "passed" in m["counts"] else 0}
            for m in map(SUMMARY.match, lines) if m]
    if process.returncode != 0 or len(runs) != 2:
        said = "; ".join(r["counts"] for r in runs) or "no pytest summary"
        fail(f"`bash .ci/run` exited {process.returncode} on the fresh clone ({said})", 1)
    slow_part = lines[next(i for i, line in enumerate(lines) if SUMMARY.match(line)) + 1:]
    calls = [(float(m["seconds"]), m["test"]) for m in map(DURATION.match, slow_part) if m]
    return seconds, runs, calls


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


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
        if (ROOT.parent / "shared").is_dir():
            (clone.parent / "shared").symlink_to(ROOT.parent / "shared")
        ci_s, (default, slow), calls = ci(clone, env, args.smoke)
    done = f"{len(study.trials)} trials ({counts.get('completed', 0)} completed, {counts.get('stopped', 0)} stopped)"
    run.table("commands", ["command", "wall time", "what it did"], [
        ["`uv run harness sweep search_spaces/kd.yaml`", f"{seconds:.0f} s",
         f"built the clone's `.venv` from uv's cache, trained the digits teacher ({teacher:.2f}% test), searched "
         f"{done}, selected a trial at {100 * best['val_acc']:.2f}% validation, {100 * best['test_acc']:.2f}% test"],
        ["`uv run harness report studies/kd-digits`", f"{report_s:.0f} s",
         f"report.html and its static figures ({files} files in report_figures/)"],
    ])
    run.figure("test_time", ci_s, command="bash .ci/run")
    smoke_runs = [(s, test) for s, test in calls if test.startswith(BENCHMARK_SMOKE)]
    smoke_s = run.figure("test_time", sum(s for s, _ in smoke_runs), part="benchmark smoke runs")
    rows = [["`bash .ci/run` (CI's command: `ruff check .`, then the two below)", minutes(ci_s), "exit 0"]]
    for part, result in (("default", default), ("slow", slow)):
        run.figure("tests", result["passed"], part=part)
        run.figure("test_time", result["seconds"], part=part)
    rows += [["`uv run pytest` (the README's test command: everything but the slow tests)",
              minutes(default["seconds"]), "all passed"],  # counts stay figures: the docs name none
             ["`uv run pytest -m slow`", minutes(slow["seconds"]), "all passed"],
             ["of which the benchmark scripts' smoke runs (tests/test_benchmarks.py)", minutes(smoke_s),
              f"{len(smoke_runs)} scripts"]]
    run.table("tests", ["command", "wall time", "result"], rows)
    run.table("slowest", ["slow test", "time"],
              [[f"`{test.split('::', 1)[1]}`", minutes(s)] for s, test in sorted(calls, reverse=True)[:8]])
    run.finish()


if __name__ == "__main__":
    main()
