"""A large study's driver killed with SIGKILL part way, then resumed: is every result there once?

``harness sweep`` runs N trials of a method that does no real work (benchmarks/sleeper, as in
scale.py: 8 trials at once, TPE and ASHA) in a process of its own; once ``--kill-at`` of them
have finished (completed or stopped, as the study's own files say), the driver's process
group gets SIGKILL: no handler runs, as when a node dies. The script then reads the files
the killed driver left, runs ``harness sweep --resume`` on them (timed), and checks the
finished study: each trial one row, each report (trial, epoch) once, and every finished
trial's reports exactly 1 to its ``epochs_done``; it counts the trials by status, those
continued from a checkpoint (``resumes``) and those ``lost`` (started after the last
snapshot: the search ran others in their place). A check that fails ends the script with
exit status 1 naming it.

    uv run python benchmarks/kill_resume.py [--trials 1200] [--kill-at 0.6] [--storage DIR] [--seed 0] [--smoke]
        [--json FILE]

``--smoke``: 12 trials, killed after 4.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Run, common_options, fail  # noqa: E402
from harness.store.tables import read_table  # noqa: E402

PROMISES = {"rows": "rows", "reports": "reports", "wall": "s", "trials": "trials", "duplicates": "rows"}
SLEEPER = ROOT / "benchmarks" / "sleeper"
CONCURRENT = 8  # as scale.py: each trial mostly waits, so a quarter of a CPU each
FINISHED = ("completed", "stopped")


def write_spec(folder: Path, trials: int, seed: int) -> Path:
    spec = {"study": "kill-resume", "method": "sleeper:Sleep", "code": [str(SLEEPER)],
            "dataset": {"name": "digits"}, "student": {"model": "lenet5_half", "width": 0.5},
            "budget": {"epochs": 5}, "asha": {"grace_period": 1, "reduction_factor": 3, "stop_at_chance": False},
            "measure": {"repeats": 2, "warmup": 1, "rounds": 0}, "resources": {"cpu": 2 / CONCURRENT},
            "search": {"searcher": "tpe", "num_samples": trials, "max_concurrent": CONCURRENT,
                       "space": {"lr": {"loguniform": [0.01, 0.5]}, "warmup_epochs": 0, "steps": 10,
                                 "seconds": 0.2, "batch_size": 64}},
            "seeds": [seed]}
    path = folder / "kill-resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep(spec: Path, storage: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "sweep", str(spec), "--storage", str(storage),
                             "--progress", "quiet", *extra], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(folder: Path) -> int:
    try:
        trials = read_table(folder, "trials")
    except (OSError, ValueError):  # a part being written: read again at the next poll
        return 0
    return int(trials["status"].isin(FINISHED).sum()) if len(trials) else 0


def kill_after(driver: subprocess.Popen, folder: Path, count: int) -> float:
    """SIGKILL the driver's process group once ``count`` trials have finished; its seconds."""
    started = time.monotonic()
    while finished(folder) < count:
        if driver.poll() is not None:
            fail(f"the sweep ended (exit {driver.returncode}) before {count} trials had finished: "
                 f"{driver.stdout.read()[-1500:]}", 1)
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    return time.monotonic() - started


def check(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The finished study's rows, reports, and each rule a row breaks (none for a sound study)."""
    trials, epochs = pd.read_parquet(folder / "trials.parquet"), pd.read_parquet(folder / "epochs.parquet")
    broken = [f"trial {t}: two rows" for t in trials.loc[trials["trial_id"].duplicated(), "trial_id"]]
    twice = epochs[epochs.duplicated(["trial_id", "epoch"])]
    broken += [f"trial {r.trial_id}: report {r.epoch} twice" for r in twice.itertuples()]
    reports = epochs.groupby("trial_id")["epoch"].apply(sorted)
    for _, row in trials[trials["status"].isin(FINISHED)].iterrows():
        got = reports.get(row["trial_id"], [])
        if got != list(range(1, int(row["epochs_done"]) + 1)):
            broken.append(f"trial {row['trial_id']} ({row['status']}, epochs_done {row['epochs_done']}): "
                          f"reports {got}")
    return trials, epochs, broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1200)
    parser.add_argument("--kill-at", type=float, default=0.6, help="the share of trials finished at the kill")
    parser.add_argument("--storage", help="keep the study here (default: a temporary folder, removed)")
    args = common_options(parser, seed=True).parse_args()
    if not 0 < args.kill_at < 1:
        fail("--kill-at: a share between 0 and 1")
    trials_n, kill_at = (12, 4) if args.smoke else (args.trials, round(args.trials * args.kill_at))
    run = Run(__file__, PROMISES, args)
    with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
        storage = Path(args.storage) if args.storage else Path(tmp) / "studies"
        storage.mkdir(parents=True, exist_ok=True)
        spec = write_spec(storage, trials_n, args.seed)
        folder = storage / "kill-resume"
        before = kill_after(sweep(spec, storage), folder, kill_at)
        at_kill, reports_at_kill = read_table(folder, "trials"), read_table(folder, "epochs")
        print(f"killed after {before:.0f} s: {int(at_kill['status'].isin(FINISHED).sum())} trials finished, "
              f"{len(at_kill)} rows and {len(reports_at_kill)} reports on disk")
        started = time.monotonic()
        resumed = sweep(spec, storage, "--resume")
        output = resumed.communicate()[0]
        if resumed.returncode != 0:
            fail(f"--resume exited {resumed.returncode}: {output[-1500:]}", 1)
        resume_s = time.monotonic() - started
        trials, epochs, broken = check(folder)
    counts = trials["status"].value_counts()
    continued = int((trials["resumes"].fillna(0) > 0).sum())
    print(f"--resume: {resume_s:.0f} s; {len(trials)} rows ({', '.join(f'{n} {s}' for s, n in counts.items())}), "
          f"{continued} continued from a checkpoint, {len(epochs)} reports, {len(broken)} rows breaking a rule")
    run.figure("rows", len(at_kill), when="at the kill")
    run.figure("reports", len(reports_at_kill), when="at the kill")
    run.figure("wall", before, part="until the kill")
    run.figure("wall", resume_s, part="--resume")
    run.figure("rows", len(trials), when="after --resume")
    run.figure("reports", len(epochs), when="after --resume")
    for status in ("completed", "stopped", "lost"):
        run.figure("trials", int(counts.get(status, 0)), status=status)
    run.figure("trials", continued, status="continued from a checkpoint")
    run.figure("duplicates", len(broken))
    run.table("runs", ["trials", "killed after", "on disk at the kill", "--resume", "after it",
                       "continued from a checkpoint", "rows or reports twice, or reports missing"],
              [[f"{trials_n:,}", f"{int(at_kill['status'].isin(FINISHED).sum()):,} finished ({before:.0f} s)",
                f"{len(at_kill):,} rows, {len(reports_at_kill):,} reports", f"{resume_s:.0f} s",
                f"{len(trials):,} rows ({int(counts.get('completed', 0))} completed, "
                f"{int(counts.get('stopped', 0))} stopped, {int(counts.get('lost', 0))} lost), {len(epochs):,} reports",
                continued, len(broken)]])
    if broken:
        print("\n".join(broken[:20]), file=sys.stderr)
        where = f"the study is in {args.storage}" if args.storage else "--storage DIR keeps the study to look at"
        fail(f"{len(broken)} rows of the resumed study break a rule (listed above); {where}", 1)
    run.finish()


if __name__ == "__main__":
    main()
