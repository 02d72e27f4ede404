"""Where each seed's Optuna study is kept while it runs, so that others can watch it.

By default a journal file in the study's folder (``optuna.journal``, Optuna's
``JournalStorage``); ``search.storage`` names another: an RDB URL (``sqlite:///...``,
``postgresql://...``) or a journal file's path. Each seed is one Optuna study, named
``<study>.seed<N>``. ``optuna.load_study`` and ``optuna-dashboard`` open it while the
sweep runs (docs/results.md).

Tune saves its searcher's state at each snapshot; the storage itself is not part of that
state (a journal's path differs from one machine's mirror to another's, an RDB URL may
not be reachable from where the state is read), so a searcher restored by ``--resume``
reopens the storage the sweep opened (:func:`register`) and finds its trials there.
"""
from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from harness.errors import HarnessError, SpecError

JOURNAL = "optuna.journal"
_OPEN: dict[str, BaseStorage] = {}  # Optuna study name -> the storage this sweep opened for it


def study_name(study: str, seed: int) -> str:
    return f"{study}.seed{seed}"


def check_storage_url(url: str, where: str = "search.storage") -> None:
    """A URL that would put a password in the spec (and so in study.json) is refused."""
    if "://" in url and urllib.parse.urlparse(url).password:
        raise SpecError(f"{where}: the URL carries a password; give it the way the database's client reads "
                        f"it (for PostgreSQL, ~/.pgpass or PGPASSWORD), never in the spec")


class StudyJournal(JournalFileBackend):
    """The study folder's journal, which only the sweep holding the study's lock writes: each
    write is one ``write`` on a file kept open for appending, without Optuna's lock file and
    fsync per write. Readers in other processes see every complete line at once (a line being
    written is skipped until it ends); a killed driver loses nothing it wrote, and only a
    machine that loses power could lose the last writes, as it could Tune's own snapshot.
    Measured: benchmarks/storage_cost.py."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        os.write(self._fd, lines.encode())

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_fd"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def open_storage(url: str | None, folder: Path) -> BaseStorage:
    """The storage of a study whose folder (or local mirror) is ``folder``; one line if it cannot open."""
    if url is None:
        folder.mkdir(parents=True, exist_ok=True)
        return JournalStorage(StudyJournal(str(folder / JOURNAL)))
    try:
        if "://" in url:
            return RDBStorage(url)
        path = Path(url).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except Exception as exc:  # SQLAlchemy and the database driver raise many kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessError(f"search.storage: cannot open Optuna storage '{url}' ({first})") from None


def register(name: str, storage: BaseStorage) -> None:
    """The storage a searcher of this Optuna study reopens when Tune restores it."""
    _OPEN[name] = storage


def reopen(name: str) -> BaseStorage:
    try:
        return _OPEN[name]
    except KeyError:
        raise HarnessError(f"Optuna study '{name}': its storage was not opened by this sweep") from None


def forget_earlier(storage: BaseStorage, name: str) -> bool:
    """A new run of a study starts a new Optuna study: an earlier one of the same name (in a
    storage of the user's; the default journal moves to previous/ with the results) goes."""
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        return False
    return True
