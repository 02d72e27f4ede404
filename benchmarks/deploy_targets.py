"""Deployment targets in a study: what measuring where the network deploys costs, and where
the targets' rankings disagree.

One sweep of ``search_spaces/examples/deploy_targets.yaml`` (L1 filter pruning + KD of LeNet-5
on digits, searched on validation accuracy and ONNX Runtime's latency at batch 1, with the
targets ``eager_b64``, torch at batch 64, and ``ort_b1``, ONNX Runtime at batch 1, besides the
default) into a temporary storage. Compared, in that one run: the windows the sweep measures
at its end, the default target's against each deployment target's (networks, seconds, as the
sweep reports them); and each distinct student network's latency as a multiple of the
teacher's measured in the same window, on the default target (batch 64) and on each target.
Also the sweep's wall time and each completed trial's own measurement at its end (median).

    uv run python benchmarks/deploy_targets.py [--trials 12] [--seed 0] [--smoke] [--json FILE]

``--smoke``: four trials of two epochs.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Run, common_options, fail, harness  # noqa: E402

SPEC = "search_spaces/examples/deploy_targets.yaml"
PROMISES = {"study_time": "s", "window": "s", "window_networks": "", "trial_measure": "s", "latency_x_teacher": "x"}
# The sweep's own lines for its end-of-study windows (harness.study.remeasure and .targets).
DEFAULT_WINDOW = re.compile(r"latency of \d+ completed trial\(s\), (?P<networks>\d+) distinct network\(s\), "
                            r"measured again in one window: .*?\[(?P<seconds>\d+)s\]")
TARGET_WINDOW = re.compile(r"target (?P<name>\S+) \(.*?\): (?P<networks>\d+) distinct network\(s\) measured in one "
                           r"window .*?\[(?P<seconds>\d+)s\]")


def sweep(storage: Path, trials: int, epochs: int | None, seed: int) -> tuple[float, str]:
    options = ["--storage", str(storage), "--progress", "quiet", "--num-samples", str(trials),
               "--set", f"seeds=[{seed}]"]
    if epochs:
        options += ["--set", f"budget.epochs={epochs}", "--set", "asha.grace_period=1"]
    return harness("sweep", SPEC, *options, what="the sweep")


def windows(output: str) -> list[tuple[str, int, int]]:
    """(target, networks, seconds) of each window the sweep measured at its end, the default first."""
    found = [("default", int(m["networks"]), int(m["seconds"])) for m in DEFAULT_WINDOW.finditer(output)]
    found += [(m["name"], int(m["networks"]), int(m["seconds"])) for m in TARGET_WINDOW.finditer(output)]
    if not found or found[0][0] != "default" or len(found) < 3:
        print(output[-3000:], file=sys.stderr)
        fail(f"the sweep reported {len(found)} of its 3 windows (the default and two targets); its output is above", 1)
    return found


def ratios(folder: Path, trials: pd.DataFrame) -> pd.DataFrame:
    """Per distinct student network (completed trials): params and latency / teacher's on each target."""
    trials = trials[trials["status"].eq("completed") & trials["latency_ms"].notna()]
    latencies = pd.read_parquet(folder / "latencies.parquet")
    out = trials.assign(default=trials["latency_ms"] / trials["teacher_latency_ms"])[
        ["trial_id", "network", "params", "val_acc", "default"]]
    for target, rows in latencies.groupby("target"):
        ratio = (rows["latency_ms"] / rows["teacher_latency_ms"]).rename(target)
        out = out.merge(pd.concat([rows["trial_id"], ratio], axis=1), on="trial_id", how="left")
    return out.sort_values("val_acc", ascending=False).drop_duplicates("network")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials of the sweep (default 12, the spec's)")
    args = common_options(parser, seed=True).parse_args()
    run = Run(__file__, PROMISES, args)
    trials, epochs = (4, 2) if args.smoke else (args.trials, None)
    with tempfile.TemporaryDirectory(prefix="deploy-targets-") as storage:
        seconds, output = sweep(Path(storage), trials, epochs, args.seed)
        print(f"sweep of {trials} trials: {seconds:.0f} s (the teacher's training included)")
        folder = Path(storage) / "deploy-targets-digits"
        measured = pd.read_parquet(folder / "trials.parquet")
        students = ratios(folder, measured)
    run.figure("study_time", seconds, trials=trials)
    window_rows = []
    for target, networks, window_s in windows(output):
        run.figure("window", window_s, target=target)
        run.figure("window_networks", networks, target=target)
        if target == "default":  # its count is of students; the teacher is measured beside them
            window_rows.append(["default target (torch, batches 1 and 64)", f"{networks} + the teacher",
                                f"{window_s} s"])
        else:
            window_rows.append([f"`{target}`", f"{networks}, the teacher among them", f"{window_s} s"])
    completed = measured[measured["status"].eq("completed")]
    run.figure("trial_measure", completed["measure_s"].median(), trials=len(completed))
    targets = [c for c in students.columns if c not in ("trial_id", "network", "params", "val_acc", "default")]
    student_rows = []
    for _, row in students.iterrows():
        for target in ("default", *targets):
            run.figure("latency_x_teacher", row[target], network=row["network"], target=target)
        student_rows.append([f"{row['params']:,.0f}", f"{100 * row['val_acc']:.2f}",
                             *(f"{row[t]:.2f}" for t in ("default", *targets))])
    print(students.to_string(index=False))
    run.table("windows", ["window at the sweep's end", "networks", "time"], window_rows)
    run.table("students", ["student params", "val acc %", "default (torch, b64)",
                           *(f"`{t}`" for t in targets)], student_rows)
    run.finish()


if __name__ == "__main__":
    main()
