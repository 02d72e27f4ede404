"""Results tables that grow by part files: a write costs what is new, not the table so far.

A study's table (``trials``, ``epochs``) is ``<folder>/<name>.parquet``, the compacted
table, plus, while the study runs, part files ``<folder>/parts/<name>-<first>-<last>.parquet``
holding the rows of writes number ``first`` to ``last``. Rows are keyed (a trial; a
trial's report) and a later write of a key replaces the earlier one; a row written with
``DELETED`` true removes its key (:func:`deletion`).

Parts are merged in tiers, as a log-structured store does: ``FAN_IN`` parts of one tier
become one part of the next, so a study of N writes keeps O(FAN_IN log N) part files and
rewrites each row O(log N) times; the writer keeps its parts' rows in memory (as Arrow
tables, each row once), so a merge writes but reads no file. :meth:`PartTable.compact`
folds everything into the single file when a seed or the study ends. Every file appears
by an atomic rename; the compacted file records in its Parquet metadata the last write
it holds, so parts left by an interrupted compaction or merge are recognised as such by
readers and removed by the next writer. Pure pandas and pyarrow: the reports read tables
without torch or Ray.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FAN_IN = 16
PARTS = "parts"
THROUGH = b"harness.through"  # the compacted file's metadata: the last write it holds
KEYS = {"trials": ("trial_id",), "epochs": ("trial_id", "epoch"), "latencies": ("trial_id", "target", "batch")}
DELETED = "_deleted"  # a column of part files only: the key's latest row says it is gone
_PART = re.compile(r"^(?P<name>[a-z]+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")


@dataclass(frozen=True)
class Part:
    path: Path
    first: int
    last: int
    table: pa.Table | None = field(default=None, compare=False, repr=False)  # kept by the writer that wrote it

    def read(self) -> pa.Table:
        return self.table if self.table is not None else pq.read_table(self.path)

    @property
    def tier(self) -> int:
        return int(math.log(self.last - self.first + 1, FAN_IN) + 1e-9)


def deletion(**key: Any) -> dict[str, Any]:
    """The row that removes ``key`` from a table when appended (a tombstone)."""
    return {**key, DELETED: True}


def table_exists(folder: Path, name: str) -> bool:
    """Whether the study has written this table, compacted or in parts."""
    return (folder / f"{name}.parquet").is_file() or bool(_parts(folder, name))


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """The table as of its last write: the compacted file and the parts after it, the
    latest row of each key. Empty (no columns) when the study has written none."""
    through, compacted = _compacted(folder, name)
    parts = [p for p in _parts(folder, name) if p.last > through]
    if not parts:
        return compacted.to_pandas() if compacted is not None else pd.DataFrame()
    tables = [t for t in (compacted, *(pq.read_table(p.path) for p in parts)) if t is not None]
    return _latest(_concat(tables), name)


class PartTable:
    """The writer of one table: :meth:`append` the rows that changed, :meth:`compact` at the end."""

    def __init__(self, folder: Path, name: str, columns: Sequence[str] = ()) -> None:
        self.folder, self.name = folder, name
        self.columns = list(columns)  # of the compacted file when no row was ever written
        through, _ = _compacted(folder, name, read=False)
        self.written = max([through, *(p.last for p in _parts(folder, name))])  # a resumed study goes on
        self.parts: list[Part] | None = None  # this writer's parts, in write order, once it has written

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """One write: a part holding ``rows``; then any tier that is full is merged."""
        if not rows:
            return
        if self.parts is None:
            self.parts = self._without_leftovers()
        self.written += 1
        self._write_part(_arrow(rows), self.written, self.written)
        self._merge_full_tiers()

    def compact(self) -> None:
        """Fold the parts into ``<name>.parquet`` (written first: a crash leaves no gap)."""
        parts = _parts(self.folder, self.name)
        if not parts and (self.folder / f"{self.name}.parquet").is_file():
            return
        frame = read_table(self.folder, self.name)
        if frame.empty and not len(frame.columns):
            frame = pd.DataFrame(columns=self.columns)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), THROUGH: str(self.written).encode()})
        _write_atomic(table, self.folder / f"{self.name}.parquet")
        for part in parts:
            part.path.unlink(missing_ok=True)
        self.parts = []
        with contextlib.suppress(OSError):  # the other table's parts may still be there
            (self.folder / PARTS).rmdir()

    def _write_part(self, table: pa.Table, first: int, last: int) -> None:
        folder = self.folder / PARTS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}-{first:09d}-{last:09d}.parquet"
        _write_atomic(table, path)
        self.parts.append(Part(path, first, last, table))

    def _merge_full_tiers(self) -> None:
        """Rows are concatenated, not deduplicated: readers keep each key's last row, and the
        compaction writes only those; a merge stays a copy of what the parts hold."""
        while True:
            tier = self.parts[-1].tier
            run = [p for p in self.parts if p.tier == tier]
            if len(run) < FAN_IN:
                return
            tables = [p.read() for p in run]  # this writer's own parts are still in memory
            try:
                merged = pa.concat_tables(tables, promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                merged = pa.Table.from_pandas(_concat(tables), preserve_index=False)
            merged = merged.combine_chunks()  # one chunk per column: at thousands of chunks a write took 0.5 s
            self.parts = [p for p in self.parts if p not in run]
            self._write_part(merged, run[0].first, run[-1].last)
            for part in run:
                part.path.unlink(missing_ok=True)

    def _without_leftovers(self) -> list[Part]:
        """The parts on disk, less those an interrupted compaction or merge left behind."""
        through, _ = _compacted(self.folder, self.name, read=False)
        parts = _parts(self.folder, self.name)
        kept = []
        for part in parts:
            covered = part.last <= through or any(o is not part and o.first <= part.first and part.last <= o.last
                                                  and (o.first, o.last) != (part.first, part.last) for o in parts)
            if covered:
                part.path.unlink(missing_ok=True)
            else:
                kept.append(part)
        return kept


def _parts(folder: Path, name: str) -> list[Part]:
    """The table's parts, in write order (a merged part after the parts it holds)."""
    found = []
    try:
        entries = list(os.scandir(folder / PARTS))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = _PART.match(entry.name)
        if match and match["name"] == name:
            found.append(Part(Path(entry.path), int(match["first"]), int(match["last"])))
    return sorted(found, key=lambda p: (p.last, -p.first))


