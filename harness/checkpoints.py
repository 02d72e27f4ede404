"""Trial checkpoints on disk: Tune writes one per report; a finished trial needs only its last.

A trial that runs keeps all of its checkpoints: the experiment state that ``--resume``
restores names each trial's checkpoint as it was when that state was saved, and a
trial Tune saw running then goes on from that one. A finished trial's older checkpoints
go once a saved experiment state records it as finished, that is after the snapshot
that follows its end; at the end of a seed, every trial keeps only its last. A study's
disk use is then about one checkpoint per finished trial, not one per report.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from harness.results import LiveCallback


def keep_last_checkpoint(trial_folder: Path) -> None:
    for folder in sorted(trial_folder.glob("checkpoint_*"))[:-1]:
        shutil.rmtree(folder, ignore_errors=True)


def prune_checkpoints(run_path: Path) -> None:
    """Once a seed's run has ended, each trial keeps only its last checkpoint."""
    for trial in run_path.glob("*/"):
        keep_last_checkpoint(trial)


class FinishedTrialCheckpoints(LiveCallback):
    """Removes a finished trial's older checkpoints at the second experiment snapshot after
    its end: the first of them records it as finished (Tune's loop ends trials and takes
    snapshots in one thread, so a trial that ended before a snapshot began is in it)."""

    def __init__(self, study: str) -> None:
        super().__init__(f"{study}#checkpoints")
        self._ended: list[Path] = []  # trial folders, since the last snapshot
        self._recorded: list[Path] = []  # ended before the last snapshot, which records them

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if getattr(trial, "checkpoint", None) is not None:
            self._ended.append(Path(trial.checkpoint.path).parent)

    def get_state(self) -> None:
        """Called as Tune saves the experiment: the previous save is complete."""
        for folder in self._recorded:
            keep_last_checkpoint(folder)
        self._recorded, self._ended = self._ended, []
        return None
