"""The runs that can still be read from a damaged SQLite store (a truncated file, a torn page), row by row.

A damaged page costs the rows on it, not the whole file: each row is looked up alone by its rowid, and
a lookup that meets a damaged page (or a row whose records no longer decode) skips that row only. The
key index (a few small pages written with the table) says how many rows the file held, so what was
lost can be counted. The file itself is only read, from a copy: it is kept aside as it was.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from regviz.store_codec import APPLICATION_ID, BAD_ROW, decode

COLUMNS = "key, settings, data_version, training_version, records, created"  # the runs table's, in order
PROBE_MARGIN = 1000  # rowids probed past the highest one seen when the index cannot say where rows end


@dataclass(frozen=True)
class Salvage:
    """What could be read from a damaged store: its rows (as the runs table holds them), and how many
    rows it held that could not be read; lost_exact is False when its index was damaged too, and
    `lost` counts only the rows known to have been there."""

    rows: list[tuple]
    lost: int
    lost_exact: bool

    def describe(self) -> str:
        """'8 runs salvaged, 12 lost' ('at least 12 lost', 'how many were lost is not known' when its index
        could not be read to the end)."""
        if self.lost_exact:
            lost = f"{self.lost} lost"
        else:
            lost = f"at least {self.lost} lost" if self.lost else "how many were lost is not known"
        return f"{_runs(len(self.rows))} salvaged, {lost}"


def salvage(path: Path) -> Salvage | None:
    """The readable runs of the store file at path (and its -wal); None when it is not a regviz store
    whose runs table can be found (random bytes, text, another program's database)."""
    with tempfile.TemporaryDirectory(prefix="regviz-salvage-") as tmp:
        copy = Path(tmp) / "damaged.sqlite"
        for suffix in ("", "-wal"):  # committed runs still in the log are runs too
            if Path(f"{path}{suffix}").is_file():
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        try:
            with contextlib.closing(sqlite3.connect(copy, isolation_level=None)) as db:
                # sqlite refuses a file shorter than its header says unless the schema is "writable";
                # then it reads the pages that are there (nothing is written: this is a copy)
                db.execute("PRAGMA writable_schema = ON")
                return _read(db) if _is_store(db) else None
        except sqlite3.DatabaseError:  # its first page or its schema cannot be read: nothing can
            return None


def _is_store(db: sqlite3.Connection) -> bool:
    ours = db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    return ours and db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None


def _read(db: sqlite3.Connection) -> Salvage:
    indexed, complete = _rowids(db, "SELECT rowid FROM runs INDEXED BY sqlite_autoindex_runs_1")
    scanned, _ = _rowids(db, "SELECT rowid FROM runs NOT INDEXED")
    known = indexed | scanned
    # a complete index names every row; otherwise probe every rowid up to past the last one seen
    candidates = sorted(known) if complete else range(1, max(known, default=0) + PROBE_MARGIN + 1)
    rows, unread = [], 0
    for rowid in candidates:
        row = _row(db, rowid)
        if row is not None:
            rows.append(row)
        elif rowid in known:
            unread += 1
    return Salvage(rows, unread, lost_exact=complete)


def _rowids(db: sqlite3.Connection, query: str) -> tuple[set[int], bool]:
    """The rowids a scan yields before it meets a damaged page, and whether it reached the end."""
    found: set[int] = set()
    try:
        for (rowid,) in db.execute(query):
            found.add(rowid)
    except sqlite3.DatabaseError:
        return found, False
    return found, True


def _row(db: sqlite3.Connection, rowid: int) -> tuple | None:
    """The row with this rowid when it can be read whole and its settings and records decode, else None."""
    try:
        row = db.execute(f"SELECT {COLUMNS} FROM runs NOT INDEXED WHERE rowid = ?", (rowid,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    if row is None or not all(isinstance(value, str) for value in row):
        return None
    try:
        decode(row[4])
        if not isinstance(json.loads(row[1]), dict):
            return None
    except BAD_ROW:  # json's errors are ValueErrors
        return None
    return row


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"
