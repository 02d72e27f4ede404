"""``harness leaderboard STORAGE``: every study under a folder, ranked.

Outputs, in STORAGE: ``leaderboard.parquet`` (one row per study: dataset, pair,
method, state, seeds, spread, p-value against rank 1, budgets, gaps, Pareto
membership), ``leaderboard_trials.parquet`` (every trial with its Pareto flags),
``leaderboard.html`` and ``leaderboard.md`` (docs/results.md).

Latencies are compared as intervals, one figure per network (reports.summary); the
``harness leaderboard`` command first measures a data set's studies again in one window
when they were measured in several (harness/study/windows.py), and the page says per data set
and device which it was.

Each study's trials are read once and kept in ``STORAGE/.leaderboard/`` with the
size and modification time of its files; a re-run reads only studies that are
new or changed, and every study's state. Rankings and fronts span studies, so
they are recomputed (cheap).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.store.tables import PARTS
from reports import figures
from reports.html import Page, slug
from reports.load import find_studies, load_study, read_info, study_state
from reports.summary import (
    FRONTS,
    LATENCY,
    LATENCY_HIGH,
    LATENCY_LOW,
    SIZE,
    is_missing,
    measured,
    one_latency_per_network,
    seed_spread,
    selected_trials,
    teacher_reference,
    welch_p,
    window_lines,
    with_fronts,
)
from reports.targets import DEFAULT, DEFAULT_LABEL, at_target, label, targets

FRONT_SCOPE = ["dataset", "device"]  # every method on a data set competes on the same cost axes, per device
RANK_SCOPE = ["dataset", "pair"]


@dataclass
class Leaderboard:
    table: pd.DataFrame  # one row per study and target
    trials: pd.DataFrame  # one row per trial and target
    read: int  # studies read from their folders this time
    cached: int  # studies taken from the cache unchanged


def collect(storage: Path) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """All studies' trials and their deployment targets' figures, reading only the studies
    whose files changed since the last run.

    A study's state (finished, running, interrupted) is read afresh every time: a
    driver can die without changing any file."""
    folders = find_studies(storage)  # first: a missing storage folder is an error, not a cache to create
    cache = storage / ".leaderboard"
    cache.mkdir(exist_ok=True)
    index_path = cache / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    frames, latencies, read, cached, fresh_index = [], [], 0, 0, {}
    for folder in folders:
        key = _fingerprint(folder)
        name = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
        path, targets_path = cache / f"{name}.parquet", cache / f"{name}.latencies.parquet"
        if index.get(name) == key and path.is_file() and targets_path.is_file():
            frames.append(pd.read_parquet(path))
            latencies.append(pd.read_parquet(targets_path))
            cached += 1
        else:
            study = load_study(folder)
            trials = study.trials.assign(study_folder=str(folder))
            trials.to_parquet(path, index=False)
            study.latencies.to_parquet(targets_path, index=False)
            frames.append(trials)
            latencies.append(study.latencies)
            read += 1
        frames[-1] = frames[-1].assign(study_state=study_state(read_info(folder)))
        fresh_index[name] = key
    index_path.write_text(json.dumps(fresh_index, indent=1))
    trials = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    measured = [frame for frame in latencies if not frame.empty]
    return trials, pd.concat(measured, ignore_index=True) if measured else pd.DataFrame(), read, cached


def rank(trials: pd.DataFrame, budgets: tuple[float, ...] = (0.5, 1.0)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ranked table (one row per study) and the trials with their Pareto flags."""
    trials = one_latency_per_network(trials)
    trials["device"] = trials["device"].astype(object).where(trials["device"].notna(), "n/a") \
        if "device" in trials else "n/a"
    trials = with_fronts(trials, by=FRONT_SCOPE)
    keys = [*RANK_SCOPE, "teacher", "student", "method", "study"]
    counts = trials.groupby(keys, dropna=False)["status"].value_counts().unstack(fill_value=0)
    table = counts.reindex(columns=["completed", "stopped", "error", "running"], fill_value=0)
    table["trials"] = counts.sum(axis=1)
    spread = seed_spread(trials, keys).set_index(keys)
    table = table.join(spread, how="left").reset_index()
    if "limits" in trials:  # a study searched within limits selects among the trials within them
        table["limits"] = table["study"].map(trials.groupby("study")["limits"].first())
        table["acc_within_limits"] = table["test_acc_mean"].where(table["limits"].notna())
    teacher = trials.groupby("study")[["teacher_test_acc", "teacher_latency_ms", "teacher_size_bytes"]].median()
    table = table.join(teacher, on="study")
    table["state"] = table["study"].map(trials.groupby("study")["study_state"].first())
    table["device"] = table["study"].map(trials[measured(trials)].groupby("study")["device"].first())
    table["gap_to_teacher"] = table["test_acc_mean"] - table["teacher_test_acc"]
    scratch = table[table["method"].eq("scratch")].groupby(["dataset", "student"])["test_acc_mean"].max()
    table["gap_to_scratch"] = table["test_acc_mean"] - pd.Series(
        [scratch.get((d, s), np.nan) for d, s in zip(table["dataset"], table["student"], strict=True)],
        index=table.index)
    for fraction in budgets:
        for cost, column in ((LATENCY, "teacher_latency_ms"), (SIZE, "teacher_size_bytes")):
            # A trial without a teacher (scratch) is held to its data set's teacher, as measured elsewhere.
            reference = teacher_reference(trials, column)
            limit = reference * fraction
            within = trials[~(trials[cost] <= limit)].index  # NaN cost or over budget
            best = seed_spread(trials.drop(index=within), ["study"]).set_index("study")["test_acc_mean"]
            table[f"acc_{'latency' if cost == LATENCY else 'size'}_le_{fraction:g}x_teacher"] = table["study"].map(best)
    relative_costs(table, trials)
    chosen = selected_trials(trials)
    for column in FRONTS:
        on = trials[trials[column]].groupby("study").size()
        table[f"{column}_trials"] = table["study"].map(on).fillna(0).astype(int)
    on_front = set(chosen.loc[chosen["pareto"].astype(bool), "study"])
    table["selected_on_front"] = table["study"].isin(on_front)
    table = table.sort_values([*RANK_SCOPE, "test_acc_mean", "study"], ascending=[True, True, False, True],
                              na_position="last").reset_index(drop=True)
    table["rank"] = accuracy_rank(table)
    table["rank_shared"] = table.groupby([*RANK_SCOPE, "rank"], dropna=False)["rank"].transform("size") > 1
    table["p_vs_leader"] = p_vs_leader(table)
    table["latency_rank"] = latency_rank(table)
    table["latency_vs_leader"] = latency_vs_leader(table)
    return table, trials


