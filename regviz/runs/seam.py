"""The seam between the run manager and where runs train: submit settings, get epoch records, cancel.

The manager (server side) decides *which* run trains *when*; an executor behind this seam decides
*where*: threads of this process (`threads.py`, for the command line and tests), or the worker pool
(`pool.py`) over long-lived worker processes (`local.py`, what the app uses) or Ray actors
(`ray_cluster.py`, when configured).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from regviz.data import DatasetInfo
from regviz.records import EpochRecord
from regviz.settings import Settings

_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One training handed to an executor: its settings, and where its records and its end go.

    An executor calls `on_record` once per epoch, in order, then `on_end` exactly once: with None when
    the training ended by itself or after a cancel, with a one-line reason when it failed.
    """

    settings: Settings
    on_record: Callable[[EpochRecord], None]
    on_end: Callable[[str | None], None]
    owner: str = ""  # the manager's lane for it (the session whose turn it takes): one after another
    priority: int = 0  # the manager's urgency, lower first: a worker pumps it only while none is lower
    id: int = field(default_factory=lambda: next(_ids))
    cancelled: threading.Event = field(default_factory=threading.Event)
    # seconds its epochs' own compute took, summed, when the executor measures them where they run (a
    # worker interleaves several jobs, so a record's wall-clock seconds include the others' turns);
    # None when it does not (a thread trains one job alone: its records' seconds are its own)
    compute: float | None = None
    _ended: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, record: EpochRecord, compute: float | None = None) -> None:
        """Pass one epoch on (with the seconds its own compute took, if measured), unless the job has
        ended (a record after a forced end is dropped)."""
        with self._lock:
            if self._ended:
                return
            if compute is not None:
                self.compute = (self.compute or 0.0) + compute
        self.on_record(record)

    def end(self, error: str | None = None) -> bool:
        """End the job once; later calls do nothing and return False."""
        with self._lock:
            if self._ended:
                return False
            self._ended = True
        self.on_end(error)
        return True

    @property
    def ended(self) -> bool:
        """True once on_end was called."""
        with self._lock:
            return self._ended


class Executor(Protocol):
    """Where trainings run. Every method may be called from any thread."""

    slots: int  # trainings it runs at once; the manager never starts more

    def start(self, job: Job) -> None:
        """Begin training job.settings; records and the end arrive through the job's callbacks."""

    def cancel(self, job: Job) -> None:
        """Stop the job: its on_end comes within about a second, and its slot is free from then on."""

    def describe(self, dataset: str, timeout: float | None = None) -> DatasetInfo:
        """Sizes and version of a dataset, as a worker loads it; raises DatasetUnavailable."""

    def problem(self) -> str | None:
        """One line when trainings cannot start here (no worker could start), else None."""

    def forget(self, dataset: str) -> None:
        """Drop an uploaded file (`data.add_upload`) wherever it was sent: its session ended."""

    def close(self, timeout: float | None = None) -> bool:
        """Cancel everything and stop; True if all stopped in time."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one bounded line: type and message, tracebacks folded."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return shorten(text, limit)


def shorten(text: str, limit: int = 200) -> str:
    """Whitespace folded to single spaces, cut to limit characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
