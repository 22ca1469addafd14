"""The store of finished runs: one SQLite row per (settings, training code, data), shared by every session;
`open_store` picks it or the PostgreSQL one (`store_postgres.py`) from $REGVIZ_STORE."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import regviz.training.version
from regviz.records import EpochRecord
from regviz.settings import Settings
from regviz.store_codec import APPLICATION_ID, BAD_ROW, ENV_VAR, StoreError, decode, encode, run_key, warn
from regviz.store_salvage import Salvage, salvage

if TYPE_CHECKING:
    from regviz.store_postgres import PostgresStore

try:  # posix: a lock file keeps two processes from repairing the same file at once
    import fcntl
except ImportError:  # pragma: no cover - windows: only the threads of one process are kept apart
    fcntl = None

POSTGRES_SCHEMES = ("postgresql://", "postgres://")  # store_postgres.py; anything else is a file path
SCHEMA_VERSION = 1  # bump (with a migration) when the table changes
BUSY_TIMEOUT_S = 30.0  # a writer holds the lock for milliseconds; waiting beats failing
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,       -- run_key(settings, data_version)
    settings TEXT NOT NULL,     -- Settings.as_dict() as JSON, so a row can be read without the code
    data_version TEXT NOT NULL,
    training_version TEXT NOT NULL,
    records TEXT NOT NULL,      -- JSON list of EpochRecord.to_dict(), in epoch order
    created TEXT NOT NULL       -- UTC, ISO 8601
)"""

log = logging.getLogger("regviz")
T = TypeVar("T")


def default_path() -> Path:
    """$REGVIZ_STORE if set, else $XDG_CACHE_HOME/regviz/runs.sqlite (XDG_CACHE_HOME defaults to ~/.cache)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    if not cache.is_absolute():  # the xdg spec says to ignore a relative value
        cache = Path("~/.cache").expanduser()
    return cache / "regviz" / "runs.sqlite"


def is_postgres_url(where: str | Path | None) -> bool:
    """True for a postgresql:// or postgres:// URL (the shared store), False for a file path."""
    return isinstance(where, str) and where.strip().startswith(POSTGRES_SCHEMES)


def open_store(where: str | Path | None = None) -> RunStore | PostgresStore:
    """The store at where (else $REGVIZ_STORE): PostgreSQL for a postgresql:// URL, else SQLite."""
    target = where if where is not None else os.environ.get(ENV_VAR)
    if is_postgres_url(target):
        from regviz.store_postgres import PostgresStore  # psycopg: only when such a store is asked for

        return PostgresStore(str(target).strip())
    return RunStore(where)


