"""Before a leaderboard ranks: each data set's studies measured in one window.

Every sweep measures its own trials again when it ends, so two studies run one
after the other hold latencies from two windows, and the same network can come
out 10-30% apart between them on a shared VM (benchmarks/README.md, "One network,
one latency"): noise a ranking would read as speed. ``harness
leaderboard`` therefore groups the studies by data set and device kind, and
where a group's completed trials come from more than one window (on the default
target or on any deployment target), measures its finished studies again together
(harness.study.remeasure: each distinct network once, interleaved). ``--no-remeasure``
skips that; the leaderboard then says how many windows its figures come from
(reports/leaderboard.py).
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from harness.errors import HarnessError
from harness.store.location import Location
from harness.store.tables import read_table, table_exists
from reports.load import find_studies, read_info, study_state


@dataclass
class Group:
    """The studies of one data set on one kind of device."""

    dataset: str
    device: str  # "cpu" or "gpu": what the studies' trials asked for
    measurable: list[str] = field(default_factory=list)  # finished studies (paths under the storage)
    left: list[str] = field(default_factory=list)  # "<study>: why it cannot be measured again"
    windows: set[str] = field(default_factory=set)  # the windows its completed trials were measured in
    # Per deployment target (latencies.parquet): the windows its figures come from.
    target_windows: dict[str, set[str]] = field(default_factory=dict)

    @property
    def one_window(self) -> bool:
        return len(self.windows) <= 1 and all(len(w) <= 1 for w in self.target_windows.values())

    @property
    def name(self) -> str:
        return f"{self.dataset} ({self.device})"


def plan_groups(root: Location) -> list[Group]:
    """Each group's studies, which can be measured again, and the windows they hold now."""
    groups: dict[tuple[str, str], Group] = {}
    for folder in find_studies(root.local):
        info = read_info(folder)
        spec, state = info.get("spec") or {}, study_state(info)
        device = "gpu" if (spec.get("resources") or {}).get("gpu") else "cpu"
        dataset = str((spec.get("dataset") or {}).get("name"))
        group = groups.setdefault((dataset, device), Group(dataset, device))
        trials = read_table(folder, "trials")
        done = trials[trials["status"].eq("completed")] if "status" in trials else trials.iloc[:0]
        if done.empty:
            continue
        windows = done["latency_window"] if "latency_window" in done else pd.Series(None, index=done.index)
        # A figure taken in its trial is its own window (beside whatever ran with it).
        group.windows |= {w if isinstance(w, str) else f"trial {t}"
                          for w, t in zip(windows, done["trial_id"], strict=True)}
        if table_exists(folder, "latencies"):
            targets = read_table(folder, "latencies")
            targets = targets[targets["trial_id"].isin(done["trial_id"])]
            for name, rows in targets.groupby("target"):
                group.target_windows.setdefault(str(name), set()).update(
                    w if isinstance(w, str) else "missing" for w in rows["latency_window"])
        rel = folder.relative_to(root.local).as_posix()
        name = info.get("study", folder.name)
        if state != "finished":
            group.left.append(f"{name}: {state}")
        elif (spec.get("resources") or {}).get("compile"):
            group.left.append(f"{name}: compiled networks (resources.compile)")
        else:
            group.measurable.append(rel)
    return [g for g in groups.values() if g.measurable or g.left]


def measure_in_one_window(root: Location, rounds: int | None, address: str | None,
                          say: Callable[[str], None] = print) -> None:
    """Measure again, together, each group whose trials span several windows, saying what
    it does as it goes. A study that cannot be measured again is named, never fatal."""
    from harness.store.lock import StudyLock
    from harness.study.cluster import connect
    from harness.study.remeasure import load_finished_studies

    for group in plan_groups(root):
        causes: dict[str, list[str]] = {}  # why -> the studies it kept out: one line per cause
        if group.one_window:
            say(f"{group.name}: latencies already measured in one window (per deployment target)")
        elif group.measurable:
            loaded = []  # (name, study) of each study that could be read
            for rel in group.measurable:
                try:
                    loaded += [(rel, study) for study in load_finished_studies([root.uri_of(rel)])]
                except HarnessError as error:
                    causes.setdefault(str(error), []).append(rel)
            with ExitStack() as locks:
                studies = []  # those this leaderboard holds the lock of
                for rel, (students, writer) in loaded:
                    try:
                        locks.enter_context(StudyLock(writer.location or writer.folder, "leaderboard"))
                        studies.append((students, writer))
                    except HarnessError as error:
                        causes.setdefault(str(error), []).append(rel)
                if studies:
                    connect(address, sorted({f for students, _ in studies for f in students.spec.code}))
                    _measure(group, studies, rounds, say)
        for why in group.left:
            say(f"{group.name}: not measured again: {why}")
        for why, names in causes.items():
            say(f"{group.name}: {', '.join(names)} not measured again (ranked on their own windows' figures): {why}")


def _measure(group: Group, studies: list, rounds: int | None, say: Callable[[str], None]) -> None:
    from harness.study.remeasure import remeasure_studies

    trials = sum(len(students.students) + len(students.same_as) for students, _ in studies)
    say(f"{group.name}: measuring {len(studies)} finished studies ({trials} completed trials) again in one "
        f"window (--no-remeasure skips this)")
    try:
        for line in remeasure_studies(studies, rounds):
            say(f"  {line}")
    except Exception as error:  # the ranking still stands on the figures as they are
        cause = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        say(f"{group.name}: measuring again failed ({cause}); ranking the figures as they are")
