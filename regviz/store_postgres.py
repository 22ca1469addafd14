"""The store of finished runs in PostgreSQL: one table that app replicas and the command line share.

Chosen by `REGVIZ_STORE=postgresql://user:password@host/db` (see `store.open_store`); the same interface
and guarantees as the SQLite `RunStore`. psycopg is imported only when such a store is opened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import regviz.training.version
from regviz.records import EpochRecord
from regviz.settings import Settings
from regviz.store_codec import APPLICATION_ID, BAD_ROW, ENV_VAR, StoreError, decode, encode, run_key, warn

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = 1  # bump (with a migration in _setup) when the table changes
SETUP_LOCK = APPLICATION_ID  # advisory lock id: replicas starting together create the tables once
CONNECT_TIMEOUT_S = 3  # a host that drops packets fails in seconds, not minutes
BACKOFF_S = (0.1, 0.5, 1.0)  # waits between attempts: a killed backend needs one, a restart a second
QUIET_S = 10.0  # after every attempt failed, calls fail at once for this long instead of waiting again
MESSAGE_LIMIT = 240
_TABLE = """
CREATE TABLE IF NOT EXISTS regviz_runs (
    key TEXT PRIMARY KEY,            -- run_key(settings, data_version)
    settings JSONB NOT NULL,         -- Settings.as_dict(): a row can be read (and queried) without the code
    data_version TEXT NOT NULL,
    training_version TEXT NOT NULL,
    records TEXT NOT NULL,           -- JSON list of EpochRecord.to_dict(); text: jsonb refuses NaN, Infinity
    created TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
_UPSERT = """
INSERT INTO regviz_runs (key, settings, data_version, training_version, records)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (key) DO UPDATE SET settings = EXCLUDED.settings, data_version = EXCLUDED.data_version,
    training_version = EXCLUDED.training_version, records = EXCLUDED.records, created = now()"""
_GET = "SELECT records FROM regviz_runs WHERE key = %s AND training_version = %s"
_HAS = "SELECT 1 FROM regviz_runs WHERE key = %s AND training_version = %s"
_DROP = "DELETE FROM regviz_runs WHERE key = %s AND records = %s"  # unless a put replaced it meanwhile
T = TypeVar("T")


class PostgresStore:
    """Finished runs in a PostgreSQL table; one object serves all threads over one connection."""

    def __init__(self, url: str):
        """A store at this postgresql:// URL; it connects (and creates its tables) on first use."""
        self._pg = _driver()
        self.url = url
        self._params = _params(self._pg, url)
        self.where = _where(self._params)
        self._lock = threading.Lock()  # guards the connection: calls take milliseconds, one at a time will do
        self._db: psycopg.Connection | None = None
        self._ready = False  # tables checked on this server since the last (re)connect
        self._down: tuple[float, str] | None = None  # (until when, why) after a call failed every attempt

    def get(self, settings: Settings, data_version: str) -> list[EpochRecord] | None:
        """All stored records of this run in epoch order, or None when it is not stored."""
        key = run_key(settings, data_version)
        row = self._run(lambda db: db.execute(_GET, (key, _training_version())).fetchone())
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
            self._pg.types.json.Jsonb(settings.as_dict()),
            data_version,
            _training_version(),
            encode(records),
        )
        # one statement in autocommit is one transaction; ON CONFLICT lets two replicas store the same run
        self._run(lambda db: db.execute(_UPSERT, row))

    def has(self, settings: Settings, data_version: str) -> bool:
        """True when a row for this run exists (its records are not read)."""
        key = run_key(settings, data_version)
        return self._run(lambda db: db.execute(_HAS, (key, _training_version())).fetchone()) is not None

    def count(self) -> int:
        """Number of stored runs."""
        return self._run(lambda db: db.execute("SELECT count(*) FROM regviz_runs").fetchone()[0])

    def take_notice(self) -> None:
        """None: a PostgreSQL store is never rebuilt from a damaged file (the server keeps its own)."""
        return None

    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        with self._lock:
            self._disconnect()

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """work(connection), reconnecting after a dropped connection; StoreError when every attempt fails."""
        self._fail_if_down()
        problem = ""
        for wait in (0.0, *BACKOFF_S):
            time.sleep(wait)  # outside the lock: other threads may find the server back meanwhile
            with self._lock:
                try:
                    return work(self._connection())
                except self._pg.OperationalError as e:  # server gone, restarted or backend terminated
                    problem = self._line(e)
                    self._disconnect()
                except self._pg.errors.UndefinedTable as e:  # dropped behind our back: create it again
                    problem, self._ready = self._line(e), False
                except self._pg.Error as e:
                    raise self._unusable(self._line(e)) from None
        self._down = (time.monotonic() + QUIET_S, problem)
        raise self._unusable(problem)

    def _fail_if_down(self) -> None:
        # a server that just failed every attempt is not asked again at once: pages and workers go on
        if self._down is not None and time.monotonic() < self._down[0]:
            raise self._unusable(self._down[1])
        self._down = None

    def _connection(self) -> psycopg.Connection:
        if self._db is None or self._db.closed:
            extra = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "regviz"}
            extra = {k: v for k, v in extra.items() if k not in self._params}  # the URL's own win
            self._db = self._pg.connect(self.url, autocommit=True, **extra)
            self._ready = False
        if not self._ready:
            self._setup(self._db)
            self._ready = True
        return self._db

    def _disconnect(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except self._pg.Error:
                pass  # already broken: nothing to close cleanly
        self._db, self._ready = None, False

    def _setup(self, db: psycopg.Connection) -> None:
        """Create the tables if missing; refuse a newer regviz's schema (it is a good store, not ours)."""
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS regviz_schema (version INTEGER NOT NULL)")
            version = db.execute("SELECT max(version) FROM regviz_schema").fetchone()[0]
            if version is not None and version > SCHEMA_VERSION:
                raise self._unusable(f"it has schema {version}, newer than this regviz's {SCHEMA_VERSION}")
            db.execute(_TABLE)
            if version is None:
                db.execute("INSERT INTO regviz_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    def _drop_row(self, key: str, blob: str, error: Exception) -> None:
        # one unreadable row costs one run, trained again and replaced by the next put
        self._run(lambda db: db.execute(_DROP, (key, blob)))
        warn(f"regviz run store {self.where}: dropped run {key}, its records could not be read ({error})")

    def _line(self, error: Exception) -> str:
        """The driver's message on one bounded line, the password blanked out."""
        text = " ".join(str(error).split()) or type(error).__name__
        password = self._params.get("password")
        if password:
            text = text.replace(password, "***")
        return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."

    def _unusable(self, why: str) -> StoreError:
        hint = f"check that the server is up and {ENV_VAR}'s host, port, database, user and password"
        return StoreError(f"run store {self.where} cannot be used: {why}; {hint}")


def _driver():
    """psycopg, imported here only: the default install (SQLite) does not have it."""
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            f"{ENV_VAR} is a PostgreSQL URL but psycopg is not installed: "
            "pip install -r requirements-postgres.txt"
        ) from None
    return psycopg


def _params(pg, url: str) -> dict[str, str]:
    """The URL's connection parameters; StoreError (without the URL, it may hold a password) if malformed."""
    try:
        return pg.conninfo.conninfo_to_dict(url)
    except pg.Error as e:
        raise StoreError(f"{ENV_VAR} is not a valid PostgreSQL URL ({type(e).__name__})") from None


def _where(params: dict[str, str]) -> str:
    """The store named for messages: database, host, port and user, never the password."""
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    user = f" as {params['user']}" if params.get("user") else ""
    return f"PostgreSQL database {params.get('dbname') or params.get('user') or '?'} on {host}:{port}{user}"


def _training_version() -> str:
    # read at call time, as run_key does, so a bumped TRAINING_VERSION takes effect at once
    return regviz.training.version.TRAINING_VERSION