class RunStore:
    """Finished runs on disk; one object serves all threads, and many processes may share the file."""

    def __init__(self, path: str | Path | None = None):
        """Open or create the store at path (default_path() when None), moving a broken file aside first."""
        if path is None and is_postgres_url(os.environ.get(ENV_VAR)):
            # a URL taken as a file name would quietly start an empty local store in ./postgresql:
            raise StoreError(f"{ENV_VAR} is a PostgreSQL URL: open it with regviz.store.open_store()")
        self.path = Path(path).expanduser() if path is not None else default_path()
        # the only mutable state is the file itself: connections are per call, the lock guards repairs
        self._lock = threading.Lock()
        self._notice: str | None = None  # the last repair, in words for the page, until a page takes it
        self._repair()

    def get(self, settings: Settings, data_version: str) -> list[EpochRecord] | None:
        """All stored records of this run in epoch order, or None when it is not stored."""
        key = run_key(settings, data_version)
        row = self._run(lambda db: db.execute("SELECT records FROM runs WHERE key = ?", (key,)).fetchone())
        if row is None:
            return None
        try:
            return decode(row[0])
        except BAD_ROW as e:
            self._drop_row(key, row[0], e)
            return None

    def put(self, settings: Settings, data_version: str, records: list[EpochRecord]) -> None:
        """Store this run's records, replacing an older copy, in one transaction."""
        row = (
            run_key(settings, data_version),
            json.dumps(settings.as_dict(), sort_keys=True),
            data_version,
            regviz.training.version.TRAINING_VERSION,
            encode(records),
            datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)", row))

    def has(self, settings: Settings, data_version: str) -> bool:
        """True when a row for this run exists (its records are not read)."""
        key = run_key(settings, data_version)
        row = self._run(lambda db: db.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone())
        return row is not None

    def count(self) -> int:
        """Number of stored runs."""
        return self._run(lambda db: db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def take_notice(self) -> str | None:
        """One line for the page when a damaged file was replaced (and what was salvaged), given once."""
        with self._lock:
            notice, self._notice = self._notice, None
        return notice

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            with self._connect() as db:
                return work(db)
        except sqlite3.DatabaseError:
            # the file may have been replaced, damaged or deleted since it was opened: repair, retry once
            self._repair()
        try:
            with self._connect() as db:
                return work(db)
        except sqlite3.DatabaseError as e:
            raise self._unusable(str(e)) from None

    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        # autocommit: each statement is its own transaction, so a put is all or nothing
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        return contextlib.closing(db)

    def _repair(self) -> None:
        """Make self.path a regviz store: create it, or move a broken or foreign file aside and start anew."""
        self._check_dir()
        with self._lock, self._file_lock():
            try:
                problem = self._inspect()
                aside = self._move_aside(problem) if problem else None
                self._setup()
                if aside is not None:
                    self._report(problem, aside, self._salvage(aside))
            except sqlite3.DatabaseError as e:
                raise self._unusable(str(e)) from None

    def _check_dir(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._unusable(e.strerror or str(e)) from None
        if not os.access(self.path.parent, os.W_OK):
            raise self._unusable("its directory is not writable")

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        # held only while inspecting and repairing, so a second process re-inspects the repaired file
        # instead of moving it aside too
        if fcntl is None:  # pragma: no cover
            yield
            return
        try:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise self._unusable(e.strerror or str(e)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _inspect(self) -> str | None:
        """Why the file is not a regviz store, or None when it is one or is empty (or missing)."""
        try:
            with self._connect() as db:
                return _problem(db)
        except sqlite3.DatabaseError as e:
            if getattr(e, "sqlite_errorcode", 0) & 0xFF not in _CORRUPT:
                raise
            return f"is not a readable SQLite database ({e})"

    def _setup(self) -> None:
        with self._connect() as db:
            ours = db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if ours and version > SCHEMA_VERSION:
                # not moved aside: it is a newer regviz's good store, and the two would fight over it
                raise self._unusable(f"it has schema {version}, newer than this regviz's {SCHEMA_VERSION}")
            if ours and version == SCHEMA_VERSION:
                return
            db.execute("PRAGMA journal_mode = WAL")  # readers do not wait for the writer
            db.execute("BEGIN IMMEDIATE")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")

    def _move_aside(self, problem: str) -> Path:
        dest = _aside_path(self.path)
        # the wal and journal belong to the old file; left here they would be replayed into the fresh one
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.lexists(f"{self.path}{suffix}"):
                try:
                    os.rename(f"{self.path}{suffix}", f"{dest}{suffix}")
                except OSError as e:
                    raise self._unusable(f"it {problem} and cannot be moved aside ({e.strerror})") from None
        return dest

    def _salvage(self, aside: Path) -> Salvage | None:
        """Copy the runs that can still be read from the file moved aside into the fresh store; None when
        that file was not a regviz store (nothing of ours to salvage)."""
        found = salvage(aside)
        if found is not None and found.rows:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?)", found.rows)
                db.execute("COMMIT")
        return found

    def _report(self, problem: str, aside: Path, found: Salvage | None) -> None:
        """One warning for the log, and one notice for the page (taken once, see take_notice)."""
        salvaged = f"; {found.describe()}" if found is not None else ""
        warn(
            f"regviz run store {self.path} {problem}; moved it to {aside} and started a fresh store{salvaged}"
        )
        if found is None:
            self._notice = (
                f"The store of finished runs could not be read ({problem}): it was moved to {aside} and a "
                "fresh one started. Earlier runs train again when asked for."
            )
        else:
            self._notice = (
                f"The store of finished runs was damaged ({problem}) and has been rebuilt: "
                f"{found.describe()}. Lost runs train again when asked for; the damaged file is kept at "
                f"{aside}."
            )

    def _drop_row(self, key: str, blob: str, error: Exception) -> None:
        # one unreadable row costs one run, which is trained again and replaced by the next put;
        # moving the whole file aside would turn every other stored run into a miss as well
        self._run(lambda db: db.execute("DELETE FROM runs WHERE key = ? AND records = ?", (key, blob)))
        warn(f"regviz run store {self.path}: dropped run {key}, its records could not be read ({error})")

    def _unusable(self, why: str) -> StoreError:
        hint = f"set {ENV_VAR} to a writable file path"
        return StoreError(f"run store {self.path} cannot be used: {why}; {hint}")


def _problem(db: sqlite3.Connection) -> str | None:
    """Why an open, readable database is not a regviz store, or None."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = sorted(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    if app_id not in (0, APPLICATION_ID):
        return f"belongs to another application (application_id {app_id})"
    if app_id == 0 and tables:
        return f"is another application's SQLite database (tables: {', '.join(tables)})"
    if app_id == APPLICATION_ID and "runs" not in tables:
        return "has lost its runs table"
    check = db.execute("PRAGMA quick_check").fetchone()[0]
    return None if check == "ok" else f"is damaged ({check})"


def _aside_path(path: Path) -> Path:
    """A free name <name>.corrupt-<UTC timestamp>[-n] next to path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while os.path.lexists(dest):
        dest, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
    return dest
