"""The process-wide manager of training runs: one shared Run per settings, a FIFO queue, bounded workers."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping

from regviz.records import EpochRecord
from regviz.settings import Settings

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
FINISHED = frozenset({DONE, CANCELLED, FAILED})
ENV_MAX_TRAININGS = "REGVIZ_MAX_TRAININGS"
KEEP_DONE = 32  # finished runs held in memory for instant re-watch, even when the store failed to save them

Train = Callable[[Settings, threading.Event], Iterator[EpochRecord]]
Lookup = Callable[[Settings], list[EpochRecord] | None]
Save = Callable[[Settings, list[EpochRecord]], None]


def max_trainings_from_env(environ: Mapping[str, str] | None = None) -> int:
    """How many trainings may run at once: REGVIZ_MAX_TRAININGS (an integer >= 1) if set, else 1."""
    raw = (os.environ if environ is None else environ).get(ENV_MAX_TRAININGS, "")
    if not raw.strip():
        return 1
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_MAX_TRAININGS}={raw!r} is not allowed: an integer >= 1")
    return value


class Run:
    """One training of one Settings, shared by every session that watches it; every read is thread-safe.

    Runs are made by a RunManager; they share its lock, so a poller reads a consistent state.
    """

    def __init__(
        self,
        settings: Settings,
        changed: threading.Condition,
        queue: deque[Run],
        stored: list[EpochRecord] | None = None,
    ):
        self.settings = settings
        self.key = settings.key()
        self.total_epochs = settings.epochs
        self.from_store = stored is not None
        self._changed = changed  # the manager's one lock, shared by all its runs
        self._queue = queue
        self._records: list[EpochRecord] = list(stored or ())
        self._state = DONE if self.from_store else QUEUED
        self._error: str | None = None
        self._started_at: float | None = None
        self._version = 1
        self._watchers: set[str] = set()
        self._cancel = threading.Event()

    @property
    def state(self) -> str:
        """One of queued, running, done, cancelled, failed."""
        with self._changed:
            return self._state

    @property
    def finished(self) -> bool:
        """True once the run is done, cancelled or failed; it never changes again."""
        with self._changed:
            return self._state in FINISHED

    @property
    def error(self) -> str | None:
        """One-line reason when the run failed."""
        with self._changed:
            return self._error

    @property
    def started_at(self) -> float | None:
        """Wall-clock time (time.time) when training started; None while queued or when from the store."""
        with self._changed:
            return self._started_at

    @property
    def version(self) -> int:
        """Grows on every new record or change of state or queue place: redraw only when it moved."""
        with self._changed:
            return self._version

    def records(self) -> list[EpochRecord]:
        """A copy of the epoch records so far."""
        with self._changed:
            return list(self._records)

    def queue_position(self) -> int | None:
        """1-based place among the queued runs, None when not queued."""
        with self._changed:
            return self._queue.index(self) + 1 if self._state == QUEUED else None

    def eta_seconds(self) -> float | None:
        """Estimated seconds left: mean epoch time so far times epochs to go; None before the first epoch."""
        with self._changed:
            if self._state == DONE:
                return 0.0
            if self._state != RUNNING or not self._records:
                return None
            done = len(self._records)
            mean = self._records[-1].seconds / done
            return max(0.0, mean * (self.total_epochs - done))

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

    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def _set_state(self, state: str, error: str | None = None) -> None:
        self._state, self._error = state, error
        if state == RUNNING:
            self._started_at = time.time()
        self._bump()

    def _add(self, record: EpochRecord) -> None:
        self._records.append(record)
        self._bump()


class RunManager:
    """Shares runs between sessions: stored ones at once, one training per settings, a FIFO beyond the cap."""

    def __init__(
        self,
        train: Train,
        lookup: Lookup,
        save: Save,
        max_concurrent: int | None = None,
        keep_done: int = KEEP_DONE,
    ):
        if max_concurrent is None:
            max_concurrent = max_trainings_from_env()
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent={max_concurrent!r} is not allowed: an integer >= 1")
        self.max_concurrent = max_concurrent
        self._train, self._lookup, self._save = train, lookup, save
        self._keep_done = keep_done
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # runs' waiters
        self._work = threading.Condition(self._lock)  # idle workers
        self._active: dict[str, Run] = {}  # queued, running and failed runs that someone watches
        self._done: OrderedDict[str, Run] = OrderedDict()  # LRU of finished runs
        self._queue: deque[Run] = deque()
        self._running: set[Run] = set()  # includes runs cancelled but not yet stopped: they still use a core
        self._ready: deque[Run] = deque()  # started runs not yet picked up by a worker
        self._workers: list[threading.Thread] = []
        self._closed = False

    def watch(self, settings: Settings, watcher: str) -> Run:
        """The Run for these settings: stored and done, or shared with other watchers, or newly queued."""
        with self._lock:
            run = self._known(settings, watcher)
        if run is not None:
            return run
        stored = self._lookup_quietly(settings)  # outside the lock: the store may read a disk
        with self._lock:
            run = self._known(settings, watcher)  # another session may have started it meanwhile
            if run is not None:
                return run
            if stored is not None:
                run = Run(settings, self._changed, self._queue, stored=stored)
                self._remember(run)
                return run
            return self._enqueue(settings, watcher)

    def unwatch(self, watcher: str, keep: Iterable[Settings] = ()) -> None:
        """Stop watching every run except those in keep; a run nobody watches any more is cancelled."""
        kept = {s.key() for s in keep}
        with self._lock:
            for key, run in list(self._active.items()):
                if key in kept:
                    continue
                run._watchers.discard(watcher)
                if not run._watchers:
                    self._abandon(run)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Cancel every queued and running run and stop the workers; True if they all stopped in time."""
        with self._lock:
            self._closed = True
            for run in list(self._active.values()):
                self._abandon(run)
            self._done.clear()
            self._work.notify_all()
            workers = list(self._workers)
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(w.is_alive() for w in workers)

    # bookkeeping, all with the lock held

    def _known(self, settings: Settings, watcher: str) -> Run | None:
        if self._closed:
            raise RuntimeError("RunManager is shut down")
        key = settings.key()
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        run = self._active.get(key)
        if run is not None:
            run._watchers.add(watcher)
        return run

    def _enqueue(self, settings: Settings, watcher: str) -> Run:
        run = Run(settings, self._changed, self._queue)
        run._watchers.add(watcher)
        self._active[settings.key()] = run
        self._queue.append(run)
        self._start_workers()
        self._dispatch()
        return run

    def _start_workers(self) -> None:
        while len(self._workers) < self.max_concurrent:
            name = f"regviz-train-{len(self._workers)}"
            worker = threading.Thread(target=self._serve, name=name, daemon=True)
            self._workers.append(worker)
            worker.start()

    def _dispatch(self) -> None:
        """Move queued runs to running while there is room."""
        moved = False
        while not self._closed and self._queue and len(self._running) < self.max_concurrent:
            run = self._queue.popleft()
            run._set_state(RUNNING)
            self._running.add(run)
            self._ready.append(run)
            moved = True
        if moved:
            self._queue_moved()
            self._work.notify_all()

    def _queue_moved(self) -> None:
        for run in self._queue:  # every place changed: let their pollers redraw
            run._bump()

    def _abandon(self, run: Run) -> None:
        """Forget a run nobody watches; a queued one leaves the queue, a running one is asked to stop."""
        del self._active[run.key]
        if run._state == QUEUED:
            self._queue.remove(run)
            run._set_state(CANCELLED)
            self._queue_moved()
        elif run._state == RUNNING:
            log.info("run %s abandoned: nobody watches it any more, cancelling", run.key)
            run._cancel.set()  # the worker marks it cancelled when train returns

    def _remember(self, run: Run) -> None:
        key = run.key
        self._done[key] = run
        self._done.move_to_end(key)
        while len(self._done) > self._keep_done:
            self._done.popitem(last=False)

    def _finish(self, run: Run, state: str, error: str | None = None) -> None:
        log.info("run %s %s after %d of %d epochs", run.key, state, len(run._records), run.total_epochs)
        run._set_state(state, error)
        self._running.discard(run)
        key = run.key
        if state != FAILED and self._active.get(key) is run:
            del self._active[key]  # a failed run stays while watched, so a rerun shows the error, not a retry
        if state == DONE:
            self._remember(run)
        self._dispatch()

    # the worker side

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._work.wait_for(lambda: self._ready or self._closed)
                if not self._ready:
                    return
                run = self._ready.popleft()
            self._run(run)

    def _run(self, run: Run) -> None:
        try:
            if not run._cancel.is_set():
                self._consume(run)
        except Exception as exc:
            log.warning("training %s raised", run.key, exc_info=True)
            self._end_with_error(run, exc)
            return
        with self._lock:
            outcome = self._outcome(run)
            if outcome is not None:
                self._finish(run, *outcome)
                return
            records = list(run._records)
        try:
            self._save(run.settings, records)
        except Exception:
            log.warning("could not save run %s; it stays in memory only", run.key, exc_info=True)
        with self._lock:
            self._finish(run, DONE)

    def _consume(self, run: Run) -> None:
        """Append each record as train yields it; stop at the first record after a cancel."""
        log.info("run %s started: %s", run.key, run.settings.to_params() or "the defaults")
        records = iter(self._train(run.settings, run._cancel))
        try:
            for record in records:
                with self._lock:
                    run._add(record)
                if run._cancel.is_set():
                    break
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()  # runs a generator's cleanup now, not at garbage collection

    def _outcome(self, run: Run) -> tuple[str, str | None] | None:
        """How a training whose iterator ended is finished; None means complete, to be saved."""
        if run._cancel.is_set():
            return CANCELLED, None
        got = len(run._records)
        if got != run.total_epochs:
            return FAILED, f"training ended after {got} of {run.total_epochs} epochs"
        return None

    def _end_with_error(self, run: Run, exc: Exception) -> None:
        with self._lock:
            if run._cancel.is_set():  # nobody is watching it any more: an error while stopping is no news
                self._finish(run, CANCELLED)
            else:
                self._finish(run, FAILED, _one_line(exc))

    def _lookup_quietly(self, settings: Settings) -> list[EpochRecord] | None:
        try:
            return self._lookup(settings)
        except Exception:
            log.warning("store lookup failed for %s; training instead", settings.key(), exc_info=True)
            return None


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())  # tracebacks in messages become one line
    return text if len(text) <= limit else text[: limit - 3] + "..."