def accuracy_rank(table: pd.DataFrame) -> pd.Series:
    """Per data set and pair, 1 + the number of studies measurably more accurate: a higher mean
    test accuracy that the seeds tell apart (Welch's p below 0.05 where both have two seeds or
    more; any higher mean where either has one). Equal figures, or gaps within the seeds'
    spread, share a rank; a study without a finished trial comes after every one with."""
    ranks = pd.Series(np.nan, index=table.index)
    for _, group in table.groupby(RANK_SCOPE, dropna=False, sort=False):
        scored = group[group["test_acc_mean"].notna()]
        for i in group.index:
            if i not in scored.index:
                ranks[i] = len(scored) + 1
                continue
            mine = table.loc[i, ["test_acc_mean", "test_acc_std", "seeds"]]
            ranks[i] = 1 + sum(_more_accurate(table.loc[j, ["test_acc_mean", "test_acc_std", "seeds"]], mine)
                               for j in scored.index if j != i)
    return ranks.astype(int)


def _more_accurate(a: pd.Series, b: pd.Series) -> bool:
    if not a["test_acc_mean"] > b["test_acc_mean"]:
        return False
    if min(a["seeds"], b["seeds"]) < 2:
        return True
    return bool(welch_p(*a, *b) < 0.05)


def shown_rank(row: dict) -> str:
    """``=1`` for a rank the study shares, else its number."""
    return f"{'=' if row.get('rank_shared') else ''}{row['rank']:.0f}"


