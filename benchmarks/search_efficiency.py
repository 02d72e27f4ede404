"""Search efficiency: Optuna TPE + ASHA against random search with full budgets; and a search
within limits (``search.constraints``) against the same search unconstrained, filtered afterwards.

Both arms run the same study spec (default: the main job, ``search_spaces/kd.yaml``)
through the harness, with the same number of trials per seed:

- TPE + ASHA: the spec as it is;
- random, full budget: ``searcher: random`` and ASHA's grace period at the full
  budget, so that no trial is stopped.

Compute is counted in trial-epochs (one report = one epoch of one trial), in the
order the reports reached the driver. A search "finds" a result when a trial
finishes its full budget; the target is the best validation accuracy either arm
finds in that seed, minus 0.5 points. For each arm and seed the script prints the
trial-epochs spent until a finished trial first lands in that band, and the
ratio of the means over seeds. Everything is decided on the validation split.

    uv run python benchmarks/search_efficiency.py [--spec search_spaces/kd.yaml] [--seeds 0,1,2]
        [--set KEY=VALUE ...] [--storage DIR] [--random-from STUDY_DIR ...] [--smoke] [--json FILE]

``--smoke`` runs both comparisons (the spec's and the constrained example's) at two trials
of two epochs, one seed.

The random arm does not depend on TPE's settings: ``--random-from`` reads it from
earlier runs' study folders (kept with ``--storage``) instead of running it again,
after checking that their spec matches in everything it does depend on.

``benchmarks/search_kd_mnist_wide.yaml`` is the real-data case: a wide space on
MNIST with a validation split large enough for the band to be far above noise.

A spec with ``search.constraints`` (``search_spaces/examples/kd_within_latency.yaml``: KD with
the student's width searched, latency at most half the teacher's) compares two TPE + ASHA arms:

- constrained: the spec as it is (draws over the limits never train);
- filtered afterwards: the same without ``search.constraints``; its trials are held to the
  limits when the study has ended, as ``harness leaderboard --budgets`` would.

A find is a trial that finished its budget within the limits (judged alike in both arms, on
the figures measured after the search); the band is the best such validation accuracy either
arm found in that seed, minus 0.5 points. Per arm and seed: trials trained, trial-epochs and
training CPU seconds (each report's ``epoch_s``) until the first find in the band; the
constrained arm is charged all of its draws' cost measurements besides (timed here).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.study.cluster import configure_ray  # noqa: E402

configure_ray(None)  # a local Ray, set up as `python -m harness sweep` does, before ray is imported

from benchmarks.common import Run, common_options  # noqa: E402
from benchmarks.common import fail as fail_line  # noqa: E402
from harness.errors import SpecError  # noqa: E402
from harness.spec.load import load_spec  # noqa: E402
from harness.study.constraints import DrawGate, judge_row, limits_text, study_limits  # noqa: E402
from harness.study.sweep import run_sweep  # noqa: E402

PROMISES = {"trial_epochs_to_band": "trial-epochs", "compute_ratio": "%", "trials_to_band": "trials",
            "cpu_to_band": "s", "draw_measuring": "s"}
WITHIN_LIMITS_ONLY = ("trials_to_band", "cpu_to_band", "draw_measuring")  # figures of a spec with limits
CONSTRAINED_EXAMPLE = "search_spaces/examples/kd_within_latency.yaml"
SMOKE_SETS = ["search.num_samples=2", "budget.epochs=2", "asha.grace_period=1"]
BAND = 0.005  # half an accuracy point
TPE = "TPE + ASHA"
RANDOM = "random, full budget"
# What the random arm's reports depend on (not TPE's settings, the seeds or the storage).
RANDOM_ARM_KEYS = ("method", "dataset", "teacher", "student", "budget", "asha", "resources")


CONSTRAINED = "constrained"
FILTERED = "filtered afterwards"


def arm_specs(path: str, seeds: list[int], storage: str, overrides: list[str]) -> dict[str, object]:
    common = [*overrides, f"seeds={seeds}", f"storage={storage}"]
    tpe = load_spec(path, [*common, "search.searcher=tpe"])
    if tpe.search.constraints:
        return {CONSTRAINED: load_spec(path, [*common, f"study={tpe.study}-constrained"]),
                FILTERED: load_spec(path, [*common, f"study={tpe.study}-filtered", "search.constraints=[]"])}
    epochs = tpe.budget.epochs
    return {
        TPE: load_spec(path, [*common, f"study={tpe.study}-tpe-asha", "search.searcher=tpe"]),
        RANDOM: load_spec(path, [*common, f"study={tpe.study}-random-full", "search.searcher=random",
                                 f"asha.grace_period={epochs}"]),
    }


def fail(message: str) -> NoReturn:
    """Bad input: one line naming the cause, exit status 2 (as the harness's CLI does)."""
    fail_line(message)


def earlier_random_arm(folders: list[str], spec, seeds: list[int]) -> pd.DataFrame:
    """The random arm's reports for ``seeds`` from earlier runs' study folders."""
    now = json.loads(json.dumps(spec.to_dict(), default=str))
    frames = []
    for place, folder in enumerate(map(Path, folders)):
        saved = json.loads((folder / "study.json").read_text())["spec"]
        differs = [key for key in RANDOM_ARM_KEYS if _depends(saved, key) != _depends(now, key)]
        differs += [f"search.{key}" for key in ("space", "searcher", "num_samples")
                    if saved["search"][key] != now["search"][key]]
        if differs:
            fail(f"--random-from {folder}: its spec differs in {', '.join(differs)}")
        frames.append(pd.read_parquet(folder / "epochs.parquet").assign(place=place))
    epochs = pd.concat(frames)
    twice = sorted(seed for seed, where in epochs.groupby("seed")["place"].nunique().items() if where > 1)
    if twice:
        fail(f"--random-from: seed(s) {twice} found in more than one of the folders given; give each run once")
    missing = sorted(set(seeds) - set(epochs["seed"]))
    if missing:
        fail(f"--random-from: no random-arm results for seed(s) {missing}")
    return epochs[epochs["seed"].isin(seeds)]


def _depends(spec: dict, key: str) -> object:
    """What the random arm's reports depend on in ``spec[key]``. ASHA's chance floor acts
    only before the last epoch, where a full-budget arm stops nothing, and runs before it
    was added have no such setting."""
    value = spec[key]
    return {k: v for k, v in value.items() if k != "stop_at_chance"} if key == "asha" else value


def finds(epochs: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Per report in arrival order: compute spent so far, and the val_acc found if it ends a trial."""
    out = epochs[["trial_id", "epoch", "val_acc"]].reset_index(drop=True).copy()
    out["compute"] = range(1, len(out) + 1)
    out["found"] = out["val_acc"].where(out["epoch"] == budget)
    return out


def compute_to_band(found: pd.DataFrame, target: float) -> tuple[int, bool]:
    hit = found[found["found"] >= target]
    if hit.empty:
        return int(found["compute"].iloc[-1]), False
    return int(hit["compute"].iloc[0]), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="search_spaces/kd.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--storage", default=None, help="keep the studies here (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec entry in both arms, as `python -m harness sweep --set` does")
    parser.add_argument("--random-from", nargs="+", default=[], metavar="STUDY_DIR",
                        help="read the random arm from these earlier runs instead of running it")
    args = common_options(parser).parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        fail(f"--seeds: expected integers separated by commas, got {args.seeds!r}")
    run = Run(__file__, PROMISES, args)
    if args.smoke:  # both comparisons, the smallest that finishes trials
        for spec in (args.spec, CONSTRAINED_EXAMPLE):
            compare(run, spec, [0], None, [*args.set, *SMOKE_SETS], [])
    elif not compare(run, args.spec, seeds, args.storage, args.set, args.random_from):
        run.promises = {k: v for k, v in run.promises.items() if k not in WITHIN_LIMITS_ONLY}
    run.finish()


def compare(run: Run, path: str, seeds: list[int], storage: str | None, sets: list[str],
            random_from: list[str]) -> bool:
    """Run the spec's two arms (or read the random one) and report them; True for a spec with limits."""
    with contextlib.ExitStack() as stack:
        storage = storage or stack.enter_context(tempfile.TemporaryDirectory())
        try:
            specs = arm_specs(path, seeds, storage, sets)
        except SpecError as exc:
            fail(str(exc))
        runs = {}
        if random_from:
            runs[RANDOM] = earlier_random_arm(random_from, specs[RANDOM], seeds)
            print(f"{RANDOM}: {len(runs[RANDOM])} trial-epochs read from {', '.join(random_from)}", flush=True)
        folders, gate_s = {}, 0.0
        for arm, spec in specs.items():
            if arm in runs:
                continue
            start, gate_before = time.perf_counter(), GATE.seconds
            with contextlib.redirect_stdout(io.StringIO()):
                folders[arm] = run_sweep(spec)
            runs[arm] = pd.read_parquet(folders[arm] / "epochs.parquet")
            gate_s += GATE.seconds - gate_before
            print(f"{arm}: {spec.study}, {len(runs[arm])} trial-epochs in {time.perf_counter() - start:.0f} s",
                  flush=True)
        if CONSTRAINED in specs:
            report_constrained(run, runs, folders, specs, seeds, gate_s)
            return True
        report(run, runs, specs, seeds)
        return False


class _GateClock:
    """The time the constrained arm's searcher spends measuring draws (DrawGate, in this process)."""

    seconds = 0.0

    def wrap(self) -> None:
        measure = DrawGate._figures

        def timed(gate, network):
            start = time.perf_counter()
            try:
                return measure(gate, network)
            finally:
                self.seconds += time.perf_counter() - start

        DrawGate._figures = timed


GATE = _GateClock()
GATE.wrap()


def within_limits(folder: Path, spec) -> pd.Series:
    """Per trial id: whether it finished within the constrained spec's limits, judged on its figures
    after the search (both arms alike; the constrained arm's own ``feasible`` is the same judgment)."""
    trials = pd.read_parquet(folder / "trials.parquet")
    limits = study_limits(spec)
    done = trials[trials["status"].eq("completed")]
    return pd.Series({row["trial_id"]: judge_row(limits, row)["feasible"] is True for row in done.to_dict("records")},
                     dtype=bool)


def report_constrained(run: Run, runs: dict[str, pd.DataFrame], folders: dict[str, Path],
                       specs: dict[str, object], seeds: list[int], gate_s: float) -> None:
    """Per seed and arm: trials, trial-epochs and CPU seconds to the first find in the band."""
    spec = specs[CONSTRAINED]
    budget, n = spec.budget.epochs, spec.search.num_samples
    labels = limits_text(spec)
    print(f"\n{spec.method} on {spec.dataset.name}, within {labels}: {n} trials per seed, budget {budget} epochs; "
          f"band = best val_acc within the limits either arm finds - {100 * BAND:.1f} points")
    print(f"{'seed':>4} {'best':>7} " + " ".join(f"{arm + ' (trials, trial-epochs, CPU s)':>44}" for arm in runs))
    feasible = {arm: within_limits(folders[arm], spec) for arm in runs}
    spent: dict[str, list[tuple[int, int, float]]] = {arm: [] for arm in runs}
    rows = []
    for seed in seeds:
        found = {}
        for arm, epochs in runs.items():
            reports = epochs[epochs["seed"] == seed].reset_index(drop=True)
            ends = reports["epoch"].eq(budget) & reports["trial_id"].map(feasible[arm]).eq(True)
            found[arm] = reports.assign(found=reports["val_acc"].where(ends), cpu=reports["epoch_s"].cumsum(),
                                        trials=(~reports["trial_id"].duplicated()).cumsum())
        best = max(f["found"].max() for f in found.values())  # NaN: no find in either arm, none reaches it
        cells = []
        for arm, f in found.items():
            hit = f[f["found"] >= best - BAND]
            at = hit.iloc[0] if len(hit) else f.iloc[-1]
            figures = (int(at["trials"]), int(at.name) + 1, float(at["cpu"]))
            spent[arm].append(figures)
            for name, value in zip(("trials_to_band", "trial_epochs_to_band", "cpu_to_band"), figures, strict=True):
                run.figure(name, value, seed=seed, arm=arm, reached=bool(len(hit)))
            mark = "" if len(hit) else ">"
            cells.append(f"{mark}{figures[0]}, {mark}{figures[1]}, {mark}{figures[2]:.1f} s")
        print(f"{seed:>4} {best:>7.4f} " + " ".join(f"{c:>44}" for c in cells))
        rows.append([seed, "-" if best != best else f"{100 * best:.2f}%", *cells])
    for arm, folder in folders.items():
        trials = pd.read_parquet(folder / "trials.parquet")
        trained = trials[~trials["status"].eq("infeasible")]
        print(f"{arm}: {int(feasible[arm].sum())} of {len(trained)} trained trials finished within the limits; "
              f"{len(trials) - len(trained)} draws over them never trained")
    means = {arm: [statistics.mean(v[i] for v in spent_) for i in range(3)] for arm, spent_ in spent.items()}
    run.figure("draw_measuring", gate_s / len(seeds), arm=CONSTRAINED, per="seed")
    for arm, (trials, epochs, cpu) in means.items():
        extra = f" + {gate_s / len(seeds):.1f} s per seed measuring draws" if arm == CONSTRAINED else ""
        print(f"mean to the band, {arm}: {trials:.1f} trials, {epochs:.1f} trial-epochs, {cpu:.1f} CPU s{extra}")
    short = {arm: "" if all(f["reached"] for f in run.figures if f.get("arm") == arm
                            and f["name"] == "trials_to_band" and f.get("seed") in seeds) else ">" for arm in means}
    rows.append(["mean", "", *(f"{short[arm]}{t:.1f}, {short[arm]}{e:.1f}, {short[arm]}{c:.1f} s"
                               for arm, (t, e, c) in means.items())])
    run.table("constrained", ["seed", "best val_acc within the limits", *runs], rows)
    cpu = 100 * (means[CONSTRAINED][2] + gate_s / len(seeds)) / means[FILTERED][2]
    epochs = 100 * means[CONSTRAINED][1] / means[FILTERED][1]
    run.figure("compute_ratio", cpu, measure="CPU time, draws' measuring included", of=FILTERED)
    run.figure("compute_ratio", epochs, measure="trial-epochs", of=FILTERED)
    print(f"the constrained search needs {cpu:.0f}% of the CPU time and {epochs:.0f}% of the trial-epochs of the "
          f"search filtered afterwards")


def report(run: Run, runs: dict[str, pd.DataFrame], specs: dict[str, object], seeds: list[int]) -> None:
    """Per seed, each arm's trial-epochs to the band; then the means and their ratio."""
    runs = {arm: runs[arm] for arm in specs}  # TPE + ASHA first, whichever ran first
    spec = next(iter(specs.values()))
    budget, n = spec.budget.epochs, spec.search.num_samples
    print(f"\n{spec.method} on {spec.dataset.name}: {n} trials per seed, budget {budget} epochs; "
          f"band = best val_acc either arm finds - {100 * BAND:.1f} points")
    print(f"{'seed':>4} {'best val_acc':>12} " + " ".join(f"{arm + ' (trial-epochs)':>34}" for arm in runs))
    spent: dict[str, list[int]] = {arm: [] for arm in runs}
    cells_by_arm: dict[str, list[str]] = {arm: [] for arm in runs}
    for seed in seeds:
        found = {arm: finds(e[e["seed"] == seed], budget) for arm, e in runs.items()}
        best = max(f["found"].max() for f in found.values())
        cells = []
        for arm, f in found.items():
            compute, reached = compute_to_band(f, best - BAND)
            spent[arm].append(compute)
            run.figure("trial_epochs_to_band", compute, seed=seed, arm=arm, reached=reached)
            total = int(f["compute"].iloc[-1])
            cells.append(f"{('' if reached else '>') + str(compute)} of {total}")
            cells_by_arm[arm].append(cells[-1])
        print(f"{seed:>4} {best:>12.4f} " + " ".join(f"{c:>34}" for c in cells))
    means = {arm: statistics.mean(v) for arm, v in spent.items()}
    print("mean trial-epochs to the band: " + ", ".join(f"{arm} {m:.1f}" for arm, m in means.items()))
    ratio = 100 * means[TPE] / means[RANDOM]
    run.figure("compute_ratio", ratio, measure="trial-epochs", of=RANDOM)
    run.table("tpe_vs_random", ["seed", *map(str, seeds), "mean"],
              [[arm, *cells, f"{means[arm]:.1f}"] for arm, cells in cells_by_arm.items()])
    print(f"{TPE} needs {ratio:.0f}% of the compute of random search with full budgets")


if __name__ == "__main__":
    main()
