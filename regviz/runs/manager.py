"""The page server's runs: one Run per settings, a fair queue, a worker pool behind the seam.

The manager owns the bookkeeping every tab reads (state, records, place in the queue, estimates) and
never trains: it hands each run to the worker pool (`pool.py`) when a slot is free, and stores what comes
back complete. Sessions are served in turn: the next run to start belongs to the session that has
waited longest since its last start, so one visitor's slider storm or long link cannot hold every slot;
a session that holds two slots more than a waiting one gives one up at its next epoch boundary.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from regviz.records import EpochRecord
from regviz.runs.seam import Job, count_from_env, deadline, time_left
from regviz.settings import Settings
from regviz.store import StoreError

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, CANCELLED, FAILED, REFUSED = (
    "queued",
    "running",
    "done",
    "cancelled",
    "failed",
    "refused",
)
FINISHED = frozenset({DONE, CANCELLED, FAILED, REFUSED})
ENV_MAX_TRAININGS = "REGVIZ_MAX_TRAININGS"
INTERACTIVE = 0  # priority of a run a visitor is looking at; larger numbers wait behind it
SWEEP = 5  # a sweep's cell: started only when no visitor's run is queued, but never stopped for one
BACKGROUND = 10  # a run nobody waits for yet (prefetch): it trains only while no visitor's run is
# queued or training, and is stopped and queued again the moment one is
PREFETCH = "background"  # the watcher that keeps prefetched runs alive
Lookup = Callable[[Settings], list[EpochRecord] | None]
Save = Callable[[Settings, list[EpochRecord]], None]

if TYPE_CHECKING:
    from regviz.runs.costs import CostModel
    from regviz.runs.pool import WorkerPool


def max_trainings_from_env(environ: Mapping[str, str] | None = None) -> int:
    """How many trainings may run at once: REGVIZ_MAX_TRAININGS (an integer >= 1) if set, else 1."""
    return count_from_env(ENV_MAX_TRAININGS, 1, environ)


def _locked(name: str, doc: str, read=lambda value: value) -> property:
    """A property that reads the attribute `name` under the manager's lock."""

    def get(run: Run):
        with run._changed:
            return read(getattr(run, name))

    return property(get, doc=doc)


class Run:
    """One training of one Settings, shared by every session that watches it; every read is thread-safe.

    Runs are made by a RunManager; they share its lock, so a poller reads a consistent state.
    """

    state = _locked("_state", "One of queued, running, done, cancelled, failed, refused.")
    finished = _locked("_state", "True once finished; it never changes again.", FINISHED.__contains__)
    error = _locked("_error", "One-line reason when the run failed or was refused.")
    started_at = _locked("_started_at", "time.time() when training started; None while queued or stored.")
    version = _locked("_version", "Grows on every new record or change of state or queue place.")
    watchers = _locked("_watchers", "How many sessions watch this run now.", len)

    def __init__(self, settings: Settings, changed: threading.Condition, stored=None, estimate=None):
        self.settings = settings
        self.key = settings.key()
        self.total_epochs = settings.epochs
        self.from_store = stored is not None
        self.estimate = estimate  # seconds the whole training should take; None when unknown
        self._changed = changed  # the manager's one lock, shared by all its runs
        self._records: list[EpochRecord] = list(stored or ())
        self._state = DONE if self.from_store else QUEUED
        self._error: str | None = None
        self._started_at: float | None = None
        self._version = 1
        self._watchers: dict[str, int] = {}  # session -> the priority it asked for; the run takes the lowest
        self._owner: str | None = None  # the session whose turn this run takes in the queue
        self._priority = INTERACTIVE
        self._arrival = 0  # order of enqueueing, for first-come first-served within a session
        self._place: int | None = None
        self._starts_in: float | None = None
        self._planned_at = 0.0
        self._job: Job | None = None
        self._preempted = False  # stopped for a visitor's run: queued again when its training ends

    def records(self) -> list[EpochRecord]:
        """A copy of the epoch records so far."""
        return self.snapshot()[1]

    def snapshot(self) -> tuple[int, list[EpochRecord]]:
        """The version and a copy of the records, read together."""
        with self._changed:
            return self._version, list(self._records)

    def queue_position(self) -> int | None:
        """1-based place in the order the queued runs will start, None when not queued."""
        with self._changed:
            return self._place if self._state == QUEUED else None

    def starts_in(self) -> float | None:
        """Estimated seconds until a queued run starts; None when not queued or unknown."""
        with self._changed:
            if self._state != QUEUED or self._starts_in is None:
                return None
            return max(0.0, self._starts_in - (time.monotonic() - self._planned_at))

    def eta_seconds(self) -> float | None:
        """Estimated seconds left: mean epoch time so far times epochs to go (the estimate before)."""
        with self._changed:
            if self._state != RUNNING:
                return 0.0 if self._state == DONE else None
            return _left(self._records, self.total_epochs, self.estimate, self._started_at)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is finished or timeout passes; True if it finished."""
        with self._changed:
            return self._changed.wait_for(lambda: self._state in FINISHED, timeout)

    def wait_for_change(self, version: int, timeout: float | None = None) -> int:
        """Block until version moves past the given one (or timeout passes) and return the current version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout)
            return self._version

    def __repr__(self) -> str:
        return f"Run({self.key}, {self._state}, {len(self._records)}/{self.total_epochs})"

    # the methods below are the manager's; they expect its lock to be held

    def _set_state(self, state: str, error: str | None = None) -> None:
        self._state, self._error = state, error
        if state == RUNNING:
            self._started_at = time.time()
        self._bump()

    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()


