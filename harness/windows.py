"""Before a leaderboard ranks: each data set's studies measured in one window.

Every sweep measures its own trials again when it ends, so two studies run one
after the other hold latencies from two windows, and the same network can come
out 10% apart between them: noise a ranking would read as speed. ``harness
leaderboard`` therefore groups the studies by data set and device kind, and
where a group's completed trials come from more than one window, measures its
finished studies again together (harness.remeasure: each distinct network once,
interleaved). ``--no-remeasure`` skips that; the leaderboard then says how many
windows its figures come from (reports/leaderboard.py).
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import pandas as pd

from harness.errors import HarnessError
from harness.location import Location
from reports.load import find_studies, load_study


@dataclass
class Group:
    """The studies of one data set on one kind of device."""

    dataset: str
    device: str  # "cpu" or "gpu": what the studies' trials asked for
    measurable: list[str] = field(default_factory=list)  # finished studies (paths under the storage)
    left: list[str] = field(default_factory=list)  # "<study>: why it cannot be measured again"
    windows: set[str] = field(default_factory=set)  # the windows its completed trials were measured in

    @property
    def name(self) -> str:
        return f"{self.dataset} ({self.device})"


def plan_groups(root: Location) -> list[Group]:
    """Each group's studies, which can be measured again, and the windows they hold now."""
    groups: dict[tuple[str, str], Group] = {}
    for folder in find_studies(root.local):
        study = load_study(folder)
        spec = study.spec
        device = "gpu" if (spec.get("resources") or {}).get("gpu") else "cpu"
        dataset = str((spec.get("dataset") or {}).get("name"))
        group = groups.setdefault((dataset, device), Group(dataset, device))
        done = study.trials[study.trials["status"].eq("completed")]
        if done.empty:
            continue
        windows = done["latency_window"] if "latency_window" in done else pd.Series(None, index=done.index)
        # A figure taken in its trial is its own window (beside whatever ran with it).
        group.windows |= {w if isinstance(w, str) else f"trial {t}" for w, t in zip(windows, done["trial_id"])}
        rel = folder.relative_to(root.local).as_posix()
        if study.running:
            group.left.append(f"{study.name}: {study.state}")
        elif (spec.get("resources") or {}).get("compile"):
            group.left.append(f"{study.name}: compiled networks (resources.compile)")
        else:
            group.measurable.append(rel)
    return [g for g in groups.values() if g.measurable or g.left]


def measure_in_one_window(root: Location, rounds: int | None, address: str | None) -> list[str]:
    """Measure again, together, each group whose trials span several windows; the lines
    to print. A study that cannot be measured again is named, never fatal."""
    from harness.cluster import connect
    from harness.remeasure import load_finished_studies, remeasure_studies
    from harness.storage import StudyLock

    lines = []
    for group in plan_groups(root):
        if len(group.windows) <= 1 or not group.measurable:
            if len(group.windows) <= 1:
                lines.append(f"{group.name}: latencies already measured in one window")
            lines += [f"{group.name}: not measured again: {why}" for why in group.left]
            continue
        studies = []
        for rel in group.measurable:
            try:
                studies += load_finished_studies([root.uri_of(rel)])
            except HarnessError as error:
                group.left.append(str(error))
        with ExitStack() as locks:
            for students, writer in list(studies):
                try:
                    locks.enter_context(StudyLock(writer.location or writer.folder, "leaderboard"))
                except HarnessError as error:
                    studies.remove((students, writer))
                    group.left.append(str(error))
            if studies:
                connect(address, sorted({f for students, _ in studies for f in students.spec.code}))
                lines.append(f"{group.name}: measuring {len(studies)} finished studies again in one window "
                             f"(--no-remeasure skips this)")
                try:
                    lines += [f"  {line}" for line in remeasure_studies(studies, rounds)]
                except Exception as error:  # the ranking still stands on the figures as they are
                    cause = (str(error).strip().splitlines() or [type(error).__name__])[-1]
                    lines.append(f"{group.name}: measuring again failed ({cause}); ranking the figures as they are")
        lines += [f"{group.name}: not measured again: {why}" for why in group.left]
    return lines
