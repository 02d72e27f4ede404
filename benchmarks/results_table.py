"""The README's results table, from the study folders under a storage folder.

Per study: the family of its method, the mean and standard deviation over seeds of the
selected (best-on-validation) trials' test accuracy, Welch's p-value of those per-seed
figures against the `kd` study's, and the selected students' parameters and batch
latency as a ratio to their teacher's measured in the same window (their medians over
seeds; one figure per network, as the leaderboard gives: run `harness leaderboard` on
the storage first, so that every study is measured in one window). `--per-seed` prints benchmarks/README.md's table
instead, with each seed's figure. ``--json`` writes both tables (``results``, ``per_seed``) and a third,
``studies``: each study's trials by status and its time from start (its teacher ready) to end.

    uv run python benchmarks/results_table.py /tmp/mnist_studies [--link benchmarks/README.md#anchor] [--per-seed]
        [--smoke] [--json FILE]

``--smoke`` ranks three made-up studies (tests/fake_studies.py) written to a temporary folder.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import methods  # noqa: E402
from benchmarks.common import Run, common_options, fail  # noqa: E402
from reports.leaderboard import collect  # noqa: E402
from reports.load import find_studies, load_study  # noqa: E402
from reports.summary import one_latency_per_network, selected_trials, welch_p  # noqa: E402

PROMISES = {"test_acc_mean": "%", "test_acc_std": "%", "p_vs_kd": "", "params": "", "latency_x_teacher": "x"}

FAMILIES = ("baseline", "distillation", "pruning", "data-free")  # the table's order
STATUSES = ("completed", "stopped")  # first in a study's trial counts; others (failed, ...) after


def per_study(storage: Path) -> pd.DataFrame:
    """One row per study, in the table's order, with its p-value against `kd`."""
    trials = collect(storage)[0]  # the default target's figures
    chosen = selected_trials(one_latency_per_network(trials))
    chosen = chosen.assign(latency_ratio=chosen["latency_ms"] / chosen["teacher_latency_ms"])
    studies = chosen.groupby("study").agg(
        method=("method", "first"), mean=("test_acc", "mean"), std=("test_acc", "std"), seeds=("seed", "nunique"),
        per_seed=("test_acc", lambda s: ", ".join(f"{100 * v:.2f}" for v in s)),
        params=("params", "median"), ratio=("latency_ratio", "median"), state=("study_state", "first"))
    kd = studies[studies["method"].eq("kd")].iloc[0]
    studies["p"] = [welch_p(row["mean"], row["std"], row["seeds"], kd["mean"], kd["std"], kd["seeds"])
                    for _, row in studies.iterrows()]
    studies["family"] = studies["method"].map(lambda name: methods.METHODS.get(name).family)
    rank = studies["family"].map(FAMILIES.index)
    return studies.assign(rank=rank).sort_values(["rank", "mean"], ascending=[True, False])


def table(studies: pd.DataFrame, link: str | None) -> list[str]:
    """The README's table, each study linking to ``link``; with ``link`` None, the per-seed one."""
    second = "per seed" if link is None else "family"
    rows = [f"| {'study' if link is None else 'method'} | {second} | test accuracy, mean ± std over seeds "
            f"| p vs KD | params | latency / teacher's |", "|---|---|---|---|---|---|"]
    for study, row in studies.iterrows():
        name, detail = (f"`{study}`", row["per_seed"]) if link is None else (f"[`{study}`]({link})", row["family"])
        state = "" if row["state"] == "finished" else f" ({row['state']})"
        p = "-" if row["method"] == "kd" else f"{row['p']:.2f}"
        rows.append(f"| {name} | {detail} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} "
                    f"({row['seeds']} seeds){state} | {p} | {row['params']:,.0f} | {row['ratio']:.2f} |")
    return rows


def runs(storage: Path, order: list[str]) -> list[str]:
    """Per study, in ``order``: its trials by status and its time from start to end."""
    rows = ["| study | trials | search, start to end |", "|---|---|---|"]
    found = {study.name: study for study in map(load_study, find_studies(storage))}
    for name in order:
        study = found[name]
        counts = study.trials["status"].value_counts()
        counts = counts.reindex(sorted(counts.index, key=lambda s: (STATUSES.index(s) if s in STATUSES else 9, s)))
        statuses = ", ".join(f"{n} {status}" for status, n in counts.items())
        span = pd.Timestamp(study.info["ended_at"]) - pd.Timestamp(study.info["started_at"]) \
            if study.info.get("ended_at") and study.info.get("started_at") else None
        rows.append(f"| `{name}` | {counts.sum()}: {statuses} | "
                    f"{'-' if span is None else f'{span.total_seconds() / 60:.1f} min'} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage", type=Path, nargs="?", help="the folder holding the study folders")
    parser.add_argument("--link", default="benchmarks/README.md", help="where each row links to")
    parser.add_argument("--per-seed", action="store_true", help="each seed's figure, for benchmarks/README.md")
    args = common_options(parser).parse_args()
    if args.smoke:
        from tests.fake_studies import write_study

        args.storage, rng = Path(tempfile.mkdtemp(prefix="results-table-smoke-")), np.random.default_rng(0)
        for study, method in (("kd-x", "kd"), ("scratch-x", "scratch"), ("c2s2-x", "c2s2")):
            write_study(args.storage, study, method, 4, seeds=(0, 1, 2), rng=rng)
    elif args.storage is None:
        fail("give the storage folder holding the studies (or --smoke)")
    run = Run(__file__, PROMISES, args)
    studies = per_study(args.storage)
    tables = {"results": table(studies, args.link), "per_seed": table(studies, None),  # --json writes all
              "studies": runs(args.storage, list(studies.index))}
    print("\n".join(tables["per_seed" if args.per_seed else "results"]))
    for study, row in studies.iterrows():
        run.figure("test_acc_mean", 100 * row["mean"], study=study, seeds=row["seeds"])
        run.figure("test_acc_std", 100 * row["std"], study=study)
        run.figure("p_vs_kd", row["p"], study=study)
        run.figure("params", row["params"], study=study)
        run.figure("latency_x_teacher", row["ratio"], study=study)
    for name, rows in tables.items():
        run.table(name, [c.strip() for c in rows[0].strip("|").split("|")],
                  [[c.strip() for c in r.strip("|").split(" | ")] for r in rows[2:]])
    run.finish()


if __name__ == "__main__":
    main()
