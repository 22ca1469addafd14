"""A K-fold experiment on the page: its fold runs (each a manager Run, trained and stored on its own)
read as one run whose records are the folds' mean, so that the charts, the reading, the table and the
CSV work on the mean curve as they do on a hold-out run."""

from __future__ import annotations

from regviz.records import EpochRecord, mean_records
from regviz.runs.manager import CANCELLED, DONE, FAILED, QUEUED, REFUSED, RUNNING
from regviz.runs.seam import deadline, time_left
from regviz.settings import Settings


def _folds(doc: str, combine, read) -> property:
    """A property of the group: `combine` over `read(fold)` of every fold."""
    return property(lambda group: combine([read(r) for r in group.runs]), doc=doc)


def _best(values: list):
    """The least of the values that are not None; None if none is."""
    return min((v for v in values if v is not None), default=None)


class FoldGroup:
    """The fold runs of one K-fold settings, read together; every read is thread-safe (the runs' own)."""

    finished = _folds("True once every fold is finished.", all, lambda r: r.finished)
    from_store = _folds("True when every fold came from the store.", all, lambda r: r.from_store)
    version = _folds("Moves whenever any fold's version moves.", sum, lambda r: r.version)
    watchers = _folds(
        "The most watchers of any fold (the same tabs watch them all).", max, lambda r: r.watchers
    )
    started_at = _folds("When the first fold started.", _best, lambda r: r.started_at)

    def __init__(self, settings: Settings, runs: list):
        self.settings = settings
        self.runs = runs
        self.key = settings.key()
        self.total_epochs = settings.epochs

    @property
    def state(self) -> str:
        """failed or refused if any fold is; running if any trains; queued if any waits; else done."""
        states = [r.state for r in self.runs]
        return next((s for s in (FAILED, REFUSED, RUNNING, QUEUED, CANCELLED) if s in states), DONE)

    @property
    def error(self) -> str | None:
        """The first failed fold's reason, naming the fold."""
        return next((f"fold {i}: {r.error}" for i, r in enumerate(self.runs, 1) if r.error), None)

    @property
    def estimate(self) -> float | None:
        """Seconds to train every fold one after another (an upper bound: they share the workers)."""
        estimates = [r.estimate for r in self.runs]
        return None if None in estimates else sum(estimates)

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
        return _best([r.queue_position() for r in self.runs])

    def starts_in(self) -> float | None:
        """Seconds until the first queued fold starts."""
        return _best([r.starts_in() for r in self.runs])

    def eta_seconds(self) -> float | None:
        """Seconds until the last fold ends, as far as known."""
        left = [r.eta_seconds() for r in self.runs if not r.finished]
        return max((t for t in left if t is not None), default=None) if left else 0.0

    def wait_for_change(self, version: int, timeout: float | None = None) -> int:
        """Block until any fold moves (or timeout passes); the new version."""
        until = deadline(timeout)
        while self.version == version and time_left(until) != 0:
            first = self.runs[0]  # polled: this wait ends early only if the first fold moves
            first.wait_for_change(first.version, min(0.05, time_left(until) or 0.05))
        return self.version

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every fold is finished or timeout passes; True if they all finished."""
        until = deadline(timeout)
        return all(r.wait(time_left(until)) for r in self.runs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key}, {self.state}, {len(self.runs)} folds)"


class Refused(FoldGroup):
    """What the page shows of a request refused as a whole: a finished run that trained nothing, with
    the one-line reason (nothing of it was queued)."""

    state, from_store, watchers, estimate, started_at, error = REFUSED, False, 0, None, None, None

    def __init__(self, settings: Settings, reason: str):
        super().__init__(settings, [])
        self.key, self.error = "refused-" + settings.key(), reason

    def wait_for_change(self, version: int, timeout: float | None = None) -> int:
        """It never changes."""
        return 0


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