def _compacted(folder: Path, name: str, read: bool = True) -> tuple[int, pa.Table | None]:
    path = folder / f"{name}.parquet"
    if not path.is_file():
        return 0, None
    metadata = pq.read_schema(path).metadata or {}
    through = int(metadata.get(THROUGH, b"0"))
    return through, (pq.read_table(path) if read else None)


def _arrow(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table, every key a column (straight to Arrow: through pandas, a
    write of a few rows took three times as long)."""
    columns = dict.fromkeys(key for row in rows for key in row)
    try:
        return pa.Table.from_pydict({key: [row.get(key) for row in rows] for key in columns})
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of mixed kinds: pandas keeps them as objects
        return pa.Table.from_pandas(pd.DataFrame(list(rows)), preserve_index=False)


def _latest(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Each key's last row, in the order the keys first appeared (a trial keeps its place)."""
    key = [k for k in KEYS[name] if k in frame]
    if not key or frame.empty:
        return frame.drop(columns=DELETED, errors="ignore")
    order = frame.groupby(key, sort=False, dropna=False).ngroup()
    latest = frame.assign(_order=order).drop_duplicates(key, keep="last")
    if DELETED in latest:
        latest = latest[~latest[DELETED].eq(True)].drop(columns=DELETED)
    return latest.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def _concat(tables: list[pa.Table]) -> pd.DataFrame:
    try:  # nulls, ints and floats of one column across parts promote to one type
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of mixed kinds: pandas keeps them as objects
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        tmp.replace(path)
    except OSError as exc:  # named after the file it was to replace, not the temporary one
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