def _left(records, total, estimate, started_at) -> float | None:
    if records:
        return max(0.0, records[-1].seconds / len(records) * (total - len(records)))
    if estimate is None:
        return None
    return max(0.0, estimate - (time.time() - started_at)) if started_at else estimate


class RunManager:
    """Shares runs between sessions: stored ones at once, one training per settings, a fair queue."""

    def __init__(
        self, executor: WorkerPool, lookup: Lookup, save: Save, costs: CostModel | None = None, keep_done=32
    ):  # fmt: skip
        self.executor = executor
        self._lookup, self._save, self._costs = lookup, save, costs
        self._keep_done = keep_done  # finished runs held for instant re-watch, even if the store failed
        self._lock = threading.RLock()  # an executor may end a job from inside start or cancel
        self._changed = threading.Condition(self._lock)  # runs' waiters
        self._active: dict[str, Run] = {}  # queued, running, failed and refused runs that someone watches
        self._done: OrderedDict[str, Run] = OrderedDict()  # LRU of finished runs
        self._running: set[Run] = set()  # includes runs cancelled but not yet stopped: they hold a slot
        self._turns: dict[str, int] = {}  # session -> tick of its last start
        self._tick = 0
        self._arrivals = itertools.count(1)
        self._closed = False

    def watch(self, settings: Settings, watcher: str, priority: int = INTERACTIVE) -> Run:
        """The Run for these settings: stored and done, or shared with other watchers, or newly queued."""
        return self._watch(settings, watcher, priority)

    def _watch(self, settings: Settings, watcher: str, priority: int) -> Run:
        with self._lock:
            run = self._known(settings, watcher, priority)
        if run is not None:
            return run
        stored = self._lookup_quietly(settings)  # outside the lock: the store may read a disk
        estimate = None if stored is not None else self._estimate(settings)
        with self._lock:
            run = self._known(settings, watcher, priority)  # another session may have started it meanwhile
            if run is None and stored is not None:
                run = Run(settings, self._changed, stored=stored)
                self._remember(run)
            return run or self._enqueue(settings, watcher, priority, estimate)

    def prefetch(self, wanted: Iterable[Settings]) -> list[Run]:
        """Train these runs in the background (BACKGROUND priority) unless stored or known already:
        they start only while no visitor's run waits or trains, so a later visit finds them done."""
        return [self._watch(settings, PREFETCH, BACKGROUND) for settings in wanted]

    def request_refusal(self, parts: Sequence[tuple[str, Settings]]) -> str | None:
        """Why a page's request is refused as a whole: the estimated training seconds of everything it
        would start that is not stored or trained already (every fold and repeat of each part: this
        run, its baseline, each pinned run), over the limit; None when it may go. parts: (what, settings)."""
        if self._costs is None:
            return None
        seen: set[str] = set()
        costs: dict[str, list] = {}  # what -> [trainings, seconds]; parts of one name are summed
        for what, settings in parts:
            for run in settings.fold_runs():
                if run.key() in seen or self._trained(run):
                    continue
                seen.add(run.key())
                cost = costs.setdefault(what, [0, 0.0])
                cost[0] += 1
                cost[1] += self._estimate(run) or 0.0  # an undescribed dataset: nothing to judge yet
        kfold = any(len(settings.fold_runs()) > 1 for _, settings in parts)
        pinned = any("pinned" in what for what in costs)
        judged = [(what, n, seconds) for what, (n, seconds) in costs.items()]
        return self._costs.request_refusal(judged, kfold=kfold, pinned=pinned) if judged else None

    def _trained(self, settings: Settings) -> bool:
        """Done here or in the store (a queued or training run is not: it is still to be paid for)."""
        key = settings.key()
        with self._lock:
            if key in self._done or key in self._active:
                return key in self._done or self._active[key]._state == DONE
        return self._lookup_quietly(settings) is not None

    def retry(self, settings: Settings, watcher: str) -> Run:
        """Train a failed run again (the same Run object is kept by nobody: a new one is queued)."""
        with self._lock:
            run = self._active.get(settings.key())
            if run is not None and run._state == FAILED:
                del self._active[run.key]
        return self.watch(settings, watcher)

    def unwatch(self, watcher: str, keep: Iterable[Settings] = ()) -> None:
        """Stop watching every run except those in keep; a run nobody watches any more is cancelled."""
        kept = {s.key() for s in keep}
        with self._lock:
            for key, run in list(self._active.items()):
                if key in kept or run._watchers.pop(watcher, None) is None:
                    continue
                if not run._watchers:
                    self._abandon(run)
                else:  # e.g. only the prefetch watcher is left: back to the background
                    self._reprioritise(run)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Cancel every queued and running run and stop the executor; True if it all stopped in time."""
        with self._lock:
            self._closed = True
            for run in list(self._active.values()):
                self._abandon(run)
            self._done.clear()
        until = deadline(timeout)
        stopped = self.executor.close(timeout)
        with self._lock:
            return self._changed.wait_for(lambda: not self._running, time_left(until)) and stopped

    def problem(self) -> str | None:
        """One line when trainings cannot start (the executor's workers failed to start), else None."""
        return self.executor.problem()

    # bookkeeping, all with the lock held

    def _known(self, settings: Settings, watcher: str, priority: int) -> Run | None:
        if self._closed:
            raise RuntimeError("RunManager is shut down")
        key = settings.key()
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        run = self._active.get(key)
        if run is not None:
            run._watchers[watcher] = min(priority, run._watchers.get(watcher, priority))
            self._reprioritise(run)
        return run

    def _reprioritise(self, run: Run) -> None:
        """A run takes the most urgent priority of its watchers (a visitor's over a sweep's over the
        background), and its turn in the queue is that watcher's."""
        priority = min(run._watchers.values())
        if priority == run._priority:
            return
        owner = run._owner if run._watchers.get(run._owner) == priority else None
        run._priority = priority
        run._owner = owner or next(w for w, p in run._watchers.items() if p == priority)
        if run._state in (QUEUED, RUNNING):
            self._dispatch()

    def _enqueue(self, settings: Settings, watcher: str, priority: int, estimate) -> Run:
        run = Run(settings, self._changed, estimate=estimate)
        run._watchers[watcher] = priority
        run._owner, run._priority = watcher, priority
        self._active[settings.key()] = run
        refusal = self._costs.refusal(settings, estimate) if self._costs and estimate is not None else None
        if refusal:
            log.info("run %s refused: %s", run.key, refusal)
            run._set_state(REFUSED, refusal)
        else:
            self._queue_up(run)
        return run

    def _queue_up(self, run: Run) -> None:
        run._arrival = next(self._arrivals)
        self._dispatch()

    @property
    def _queue(self) -> list[Run]:
        """The queued runs, every one of them watched (so in _active); _order() gives their order."""
        return [r for r in self._active.values() if r._state == QUEUED]

    def _order(self) -> list[Run]:
        """Queued runs in the order they will start: by priority, then sessions in turn, each FIFO."""
        turns, tick, order = dict(self._turns), self._tick, []
        waiting = sorted(self._queue, key=lambda r: r._arrival)  # first come first served in a session
        while waiting:
            best = min(waiting, key=lambda r: (r._priority, turns.get(r._owner, -1), r._arrival))
            waiting.remove(best)
            order.append(best)
            tick += 1
            turns[best._owner] = tick
        return order

    def _dispatch(self) -> None:
        """Take back the slots that must be given up, start queued runs while there is a free slot, then
        tell every queued run its new place. A background run starts only while no visitor's run is
        queued or training."""
        for run in self._yielding():
            log.info("run %s gives its slot to a waiting run: queued again", run.key)
            run._preempted = True
            self._cancel(run)
        while not self._closed and self._queue and len(self._running) < self.executor.slots:
            nxt = self._order()[0]
            if nxt._priority >= BACKGROUND and self._visitor_busy():
                break
            self._begin(nxt)
        self._plan()

    def _yielding(self) -> list[Run]:
        """The training runs that give their slot back now (each is queued again): the one place where
        the manager preempts. Background runs, while a visitor's run is queued or training. Then, for
        each visitor's queued run, in order, that finds no slot free or being freed: a sweep cell (the
        least trained first), so a slider move never waits behind a sweep; else, when another session
        holds at least two more slots than the waiting run's, that session's least trained run (its last
        started among equals: one that has not begun, in a worker that trains a session's runs one after
        another), so one session's K-fold group cannot hold every slot while another session waits. Each
        stops at its next epoch boundary. The margin of two keeps a slot from going back and forth."""
        live = [r for r in self._running if not r._job.cancelled.is_set()]
        given = [r for r in live if r._priority >= BACKGROUND] if self._visitor_busy() else []
        free = self.executor.slots - len(live) + len(given)  # free, or being freed
        cells = sorted((r for r in live if SWEEP <= r._priority < BACKGROUND), key=lambda r: len(r._records))
        visitors = [r for r in live if r._priority < SWEEP]
        held = Counter(r._owner for r in visitors)
        for waiting in self._order():
            if waiting._priority >= SWEEP:
                break  # the order puts visitors' runs first
            owner = waiting._owner
            if free > 0:
                free -= 1
            elif cells:
                given.append(cells.pop(0))
            else:
                rich = max((o for o in held if o != owner), key=held.get, default=None)
                if rich is None or held[rich] < held[owner] + 2:
                    continue
                mine = [r for r in visitors if r._owner == rich and r not in given]
                given.append(min(mine, key=lambda r: (len(r._records), -r._arrival)))
                held[rich] -= 1
            held[owner] += 1
        return given

    def _visitor_busy(self) -> bool:
        """A visitor's run is queued, or training and not cancelled."""
        if any(r._priority < BACKGROUND for r in self._queue):
            return True
        return any(r._priority < BACKGROUND and not r._job.cancelled.is_set() for r in self._running)

    def _begin(self, run: Run) -> None:
        self._tick += 1
        self._turns[run._owner] = self._tick
        run._set_state(RUNNING)
        self._running.add(run)
        log.info("run %s started: %s", run.key, run.settings.to_params() or "the defaults")
        run._job = Job(
            run.settings, lambda r: self._record(run, r), lambda error: self._ended(run, error),
            owner=run._owner or "", priority=run._priority,
        )  # fmt: skip
        self.executor.start(run._job)

    def _cancel(self, run: Run) -> None:
        run._job.cancelled.set()
        self.executor.cancel(run._job)

    def _plan(self) -> None:
        """Each queued run's place and estimated start: slots free up as running runs' estimates run out."""
        now = time.monotonic()
        free = sorted([0.0] * max(0, self.executor.slots - len(self._running)) + self._slots_free_in())
        for place, run in enumerate(self._order(), 1):
            starts = free.pop(0) if free else None
            if starts is not None:
                free = sorted([*free, starts + (run.estimate or 0.0)])
            moved = (run._place, run._starts_in) != (place, starts)
            run._place, run._starts_in, run._planned_at = place, starts, now
            if moved:
                run._bump()

    def _slots_free_in(self) -> list[float]:
        """Seconds until each held slot is free. A run giving its slot up frees it at its next epoch
        boundary. A worker trains a session's runs one after another, so a run that has not begun
        (no epoch yet) waits for the earlier ones of its session: its slot is free after all of them,
        not when its own estimate has run out while it waited."""
        lanes: dict[str | None, float] = {}  # session -> when its runs so far are done
        free = []
        for run in sorted(self._running, key=lambda r: r._arrival):
            estimate = run.estimate or 0.0
            if run._job.cancelled.is_set():
                free.append(estimate / max(1, run.total_epochs))
                continue
            if run._records or run._owner not in lanes:
                left = _left(run._records, run.total_epochs, run.estimate, run._started_at) or 0.0
            else:
                left = lanes[run._owner] + estimate
            lanes[run._owner] = max(lanes.get(run._owner, 0.0), left)
            free.append(left)
        return free

    def _abandon(self, run: Run) -> None:
        """Forget a run nobody watches; a queued one leaves the queue, a running one is asked to stop."""
        del self._active[run.key]
        if run._state == QUEUED:
            run._set_state(CANCELLED)
            self._plan()
        elif run._state == RUNNING:
            log.info("run %s abandoned: nobody watches it any more, cancelling", run.key)
            self._cancel(run)

    def _remember(self, run: Run) -> None:
        self._done[run.key] = run
        self._done.move_to_end(run.key)
        while len(self._done) > self._keep_done:
            self._done.popitem(last=False)

    def _finish(self, run: Run, state: str, error: str | None = None) -> None:
        log.info("run %s %s after %d of %d epochs", run.key, state, len(run._records), run.total_epochs)
        run._set_state(state, error)
        self._running.discard(run)
        # a failed run stays while watched, so a rerun shows the error, not a retry
        if state != FAILED and self._active.get(run.key) is run:
            del self._active[run.key]
        if state == DONE:
            self._remember(run)
        self._dispatch()

    # the executor's side: records and the end of each job, from its threads

    def _record(self, run: Run, record: EpochRecord) -> None:
        with self._lock:
            if run._state == RUNNING and not run._job.cancelled.is_set():
                run._records.append(record)
                run._bump()
                self._plan()

    def _ended(self, run: Run, error: str | None) -> None:
        with self._lock:
            if run._preempted and self._active.get(run.key) is run and not self._closed:
                return self._requeue(run)  # else abandoned meanwhile: cancelled
            outcome = self._outcome(run, error)
            if outcome is not None:
                return self._finish(run, *outcome)
            records = list(run._records)
        saving = "could not save run %s; it stays in memory only"
        _quietly(lambda: self._save(run.settings, records), saving, run.key)
        if self._costs is not None:  # its own training seconds, measured where its epochs ran, if they were
            own = run._job.compute
            self._costs.learn(run.settings, records[-1].seconds if own is None else own)
        with self._lock:
            self._finish(run, DONE)

    def _requeue(self, run: Run) -> None:
        """A background run or sweep cell stopped for a visitor's run: from its first epoch again, in turn."""
        run._preempted = False
        self._running.discard(run)
        run._records.clear()
        run._set_state(QUEUED)
        self._queue_up(run)

    def _outcome(self, run: Run, error: str | None) -> tuple[str, str | None] | None:
        """How a training that ended is finished; None means complete, to be saved."""
        if run._job.cancelled.is_set():
            return CANCELLED, None  # nobody is watching it any more: an error while stopping is no news
        if error is not None:
            return FAILED, error
        got, total = len(run._records), run.total_epochs
        return None if got == total else (FAILED, f"training ended after {got} of {total} epochs")

    def _estimate(self, settings: Settings) -> float | None:
        try:
            return None if self._costs is None else self._costs.estimate(settings)
        except Exception:
            log.warning("could not estimate the cost of %s", settings.key(), exc_info=True)
            return None

    def _lookup_quietly(self, settings: Settings) -> list[EpochRecord] | None:
        looking = "store lookup failed for %s; training instead"
        return _quietly(lambda: self._lookup(settings), looking, settings.key())


def _quietly(work: Callable, warning: str, key: str):
    """work(), or None after a warning: a StoreError's one line, anything else with its traceback."""
    try:
        return work()
    except StoreError as e:
        log.warning(warning + ": %s", key, e)
    except Exception:
        log.warning(warning, key, exc_info=True)
    return None
