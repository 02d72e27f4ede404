"""The README's results table, from the study folders under a storage folder.

Per study: the family of its method, the mean and standard deviation over seeds of the
selected (best-on-validation) trials' test accuracy, Welch's p-value of those per-seed
figures against the `kd` study's, and the selected students' parameters and batch
latency as a ratio to their teacher's, measured right after each student in the same
window (their medians over seeds).

    uv run python benchmarks/results_table.py /tmp/mnist_studies [--link benchmarks/README.md#anchor]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import methods
from reports.leaderboard import collect
from reports.summary import selected_trials, welch_p

FAMILIES = ("baseline", "distillation", "pruning", "data-free")  # the table's order


def table(storage: Path, link: str) -> list[str]:
    trials, _, _ = collect(storage)
    chosen = selected_trials(trials).assign(latency_ratio=lambda f: f["latency_ms"] / f["teacher_latency_ms"])
    per_study = chosen.groupby("study").agg(
        method=("method", "first"), mean=("test_acc", "mean"), std=("test_acc", "std"), seeds=("seed", "nunique"),
        params=("params", "median"), ratio=("latency_ratio", "median"), state=("study_state", "first"))
    kd = per_study[per_study["method"].eq("kd")].iloc[0]
    rows = ["| method | family | test accuracy, mean ± std over seeds | p vs KD | params | latency / teacher's |",
            "|---|---|---|---|---|---|"]
    family = {name: methods.METHODS.get(name).family for name in per_study["method"]}
    per_study["family"] = per_study["method"].map(family)
    order = per_study.assign(rank=per_study["family"].map(FAMILIES.index)).sort_values(["rank", "mean"],
                                                                                       ascending=[True, False])
    for study, row in order.iterrows():
        p = welch_p(row["mean"], row["std"], row["seeds"], kd["mean"], kd["std"], kd["seeds"])
        shown_p = "-" if row["method"] == "kd" else f"{p:.2f}"
        state = "" if row["state"] == "finished" else f" ({row['state']})"
        rows.append(f"| [`{study}`]({link}) | {row['family']} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} "
                    f"({row['seeds']} seeds){state} | {shown_p} | {row['params']:,.0f} | {row['ratio']:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage", type=Path)
    parser.add_argument("--link", default="benchmarks/README.md", help="where each row links to")
    args = parser.parse_args()
    print("\n".join(table(args.storage, args.link)))


if __name__ == "__main__":
    main()
