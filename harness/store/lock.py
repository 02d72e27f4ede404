"""The storage folder: checked writable before any work, one writer per study, and
every failure to write it said in one line.

The lock is ``<study>/.lock``, created exclusively (``O_CREAT | O_EXCL``), holding the
host, process id and process start time of its holder. On S3 it is created with
``If-None-Match: *`` (harness.store.conditional): of two takers, the store lets one write.
On object storage without that (another provider, boto3 not installed, a server that
ignores the header), a taker writes its record, waits ``SETTLE_S`` and reads it back: of
two takers within that time, the later write wins and the other refuses. A lock whose holder is gone (on this host:
no such process, or another process that reused its id) is stale and taken over;
a holder on another host is trusted until its lock is deleted by hand.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from harness.errors import HarnessError
from harness.store.conditional import create_if_absent
from harness.store.location import Location

LOCK_FILE = ".lock"
SETTLE_S = 1.0


def process_start(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (Linux); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the command's parentheses


def this_process() -> dict[str, Any]:
    """Who we are, as a lock or study.json records it."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}


def holder_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process a record names still runs: None when it ran on another host."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return None
    try:
        os.kill(record["pid"], 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    start = process_start(record["pid"])
    return record.get("start") is None or start is None or start == record["start"]


@contextlib.contextmanager
def writing(where: Path) -> Iterator[None]:
    """An OS error while writing under ``where`` becomes one line naming the path and the error."""
    try:
        yield
    except OSError as exc:
        raise HarnessError(f"storage: cannot write '{exc.filename or where}' ({exc.strerror or exc})") from None


def probe_storage(root: Location) -> None:
    """Create the storage folder and write a file in it, or say in one line why not: a missing
    bucket and refused credentials are found here, before any work."""
    probe = f".probe-{socket.gethostname()}-{os.getpid()}"
    if root.remote:
        bucket = root.base.split("/")[0]
        if not Location(root.uri, root.fs, bucket, root.local).exists():
            raise HarnessError(f"storage {root.uri}: bucket '{bucket}' does not exist (or these credentials "
                               f"may not see it); create it first")
        root.write_bytes(b"", probe)
        root.delete(probe)
        return
    with writing(root.local):
        root.local.mkdir(parents=True, exist_ok=True)
        (root.local / probe).write_bytes(b"")
        (root.local / probe).unlink()


def lock_holder(folder: Path | Location) -> dict[str, Any] | None:
    """Who holds the study's lock: None when nobody does or its holder is gone."""
    try:
        if isinstance(folder, Location):
            if not folder.exists(LOCK_FILE):
                return None
            holder = json.loads(folder.read_bytes(LOCK_FILE))
        else:
            holder = json.loads((folder / LOCK_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        holder = {}  # unreadable: held, by someone unknown
    return None if holder_alive(holder) is False else holder


def held_by(folder: Path | Location, holder: dict[str, Any]) -> str:
    """The line that refuses a second writer of a study."""
    who = (f"`harness {holder.get('command', '?')}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
           f"since {holder.get('since', '?')})")
    where = folder.uri if isinstance(folder, Location) else folder
    return (f"study folder {where} is being written by {who}; wait for it to end, or, if that process is gone, "
            f"delete {where}/{LOCK_FILE}")


class StudyLock:
    """Held while a command writes a study folder (``with StudyLock(folder, "sweep"):``)."""

    def __init__(self, folder: Path | Location, command: str) -> None:
        self.remote = folder if isinstance(folder, Location) and folder.remote else None
        self.folder = folder.local if isinstance(folder, Location) else folder
        self.command = command
        self.path = self.folder / LOCK_FILE
        self.record = {**this_process(), "command": command,
                       "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.conditional = False  # taken by the store's create-if-absent (not write, wait, read)

    def __enter__(self) -> "StudyLock":
        if self.remote is not None:
            return self._enter_remote()
        with writing(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
            for _ in range(2):  # a second try once a stale lock is gone
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                with os.fdopen(fd, "w") as f:
                    json.dump(self.record, f)
                return self
        raise HarnessError(f"study folder {self.folder}: its lock keeps coming back; another command is starting")

    def _take_over_if_stale(self) -> None:
        try:
            stale = self.path.read_bytes()
        except FileNotFoundError:
            return  # released meanwhile
        if (holder := lock_holder(self.folder)) is not None:
            raise HarnessError(held_by(self.folder, holder))
        with contextlib.suppress(FileNotFoundError):
            if self.path.read_bytes() == stale:  # not a lock another taker wrote meanwhile
                self.path.unlink()

    def _enter_remote(self) -> "StudyLock":
        assert self.remote is not None
        if (holder := lock_holder(self.remote)) is not None:
            raise HarnessError(held_by(self.remote, holder))
        mine = json.dumps(self.record).encode()
        created = create_if_absent(self.remote, LOCK_FILE, mine)
        if created is False and lock_holder(self.remote) is None:  # a stale record: its holder is gone
            with contextlib.suppress(FileNotFoundError):
                self.remote.delete(LOCK_FILE)
            created = create_if_absent(self.remote, LOCK_FILE, mine)
        if created is False:  # another taker was first
            raise HarnessError(held_by(self.remote, lock_holder(self.remote) or {}))
        if created:
            self.conditional = True
            return self
        # No conditional create here: write, let a concurrent taker's write land, read back.
        self.remote.write_bytes(mine, LOCK_FILE)
        time.sleep(SETTLE_S)  # another taker's write within this time replaces ours: we then refuse
        if self.remote.read_bytes(LOCK_FILE) != mine:
            raise HarnessError(held_by(self.remote, lock_holder(self.remote) or {}))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.remote is not None:
            try:
                if json.loads(self.remote.read_bytes(LOCK_FILE)) == self.record:
                    self.remote.delete(LOCK_FILE)
            except (HarnessError, ValueError):
                pass
            return
        try:
            if json.loads(self.path.read_text()) == self.record:
                self.path.unlink()
        except (OSError, ValueError):
            pass  # gone already, or never ours
