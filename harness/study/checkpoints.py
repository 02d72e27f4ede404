"""Trial checkpoints on disk: Tune writes one per report; a finished trial needs only its last.

A trial that runs keeps all of its checkpoints: the experiment state that ``--resume``
restores names each trial's checkpoint as it was when that state was saved, and a
trial Tune saw running then goes on from that one. A finished trial's older checkpoints
go once a saved experiment state records it as finished, that is after the snapshot
that follows its end; at the end of a seed, every trial keeps only its last. A study's
disk use is then about one checkpoint per finished trial, not one per report.
"""
from __future__ import annotations

import posixpath

import pyarrow.fs as pafs

from harness.study.results import LiveCallback


def _folders(fs: pafs.FileSystem, path: str) -> list[str]:
    selector = pafs.FileSelector(path, allow_not_found=True)
    return sorted(i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.Directory)


def keep_last_checkpoint(fs: pafs.FileSystem, trial_folder: str) -> None:
    """Paths in ``fs``'s terms: a local folder or a prefix in a bucket alike."""
    for folder in [f for f in _folders(fs, trial_folder) if posixpath.basename(f).startswith("checkpoint_")][:-1]:
        try:
            fs.delete_dir(folder)
        except OSError:
            pass  # gone already; or kept, which costs space, never results


def prune_checkpoints(fs: pafs.FileSystem, run_path: str) -> None:
    """Once a seed's run has ended, each trial keeps only its last checkpoint."""
    for trial in _folders(fs, run_path):
        keep_last_checkpoint(fs, trial)


class FinishedTrialCheckpoints(LiveCallback):
    """Removes a finished trial's older checkpoints at the second experiment snapshot after
    its end: the first of them records it as finished (Tune's loop ends trials and takes
    snapshots in one thread, so a trial that ended before a snapshot began is in it)."""

    def __init__(self, study: str, fs: pafs.FileSystem | None = None) -> None:
        super().__init__(f"{study}#checkpoints")
        self.fs = fs or pafs.LocalFileSystem()  # where Tune keeps the checkpoints
        self._ended: list[str] = []  # trial folders, since the last snapshot
        self._recorded: list[str] = []  # ended before the last snapshot, which records them

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if getattr(trial, "checkpoint", None) is not None:
            self._ended.append(posixpath.dirname(trial.checkpoint.path))

    def get_state(self) -> None:
        """Called as Tune saves the experiment: the previous save is complete."""
        for folder in self._recorded:
            keep_last_checkpoint(self.fs, folder)
        self._recorded, self._ended = self._ended, []
        return None