def relative_costs(table: pd.DataFrame, trials: pd.DataFrame) -> None:
    """Latency (with its interval) and size as multiples of the teacher's, measured in the
    same window; a study without a teacher (scratch) is held to its data set's teacher."""
    for cost, column in ((LATENCY, "teacher_latency_ms"), (SIZE, "teacher_size_bytes")):
        reference = teacher_reference(table, column)
        name = "latency" if cost == LATENCY else "size"
        table[f"{name}_x_teacher"] = table[cost] / reference
        if cost == LATENCY and LATENCY_LOW in table:
            table["latency_x_teacher_low"] = table[LATENCY_LOW] / reference
            table["latency_x_teacher_high"] = table[LATENCY_HIGH] / reference


def _faster(a_high: float, b_low: float) -> bool:
    """Measurably faster: the whole of one interval below the other's."""
    return bool(a_high < b_low)


def _latency_bounds(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each row's latency interval; the median itself where a row has none."""
    return tuple(table.get(bound, table[LATENCY]).fillna(table[LATENCY]) for bound in (LATENCY_LOW, LATENCY_HIGH))


def latency_rank(table: pd.DataFrame) -> pd.Series:
    """Per data set and device, 1 + the number of studies measurably faster (intervals apart):
    studies whose latency intervals overlap share a rank, however their medians fall."""
    low, high = _latency_bounds(table)
    ranks = pd.Series(np.nan, index=table.index)
    for _, group in table[table[LATENCY].notna()].groupby(["dataset", "device"], dropna=False):
        for i in group.index:
            ranks[i] = 1 + sum(_faster(high[j], low[i]) for j in group.index if j != i)
    return ranks


def latency_vs_leader(table: pd.DataFrame) -> pd.Series:
    """Against rank 1 of its group: ``faster`` or ``slower`` when the intervals are apart,
    ``same`` when they overlap (not told apart), empty for rank 1 itself."""
    low, high = _latency_bounds(table)
    leader = table.groupby(RANK_SCOPE, dropna=False)["rank"].transform(lambda r: r.index[0])  # the top row
    out = []
    for i, j in zip(table.index, leader, strict=True):
        if i == j or pd.isna(table.at[i, LATENCY]) or pd.isna(table.at[j, LATENCY]) \
                or table.at[i, "device"] != table.at[j, "device"]:
            out.append("")
        else:
            out.append("faster" if _faster(high[i], low[j]) else "slower" if _faster(high[j], low[i]) else "same")
    return pd.Series(out, index=table.index)


def p_vs_leader(table: pd.DataFrame) -> pd.Series:
    """Per study, Welch's p-value of its seeds' test accuracy against its group's rank 1
    (NaN for rank 1 itself and where either has fewer than two seeds)."""
    spread = ["test_acc_mean", "test_acc_std", "seeds"]
    leader = table.groupby(RANK_SCOPE, dropna=False)[spread].transform("first")
    first = table.groupby(RANK_SCOPE, dropna=False).cumcount() == 0
    return pd.Series([np.nan if top_row else welch_p(*mine, *top) for top_row, mine, top in
                      zip(first, table[spread].itertuples(index=False), leader.itertuples(index=False),
                          strict=True)],
                     index=table.index, dtype=float)


def build_leaderboard(storage: str | Path, budgets: tuple[float, ...] = (0.5, 1.0)) -> tuple[Leaderboard, list[Path]]:
    storage = Path(storage)
    trials, latencies, read, cached = collect(storage)
    if trials.empty:
        from reports.load import ReportError

        raise ReportError(f"{storage}: no study folders (study.json) found")
    tables, ranked = [], []
    for target, batch in [(DEFAULT, 0), *targets(latencies)]:  # each target ranked on its own figures
        view = at_target(trials, latencies, target, batch)
        if view.empty:
            continue
        table, view = rank(view, budgets)
        marks = {"target": target, "target_batch": batch, "target_label": label(latencies, target, batch)}
        tables.append(table.assign(**marks))
        ranked.append(view.assign(**marks))
    board = Leaderboard(pd.concat(tables, ignore_index=True), pd.concat(ranked, ignore_index=True), read, cached)
    table, trials = board.table, board.trials
    paths = [storage / "leaderboard.parquet", storage / "leaderboard_trials.parquet",
             storage / "leaderboard.md", storage / "leaderboard.html"]
    table.to_parquet(paths[0], index=False)
    trials.to_parquet(paths[1], index=False)
    paths[2].write_text(markdown(table, trials), encoding="utf-8")
    html_page(board).write(paths[3])
    return board, paths


SHOWN = {"rank": "{}", "method": "{}", "study": "{}", "state": "{}", "seeds": "{:.0f}", "test_acc_mean": "{:.2%}",
         "test_acc_std": "{:.2%}", "p_vs_leader": "{:.2f}", "gap_to_teacher": "{:+.2%}", "gap_to_scratch": "{:+.2%}",
         LATENCY: "{:.3g}", LATENCY_LOW: "{:.3g}", LATENCY_HIGH: "{:.3g}", "latency_x_teacher": "{:.2f}",
         "latency_rank": "{:.0f}", "latency_vs_leader": "{}", "size_x_teacher": "{:.2f}", SIZE: "{:,.0f}",
         "device": "{}", "limits": "{}", "pareto_trials": "{}", "selected_on_front": "{}",
         "completed": "{}", "stopped": "{}", "error": "{}", "running": "{}"}
INTRO = ("Per data set and teacher->student pair, ranked by mean test accuracy of each seed's best-on-validation "
         "trial; =N: a rank shared with studies not measurably apart (equal, or p above 0.05). p: Welch's t-test "
         "of the seeds' test accuracy against the group's top study; above 0.05, the gap is "
         "within what the seeds' spread explains. Latency and size are multiples of the teacher's, latency with its "
         "interval (the median's, over interleaved rounds); every trial of one network shares one latency, and "
         "latencies whose intervals overlap count as equal (latency_rank, latency_vs_leader, the Pareto flags). "
         "Gaps are in accuracy points; `acc_*_le_Nx_teacher` is the same figure among trials within N times the "
         "teacher's latency or size, and `acc_within_limits` a study's own figure under the limits it was searched "
         "within (its `limits`: it selects among the trials within them); Pareto flags are on validation "
         "accuracy, latency and size across every method on the data set and device.")


def _shown(table: pd.DataFrame) -> list[str]:
    return [c for c in SHOWN if c in table] + [c for c in table if c.startswith("acc_")]


def by_target(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The frame's rows per deployment target, the default first: (the target's label, rows)."""
    if "target_label" not in frame:
        return [(DEFAULT_LABEL, frame)]
    return [(str(name), group) for name, group in frame.groupby("target_label", sort=False)]


def markdown(table: pd.DataFrame, trials: pd.DataFrame) -> str:
    out = ["# Leaderboard", "", INTRO, ""]
    several = len(by_target(table)) > 1
    for (where, part), (_, part_trials) in zip(by_target(table), by_target(trials), strict=True):
        if several:
            out += [f"## Target {where}", ""]
        out += [f"- {'**warning** ' if warning else ''}{line}" for line, warning in window_lines(part_trials)] + [""]
        columns = _shown(part)
        for (dataset, pair), group in part.groupby(RANK_SCOPE, dropna=False):
            out += [f"{'###' if several else '##'} {dataset}: {pair}", "", "| " + " | ".join(columns) + " |",
                    "|" + "---|" * len(columns)]
            for row in group.to_dict("records"):
                row["rank"] = shown_rank(row)
                out.append("| " + " | ".join(_format(row.get(c), SHOWN.get(c, "{:.2%}")) for c in columns) + " |")
            out.append("")
    return "\n".join(out)


ESSENTIAL = ("rank", "method", "study", "test accuracy", "p", "latency × teacher", "size × teacher")


def essential(group: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader needs, formatted: what fits a 1400-pixel window."""
    rows = []
    for row in group.to_dict("records"):
        study = row["study"] if row.get("state") in (None, "finished") else f"{row['study']} ({row['state']})"
        accuracy = _format(row.get("test_acc_mean"), "{:.2%}")
        if not is_missing(row.get("test_acc_std")):
            accuracy += f" ± {row['test_acc_std']:.2%}"
        seeds = 0 if is_missing(row.get("seeds")) else int(row["seeds"])
        accuracy += f" ({seeds} seed{'s' * (seeds != 1)})"
        latency = _format(row.get("latency_x_teacher"), "{:.2f}×")
        low, high = row.get("latency_x_teacher_low"), row.get("latency_x_teacher_high")
        if not is_missing(low) and not is_missing(high) and f"{low:.2f}" != f"{high:.2f}":
            latency += f" [{low:.2f}–{high:.2f}]"
        if row.get("latency_vs_leader"):
            latency += {"same": ", = #1", "faster": ", faster than #1", "slower": ", slower than #1"}[
                row["latency_vs_leader"]]
        rows.append([shown_rank(row), row["method"], study, accuracy, _format(row.get("p_vs_leader"), "{:.2f}"),
                     latency, _format(row.get("size_x_teacher"), "{:.2f}×")])
    return pd.DataFrame(rows, columns=list(ESSENTIAL))


def html_page(board: Leaderboard) -> Page:
    page = Page("Leaderboard")
    sections = list(zip(by_target(board.table), by_target(board.trials), strict=True))
    trials = board.trials.drop_duplicates(["study", "trial_id"]) if "trial_id" in board.trials else board.trials
    page.paragraph(f"{board.table['study'].nunique()} studies, {len(trials)} trials"
                   + (f", ranked on each of {len(sections)} deployment targets" if len(sections) > 1 else "")
                   + f". {INTRO}", "note")
    for (where, table), (_, part_trials) in sections:
        if len(sections) > 1:
            page.heading(f"Target {where}")
        for line, warning in window_lines(part_trials):
            page.paragraph(line, "warn" if warning else "note")
        columns = _shown(table)
        for (dataset, pair), group in table.groupby(RANK_SCOPE, dropna=False):
            page.heading(f"{dataset}: {pair}")
            page.table(essential(group), more=group[columns],
                       more_formats={c: SHOWN.get(c, "{:.2%}") for c in columns}, text=("method", "study"))
        for (dataset, device), group in part_trials.groupby(FRONT_SCOPE, dropna=False):
            page.heading(f"{dataset} on {device}: accuracy against latency, every method")
            page.figure(figures.pareto_chart(group, LATENCY, "pareto_latency", []),
                        f"front_{slug(dataset)}_{slug(device)}")
    return page


def _format(value, fmt: str) -> str:
    if is_missing(value):
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _fingerprint(folder: Path) -> str:
    """The study's files as they are now: a running study's new parts change it."""
    names = ["study.json", "trials.parquet", "epochs.parquet", "latencies.parquet"]
    if (folder / PARTS).is_dir():
        names += sorted(f"{PARTS}/{p.name}" for p in (folder / PARTS).glob("*.parquet")
                        if p.name.startswith(("trials-", "latencies-")))
    parts = []
    for name in names:
        path = folder / name
        stat = path.stat() if path.is_file() else None
        parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}" if stat else f"{name}:-")
    return "|".join(parts)
