"""A K-fold experiment on the page: its fold runs (each a manager Run, trained and stored on its own)
read as one run whose records are the folds' mean, so that the charts, the reading, the table and the
CSV work on the mean curve as they do on a hold-out run."""

from __future__ import annotations

import time

from regviz.records import EpochRecord, mean_records
from regviz.runs.manager import CANCELLED, DONE, FAILED, QUEUED, REFUSED, RUNNING
from regviz.settings import Settings


class FoldGroup:
    """The fold runs of one K-fold settings, read together; every read is thread-safe (the runs' own)."""

    def __init__(self, settings: Settings, runs: list):
        self.settings = settings
        self.runs = runs
        self.key = settings.key()
        self.total_epochs = settings.epochs

    # what the page reads of a run

    @property
    def state(self) -> str:
        """failed or refused if any fold is; running if any trains; queued if any waits; else done."""
        states = [r.state for r in self.runs]
        for state in (FAILED, REFUSED, RUNNING, QUEUED, CANCELLED):
            if state in states:
                return state
        return DONE

    @property
    def finished(self) -> bool:
        """True once every fold is finished."""
        return all(r.finished for r in self.runs)

    @property
    def error(self) -> str | None:
        """The first failed fold's reason, naming the fold."""
        for i, r in enumerate(self.runs, 1):
            if r.error:
                return f"fold {i}: {r.error}"
        return None

    @property
    def from_store(self) -> bool:
        """True when every fold came from the store."""
        return all(r.from_store for r in self.runs)

    @property
    def version(self) -> int:
        """Moves whenever any fold's version moves."""
        return sum(r.version for r in self.runs)

    @property
    def watchers(self) -> int:
        """The most watchers of any fold (the same tabs watch them all)."""
        return max(r.watchers for r in self.runs)

    @property
    def estimate(self) -> float | None:
        """Seconds to train every fold one after another (an upper bound: they share the workers)."""
        estimates = [r.estimate for r in self.runs]
        return None if any(e is None for e in estimates) else sum(estimates)

    @property
    def started_at(self) -> float | None:
        """When the first fold started."""
        starts = [r.started_at for r in self.runs if r.started_at is not None]
        return min(starts) if starts else None

    def fold_records(self) -> list[list[EpochRecord]]:
        """Each fold's records so far, in fold order."""
        return [r.records() for r in self.runs]

    def records(self) -> list[EpochRecord]:
        """The folds' mean record per epoch, over the epochs every fold has reached."""
        return mean_records(self.fold_records())

    def snapshot(self) -> tuple[int, list[EpochRecord]]:
        """The version and the mean records, read together (a fold moving in between moves the version)."""
        version = self.version
        return version, self.records()

    def queue_position(self) -> int | None:
        """The best place of a queued fold."""
        places = [p for r in self.runs if (p := r.queue_position()) is not None]
        return min(places) if places else None

    def starts_in(self) -> float | None:
        """Seconds until the first queued fold starts."""
        times = [t for r in self.runs if (t := r.starts_in()) is not None]
        return min(times) if times else None

    def eta_seconds(self) -> float | None:
        """Seconds until the last fold ends, as far as known."""
        left = [r.eta_seconds() for r in self.runs if not r.finished]
        if not left:
            return 0.0
        known = [t for t in left if t is not None]
        return max(known) if known else None

    def wait_for_change(self, version: int, timeout: float | None = None) -> int:
        """Block until any fold moves (or timeout passes); the new version."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.version == version:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self.runs[0].wait_for_change(self.runs[0].version, 0.05 if left is None else min(0.05, left))
        return self.version

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every fold is finished or timeout passes; True if they all finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for r in self.runs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not r.wait(left):
                return False
        return True

    def __repr__(self) -> str:
        return f"FoldGroup({self.key}, {self.state}, {len(self.runs)} folds)"


class Refused:
    """What the page shows of a request refused as a whole: a finished run that trained nothing, with
    the one-line reason (nothing of it was queued)."""

    def __init__(self, settings: Settings, reason: str):
        self.settings, self.error = settings, reason
        self.key = "refused-" + settings.key()
        self.total_epochs = settings.epochs
        self.runs: list = []

    state, finished, from_store, version, watchers, estimate, started_at = (
        REFUSED, True, False, 0, 0, None, None,
    )  # fmt: skip

    def records(self) -> list[EpochRecord]:
        """No epochs."""
        return []

    def fold_records(self) -> list[list[EpochRecord]]:
        """No folds trained."""
        return []

    def snapshot(self) -> tuple[int, list[EpochRecord]]:
        """Version 0, no records."""
        return 0, []

    def queue_position(self) -> None:
        """Never queued."""

    def starts_in(self) -> None:
        """Never starts."""

    def eta_seconds(self) -> float:
        """Nothing left."""
        return 0.0

    def wait(self, timeout: float | None = None) -> bool:
        """Finished already."""
        return True

    def wait_for_change(self, version: int, timeout: float | None = None) -> int:
        """It never changes."""
        return 0

    def __repr__(self) -> str:
        return f"Refused({self.settings.key()})"


def refusal(manager, settings: Settings, pinned=()) -> str | None:
    """Why what a page asks for (this run, its baseline, the pinned runs, every fold and repeat) is not
    trained as a whole; None when it may go."""
    parts = [("this run", settings)]
    if not settings.is_baseline:
        parts.append(("its baseline", settings.baseline()))
    pins = "a pinned run" if len(pinned) == 1 else f"the {len(pinned)} pinned runs"
    parts += [(pins, p) for p in pinned]
    return manager.request_refusal(parts)


def watch(manager, settings: Settings, watcher: str, priority: int | None = None):
    """The manager's Run of a hold-out settings, or the FoldGroup of a K-fold one (its folds watched,
    unless all of them together are over the cost limit: then a Refused that queued nothing)."""
    extra = () if priority is None else (priority,)
    if len(runs := settings.fold_runs()) == 1 and runs[0] == settings:
        return manager.watch(settings, watcher, *extra)
    if (why := manager.request_refusal([("this run", settings)])) is not None:
        return Refused(settings, why)
    return FoldGroup(settings, [manager.watch(fold, watcher, *extra) for fold in runs])


def kept(settings_list) -> list[Settings]:
    """What unwatch's keep needs: every fold run of these settings."""
    return [fold for s in settings_list for fold in s.fold_runs()]
