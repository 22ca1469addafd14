"""The seam between the run manager and where runs train: a Job (settings in, records and the end out).

The manager decides *which* run trains *when*; the worker pool (`pool.py`) decides *where*, over
threads of this process (`threads.py`, for the command line and tests), long-lived worker processes
(`local.py`, what the app uses) or Ray actors (`ray_cluster.py`).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from regviz.records import EpochRecord
from regviz.settings import Settings

_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One training handed to an executor: its settings, and where its records and its end go. An
    executor calls `on_record` once per epoch, in order, then `on_end` exactly once: with None when the
    training ended by itself or after a cancel, with a one-line reason when it failed."""

    settings: Settings
    on_record: Callable[[EpochRecord], None]
    on_end: Callable[[str | None], None]
    owner: str = ""  # the manager's lane for it (the session whose turn it takes): one after another
    priority: int = 0  # the manager's urgency, lower first: a worker pumps it only while none is lower
    id: int = field(default_factory=lambda: next(_ids))
    cancelled: threading.Event = field(default_factory=threading.Event)
    # its epochs' own compute seconds, summed, where a worker measures them (a worker interleaves jobs,
    # so a record's wall-clock seconds include the others' turns); None from a thread, which trains alone
    compute: float | None = None
    _ended: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, record: EpochRecord, compute: float | None = None) -> None:
        """Pass one epoch on (with its own compute seconds, if measured); dropped once the job ended."""
        with self._lock:
            if self._ended:
                return
            if compute is not None:
                self.compute = (self.compute or 0.0) + compute
        self.on_record(record)

    def end(self, error: str | None = None) -> None:
        """End the job once; later calls do nothing."""
        with self._lock:
            ended, self._ended = self._ended, True
        if not ended:
            self.on_end(error)


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one bounded line: type and message, tracebacks folded."""
    return shorten(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, limit)


def shorten(text: str, limit: int = 200) -> str:
    """Whitespace folded to single spaces, cut to limit characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_count(name: str, value, shown=None) -> None:
    """Raise ValueError unless value is an integer >= 1 (naming it as `shown`, if given)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value if shown is None else shown!r} is not allowed: an integer >= 1")


def count_from_env(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """The variable `name` (an integer >= 1) if set, else default; ValueError for anything else."""
    return from_env(name, default, int, lambda value: value >= 1, "an integer >= 1", environ)


def from_env(name: str, default, parse: Callable, ok: Callable, accepts: str, environ=None):
    """The variable `name` parsed if set (blank: default); ValueError naming it and what it `accepts`."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise ValueError(f"{name}={raw!r} is not allowed: {accepts}")
    return value


def deadline(timeout: float | None) -> float | None:
    """The time.monotonic() at which timeout runs out; None for no timeout."""
    return None if timeout is None else time.monotonic() + timeout


def time_left(until: float | None) -> float | None:
    """Seconds to a deadline (never below 0); None for no deadline."""
    return None if until is None else max(0.0, until - time.monotonic())
