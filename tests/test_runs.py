"""RunManager: shared runs, a fair queue, cancels and failures, driven by a gated fake train in threads."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from regviz.records import HIST_EDGES, EpochRecord, LayerStats
from regviz.runs.manager import SWEEP, RunManager, max_trainings_from_env
from regviz.runs.threads import ThreadExecutor
from regviz.settings import Settings

DEADLINE = 10.0  # seconds; only reached when something is broken
S = Settings(dataset="synthetic", epochs=3)
S2 = S.replace(seed=2)
S3 = S.replace(seed=3)


def record(epoch: int) -> EpochRecord:
    """A hand-made epoch record; each epoch takes 2 s on its clock."""
    return EpochRecord(
        epoch=epoch,
        data_loss=0.5,
        val_data_loss=0.6,
        penalty=0.0,
        loss=0.5,
        val_loss=0.6,
        accuracy=0.8,
        val_accuracy=0.7,
        val_auc=None,
        seconds=2.0 * epoch,
        layers=(LayerStats(l2_norm=1.0, small_fraction=0.0),),
        hist=(0,) * (len(HIST_EDGES) - 1),
    )


class FakeTrainer:
    """Stands in for train(): one record per epoch, each only after the test opens a gate for it."""

    def __init__(self):
        self.calls: list[Settings] = []
        self.stopped: list[Settings] = []  # trainings that saw the cancel event and returned
        self.closed: list[Settings] = []  # generators that were closed or ran out
        self.raise_at: dict[str, tuple[int, Exception]] = {}  # key -> (epoch, exception)
        self.obey_cancel = True
        self._gates: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()
        self._all_open = False

    def open(self, settings: Settings, epochs: int = 1) -> None:
        """Let that many more epochs of these settings finish."""
        self._gate(settings).release(epochs)

    def release_all(self) -> None:
        """Open every gate for good (teardown)."""
        with self._lock:
            self._all_open = True
            for gate in self._gates.values():
                gate.release(1000)

    def _gate(self, settings: Settings) -> threading.Semaphore:
        with self._lock:
            if settings.key() not in self._gates:
                self._gates[settings.key()] = threading.Semaphore(1000 if self._all_open else 0)
            return self._gates[settings.key()]

    def __call__(self, settings: Settings, cancel: threading.Event):
        with self._lock:
            self.calls.append(settings)
        try:
            for epoch in range(1, settings.epochs + 1):
                if not self._gate(settings).acquire(timeout=DEADLINE):
                    raise TimeoutError("the test never opened this epoch's gate")
                if cancel.is_set() and self.obey_cancel:  # a real train stops at the end of the batch
                    self.stopped.append(settings)
                    return
                failure = self.raise_at.get(settings.key())
                if failure and failure[0] == epoch:
                    raise failure[1]
                yield record(epoch)
        finally:
            self.closed.append(settings)


class FakeStore:
    """Stands in for the store of finished runs."""

    def __init__(self):
        self.runs: dict[str, list[EpochRecord]] = {}
        self.saves: list[tuple[Settings, list[EpochRecord]]] = []
        self.lookups: list[Settings] = []
        self.fail_save = False
        self.fail_lookup = False

    def lookup(self, settings: Settings) -> list[EpochRecord] | None:
        self.lookups.append(settings)
        if self.fail_lookup:
            raise OSError("store unreadable")
        found = self.runs.get(settings.key())
        return list(found) if found is not None else None

    def save(self, settings: Settings, records: list[EpochRecord]) -> None:
        self.saves.append((settings, list(records)))
        if self.fail_save:
            raise OSError("disk full")
        self.runs[settings.key()] = list(records)


def wait_until(run, check, what: str) -> None:
    """Wait on the run's change signal until check(run) holds; fail the test at the deadline."""
    deadline = time.monotonic() + DEADLINE
    version = run.version  # read before checking, so a change in between is not missed
    while not check(run):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out waiting for {what}: {run!r}")
        version = run.wait_for_change(version, left)


def wait_records(run, n: int) -> None:
    """Wait until the run holds n records."""
    wait_until(run, lambda r: len(r.records()) == n, f"{n} records")


def wait_state(run, state: str) -> None:
    """Wait until the run is in the given state."""
    wait_until(run, lambda r: r.state == state, state)


@pytest.fixture
def trainer():
    return FakeTrainer()


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def make(trainer, store):
    made = []

    def make(max_concurrent=1, train=None, **kwargs):
        executor = ThreadExecutor(train or trainer, max_concurrent)
        manager = RunManager(executor, store.lookup, store.save, **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.shutdown(timeout=0)  # cancel first, so released trainings stop instead of finishing
    trainer.release_all()
    for manager in made:
        assert manager.shutdown(timeout=DEADLINE), "a worker did not stop"


def test_stored_run_is_done_at_once_without_training(make, trainer, store):
    """A stored result comes back already done, from the store, and train is never called."""
    store.runs[S.key()] = [record(e) for e in (1, 2, 3)]
    run = make().watch(S, "a")
    assert run.state == "done" and run.from_store and run.finished
    assert run.records() == store.runs[S.key()]
    assert run.wait(0) and run.eta_seconds() == 0.0 and run.queue_position() is None
    assert trainer.calls == [] and store.saves == []


def test_two_watchers_share_one_run_and_one_training(make, trainer, store):
    """Two sessions watching the same settings get the same Run, trained once."""
    manager = make()
    first, second = manager.watch(S, "a"), manager.watch(S, "b")
    assert first is second
    trainer.open(S, 3)
    assert first.wait(DEADLINE) and first.state == "done"
    assert trainer.calls == [S] and len(store.saves) == 1


def test_records_arrive_one_at_a_time(make, trainer):
    """Each epoch's record shows up as it is yielded, with version, ETA and state following."""
    run = make().watch(S, "a")
    assert run.state == "running" and run.records() == [] and run.eta_seconds() is None
    assert run.started_at is not None and run.total_epochs == 3
    versions = [run.version]
    for epoch, eta in ((1, 4.0), (2, 2.0)):
        trainer.open(S)
        wait_records(run, epoch)
        assert [r.epoch for r in run.records()] == list(range(1, epoch + 1))
        assert run.state == "running" and run.eta_seconds() == pytest.approx(eta)
        versions.append(run.version)
    trainer.open(S)
    assert run.wait(DEADLINE) and run.state == "done" and run.eta_seconds() == 0.0
    versions.append(run.version)
    assert versions == sorted(set(versions))


def test_second_settings_waits_in_queue_until_first_finishes(make, trainer):
    """With one training slot a second settings is queued at place 1 and starts when the first is done."""
    manager = make(max_concurrent=1)
    first, second = manager.watch(S, "a"), manager.watch(S2, "b")
    assert first.state == "running" and first.queue_position() is None
    assert second.state == "queued" and second.queue_position() == 1
    assert second.started_at is None and second.eta_seconds() is None
    trainer.open(S, 3)
    assert first.wait(DEADLINE) and first.state == "done"
    wait_state(second, "running")
    assert second.queue_position() is None
    trainer.open(S2, 3)
    assert second.wait(DEADLINE) and second.state == "done"
    assert trainer.calls == [S, S2]


def test_two_slots_train_two_runs_at_once(make, trainer):
    """With max_concurrent=2 two settings run side by side and a third waits."""
    manager = make(max_concurrent=2)
    runs = [manager.watch(s, "a") for s in (S, S2, S3)]
    assert [r.state for r in runs] == ["running", "running", "queued"]
    trainer.open(S2)
    trainer.open(S)
    wait_records(runs[0], 1)
    wait_records(runs[1], 1)


def test_queue_positions_move_up_when_a_queued_run_leaves(make):
    """Removing a queued run moves those behind it up one place and bumps their version."""
    manager = make(max_concurrent=1)
    manager.watch(S, "a")
    second, third = manager.watch(S2, "b"), manager.watch(S3, "c")
    assert (second.queue_position(), third.queue_position()) == (1, 2)
    before = third.version
    manager.unwatch("b")
    assert second.state == "cancelled" and second.queue_position() is None and second.wait(0)
    assert third.queue_position() == 1 and third.version > before


def test_unwatched_running_run_stops_within_one_epoch(make, trainer, store):
    """Closing the only watching tab cancels a running run after the epoch in progress; it is not saved."""
    manager = make()
    run = manager.watch(S, "a")
    trainer.open(S)
    wait_records(run, 1)
    manager.unwatch("a")
    trainer.open(S)  # the epoch in progress ends; the fake sees the cancel event there
    assert run.wait(DEADLINE) and run.state == "cancelled"
    assert len(run.records()) == 1 and trainer.stopped == [S]
    assert store.saves == []


def test_train_ignoring_cancel_is_dropped_after_its_next_record(make, trainer, store):
    """A train that never checks the cancel event is abandoned (and closed) at its next record."""
    trainer.obey_cancel = False
    manager = make()
    run = manager.watch(S, "a")
    trainer.open(S)
    wait_records(run, 1)
    manager.unwatch("a")
    trainer.open(S)
    assert run.wait(DEADLINE) and run.state == "cancelled"
    # the record computed after the cancel is dropped: nobody watches this run any more
    assert len(run.records()) == 1 and trainer.closed == [S] and store.saves == []


def test_unwatching_a_queued_run_removes_it_from_the_queue(make, trainer):
    """A queued run nobody watches is cancelled at once and never trained."""
    manager = make(max_concurrent=1)
    first, queued = manager.watch(S, "a"), manager.watch(S2, "b")
    manager.unwatch("b")
    assert queued.state == "cancelled" and queued.wait(0)
    trainer.open(S, 3)
    assert first.wait(DEADLINE) and first.state == "done"
    assert trainer.calls == [S]


def test_run_survives_while_another_watcher_stays(make, trainer, store):
    """When one of two watchers leaves, the shared run goes on and is saved."""
    manager = make()
    run = manager.watch(S, "a")
    manager.watch(S, "b")
    manager.unwatch("a")
    trainer.open(S, 3)
    assert run.wait(DEADLINE) and run.state == "done" and len(store.saves) == 1


def test_keep_protects_the_new_settings_and_their_baseline(make):
    """A slider move (watch new, unwatch keeping new and its baseline) cancels only the old settings."""
    old, new = S.replace(l2=1e-3), S.replace(l2=3e-3)
    manager = make(max_concurrent=1)
    baseline = manager.watch(S, "a")
    before = manager.watch(old, "a")
    after = manager.watch(new, "a")
    manager.unwatch("a", keep=[new, new.baseline()])
    assert before.state == "cancelled"
    assert baseline.state == "running" and after.state == "queued" and after.queue_position() == 1


def test_train_error_fails_the_run_and_the_worker_serves_the_next(make, trainer, store):
    """An exception in train marks the run failed with a one-line message; the next run still trains."""
    trainer.raise_at[S2.key()] = (2, RuntimeError("boom\n  in the second line"))
    manager = make(max_concurrent=1)
    failing, after = manager.watch(S2, "a"), manager.watch(S, "b")
    trainer.open(S2, 2)
    assert failing.wait(DEADLINE) and failing.state == "failed"
    assert failing.error == "RuntimeError: boom in the second line"
    assert len(failing.records()) == 1 and store.saves == []
    trainer.open(S, 3)
    assert after.wait(DEADLINE) and after.state == "done"


def failed_once(make, trainer):
    """A manager whose run of S (watched by "a") failed in its first epoch; the next training succeeds."""
    trainer.raise_at[S.key()] = (1, ValueError("bad data"))
    manager = make()
    failed = manager.watch(S, "a")
    trainer.open(S)
    assert failed.wait(DEADLINE) and failed.state == "failed"
    del trainer.raise_at[S.key()]
    return manager, failed


def test_failed_run_is_kept_while_watched_then_retried(make, trainer):
    """Watching a failed run again shows the failure; once nobody watches it, a new watch retrains."""
    manager, failed = failed_once(make, trainer)
    assert manager.watch(S, "a") is failed and trainer.calls == [S]
    manager.unwatch("a")
    retry = manager.watch(S, "a")
    assert retry is not failed
    trainer.open(S, 3)
    assert retry.wait(DEADLINE) and retry.state == "done" and trainer.calls == [S, S]


def test_train_ending_early_fails_the_run(make, store):
    """A train that stops before the last epoch without being cancelled is a failure, not a result."""

    def short(settings, cancel):
        yield record(1)

    run = make(train=short).watch(S, "a")
    assert run.wait(DEADLINE) and run.state == "failed"
    assert run.error == "training ended after 1 of 3 epochs" and store.saves == []


def test_save_called_once_with_all_records(make, trainer, store):
    """A complete run is saved once with every record, and a fresh manager then serves it from the store."""
    run = make().watch(S, "a")
    trainer.open(S, 3)
    assert run.wait(DEADLINE) and run.state == "done" and not run.from_store
    assert store.saves == [(S, run.records())]
    assert [r.epoch for r in run.records()] == [1, 2, 3]
    again = make().watch(S, "b")
    assert again.from_store and again.records() == run.records() and trainer.calls == [S]


def test_save_failure_still_done_and_served_from_memory(make, trainer, store, caplog):
    """A failing save logs a warning; the run is done and a later watch gets it from memory."""
    store.fail_save = True
    manager = make()
    run = manager.watch(S, "a")
    with caplog.at_level(logging.WARNING, logger="regviz.runs.manager"):
        trainer.open(S, 3)
        assert run.wait(DEADLINE) and run.state == "done"
    assert "could not save" in caplog.text
    manager.unwatch("a")
    assert manager.watch(S, "b") is run and trainer.calls == [S]


def test_done_runs_beyond_the_memory_limit_come_from_the_store(make, trainer, store):
    """Only the newest keep_done finished runs stay in memory; older ones are read back from the store."""
    manager = make(keep_done=1)
    first = manager.watch(S, "a")
    trainer.open(S, 3)
    assert first.wait(DEADLINE)
    second = manager.watch(S2, "a")
    trainer.open(S2, 3)
    assert second.wait(DEADLINE)
    assert manager.watch(S2, "a") is second
    again = manager.watch(S, "a")
    assert again is not first and again.from_store and again.records() == first.records()


def test_rewatch_after_cancel_starts_a_fresh_training(make, trainer, store):
    """A cancelled run is forgotten: watching the settings again trains from epoch 1 in a new Run."""
    manager = make(max_concurrent=1)
    old = manager.watch(S, "a")
    trainer.open(S)
    wait_records(old, 1)
    manager.unwatch("a")
    new = manager.watch(S, "a")
    assert new is not old and new.state == "queued"  # the old training still holds the slot
    trainer.open(S)
    assert old.wait(DEADLINE) and old.state == "cancelled"
    wait_state(new, "running")
    trainer.open(S, 3)
    assert new.wait(DEADLINE) and new.state == "done"
    assert [r.epoch for r in new.records()] == [1, 2, 3]
    assert trainer.calls == [S, S] and len(store.saves) == 1


def test_lookup_error_falls_back_to_training(make, trainer, store):
    """An unreadable store is treated as a miss: the settings are trained."""
    store.fail_lookup = True
    run = make().watch(S, "a")
    trainer.open(S, 3)
    assert run.wait(DEADLINE) and run.state == "done" and trainer.calls == [S]


def test_shutdown_cancels_everything_and_stops_the_workers(make, trainer):
    """Shutdown cancels queued and running runs, stops the workers and refuses new watches."""
    manager = make(max_concurrent=1)
    running, queued = manager.watch(S, "a"), manager.watch(S2, "b")
    trainer.open(S)
    wait_records(running, 1)
    assert not manager.shutdown(timeout=0)  # the training is blocked in its second epoch
    assert queued.state == "cancelled"
    trainer.open(S)
    assert manager.shutdown(timeout=DEADLINE)
    assert running.state == "cancelled" and trainer.calls == [S]
    with pytest.raises(RuntimeError, match="shut down"):
        manager.watch(S, "a")


@pytest.mark.parametrize(("raw", "expected"), [(None, 1), ("", 1), ("1", 1), ("3", 3), (" 2 ", 2)])
def test_max_trainings_from_env_reads_a_positive_integer(raw, expected):
    """REGVIZ_MAX_TRAININGS sets the number of parallel trainings; unset or blank means 1."""
    environ = {} if raw is None else {"REGVIZ_MAX_TRAININGS": raw}
    assert max_trainings_from_env(environ) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5", "2e1"])
def test_max_trainings_from_env_rejects_bad_values(raw):
    """Anything but an integer >= 1 is an error naming the variable and what it accepts."""
    with pytest.raises(ValueError, match=r"REGVIZ_MAX_TRAININGS=.* an integer >= 1"):
        max_trainings_from_env({"REGVIZ_MAX_TRAININGS": raw})


def test_thread_executor_rejects_a_bad_slot_count(trainer):
    """A thread executor needs at least one slot; the manager's concurrency is the executor's slots."""
    assert ThreadExecutor(trainer, 3).slots == 3
    with pytest.raises(ValueError, match="slots"):
        ThreadExecutor(trainer, 0)


# ---- fair turns, priorities, cost estimates and the cost limit -------------------------------------------


class FixedCosts:
    """Every run is estimated at `seconds`; runs over `limit` are refused; finished runs are noted."""

    def __init__(self, seconds: float = 10.0, limit: float = 100.0):
        self.seconds, self.limit, self.learned = seconds, limit, []

    def estimate(self, settings):
        return self.seconds * settings.epochs / 3

    def refusal(self, settings, seconds):
        return f"too long: {seconds:g} s" if seconds > self.limit else None

    def learn(self, settings, seconds):
        self.learned.append((settings, seconds))


def started_order(manager, trainer, runs) -> list:
    """Finish runs one at a time, in the order the manager starts them; returns that order."""
    order = []
    while len(order) < len(runs):
        running = [r for r in runs if r.state == "running" and r not in order]
        assert len(running) == 1, runs
        order.append(running[0])
        trainer.open(running[0].settings, 3)
        assert running[0].wait(DEADLINE)
    return order


def test_sessions_take_turns_in_the_queue(make, trainer):
    """A session that has had a start waits behind one that has not, whatever the arrival order."""
    manager = make(max_concurrent=1)
    first = manager.watch(S, "a")
    a2, a3 = manager.watch(S2, "a"), manager.watch(S3, "a")
    b1 = manager.watch(S.replace(seed=4), "b")
    assert (b1.queue_position(), a2.queue_position(), a3.queue_position()) == (1, 2, 3)
    assert started_order(manager, trainer, [first, a2, a3, b1]) == [first, b1, a2, a3]


def test_two_sessions_storming_alternate(make, trainer):
    """Two sessions queueing many runs each get one start in turn."""
    manager = make(max_concurrent=1)
    blocker = manager.watch(S, "c")
    a = [manager.watch(S.replace(seed=10 + i), "a") for i in range(3)]
    b = [manager.watch(S.replace(seed=20 + i), "b") for i in range(3)]
    order = started_order(manager, trainer, [blocker, *a, *b])
    assert order == [blocker, a[0], b[0], a[1], b[1], a[2], b[2]]


def test_a_lower_priority_run_waits_behind_interactive_ones(make, trainer):
    """A background run (priority 1) starts only when no interactive run is queued."""
    manager = make(max_concurrent=1)
    blocker = manager.watch(S, "a")
    background = manager.watch(S2, "sweep", priority=1)
    interactive = manager.watch(S3, "b")
    assert (interactive.queue_position(), background.queue_position()) == (1, 2)
    assert started_order(manager, trainer, [blocker, background, interactive]) == [
        blocker, interactive, background,
    ]  # fmt: skip


def test_a_run_over_the_cost_limit_is_refused_not_trained(make, trainer, store):
    """A run whose estimate exceeds the limit is finished at once as refused, with the reason."""
    costs = FixedCosts(seconds=10.0, limit=15.0)
    manager = make(costs=costs)
    refused = manager.watch(S.replace(epochs=6), "a")  # 20 s estimated
    assert refused.state == "refused" and refused.finished and refused.error == "too long: 20 s"
    assert manager.watch(S.replace(epochs=6), "a") is refused and trainer.calls == []
    ok = manager.watch(S, "a")  # 10 s
    trainer.open(S, 3)
    assert ok.wait(DEADLINE) and ok.state == "done" and costs.learned == [(S, 6.0)]


def test_a_stored_run_over_the_cost_limit_is_still_served(make, trainer, store):
    """The limit is about training: a run already in the store costs nothing and is shown."""
    store.runs[S.key()] = [record(e) for e in (1, 2, 3)]
    run = make(costs=FixedCosts(seconds=10.0, limit=1.0)).watch(S, "a")
    assert run.state == "done" and run.from_store


def test_queued_runs_know_when_they_should_start(make, trainer):
    """Places and start estimates follow the running run's estimate, then its measured epochs."""
    manager = make(max_concurrent=1, costs=FixedCosts(seconds=10.0))
    running = manager.watch(S, "a")
    second, third = manager.watch(S2, "b"), manager.watch(S3, "c")
    assert running.eta_seconds() == pytest.approx(10.0, abs=0.5)  # the estimate, before any epoch
    assert second.starts_in() == pytest.approx(10.0, abs=0.5)
    assert third.starts_in() == pytest.approx(20.0, abs=0.5)
    trainer.open(S)
    wait_records(running, 1)  # epoch 1 took 2 s on the fake's clock: 4 s to go
    assert running.eta_seconds() == pytest.approx(4.0)
    assert second.starts_in() == pytest.approx(4.0, abs=0.5)
    assert third.starts_in() == pytest.approx(14.0, abs=0.5)
    assert running.starts_in() is None and running.queue_position() is None


def test_retry_trains_a_failed_run_again(make, trainer):
    """Retry replaces a failed run (still watched) with a new training of the same settings."""
    manager, failed = failed_once(make, trainer)
    again = manager.retry(S, "a")
    assert again is not failed and manager.watch(S, "a") is again
    trainer.open(S, 3)
    assert again.wait(DEADLINE) and again.state == "done" and trainer.calls == [S, S]


# ---- background runs (prefetch) --------------------------------------------------------------------------


def test_a_prefetched_run_waits_while_a_visitors_run_trains_then_trains_and_is_stored(make, trainer, store):
    manager = make(max_concurrent=2)
    visitor = manager.watch(S, "a")
    (background,) = manager.prefetch([S2])
    assert visitor.state == "running" and background.state == "queued"  # a slot is free, but a visitor trains
    trainer.open(S, 3)
    assert visitor.wait(DEADLINE)
    wait_state(background, "running")
    trainer.open(S2, 3)
    assert background.wait(DEADLINE) and background.state == "done"
    assert [s for s, _ in store.saves] == [S, S2]
    assert manager.prefetch([S2, S]) == [background, visitor]  # known runs are not trained again


def test_a_visitors_run_pauses_a_training_prefetched_run_which_trains_again_afterwards(make, trainer, store):
    manager = make(max_concurrent=2)
    (background,) = manager.prefetch([S2])
    assert background.state == "running"  # nobody waits: it trains at once
    trainer.open(S2)
    wait_records(background, 1)
    visitor = manager.watch(S, "a")
    assert visitor.state == "running"
    trainer.open(S2)  # the paused training sees its cancel at the next epoch and stops
    wait_state(background, "queued")
    assert background.records() == [] and trainer.stopped == [S2]
    trainer.open(S, 3)
    assert visitor.wait(DEADLINE) and visitor.state == "done"
    wait_state(background, "running")  # from its first epoch again
    trainer.open(S2, 3)
    assert background.wait(DEADLINE) and background.state == "done"
    assert [r.epoch for r in background.records()] == [1, 2, 3]
    assert [s for s, _ in store.saves] == [S, S2]  # stored once, complete
    assert trainer.calls == [S2, S, S2]


def test_a_visitor_who_asks_for_a_prefetched_run_gets_it_at_interactive_priority(make, trainer):
    manager = make(max_concurrent=2)
    manager.watch(S, "a")
    (background,) = manager.prefetch([S2])
    assert background.state == "queued"
    assert manager.watch(S2, "b") is background
    assert background.state == "running"  # now a visitor waits for it: it takes the free slot
    manager.unwatch("b")  # the visitor leaves: it goes back to the background, paused for "a"'s run
    trainer.open(S2)
    wait_state(background, "queued")
    assert not background.finished


# ---- sweep cells -------------------------------------------------------------------------------------------

S4 = S.replace(seed=4)


def test_a_visitors_run_starts_before_queued_sweep_cells(make, trainer):
    """Sweep cells queue behind any visitor's run, whoever asked first; background runs wait for a sweep."""
    manager = make(max_concurrent=1)
    cells = [manager.watch(s, "a/sweep", SWEEP) for s in (S, S2)]
    (background,) = manager.prefetch([S4])
    visitor = manager.watch(S3, "b")
    assert cells[0].state == "running" and visitor.queue_position() == 1
    trainer.open(S, 3)
    wait_state(visitor, "running")
    assert cells[1].state == "queued" and background.state == "queued"
    trainer.open(S3, 3)
    wait_state(cells[1], "running")
    assert background.state == "queued"  # the sweep goes first


def test_a_visitors_run_stops_the_least_trained_sweep_cell_when_every_slot_is_a_sweeps(make, trainer, store):
    """With every slot held by sweep cells, a slider move stops one cell (queued again, stored once later)."""
    manager = make(max_concurrent=2)
    cells = [manager.watch(s, "a/sweep", SWEEP) for s in (S, S2)]
    trainer.open(S)
    wait_records(cells[0], 1)
    visitor = manager.watch(S3, "b")
    trainer.open(S2)  # the stopped cell sees its cancel at its next epoch
    wait_state(cells[1], "queued")
    wait_state(visitor, "running")
    assert cells[0].state == "running" and len(cells[0].records()) == 1  # the more trained one went on
    trainer.open(S3, 3)
    trainer.open(S, 2)
    assert visitor.wait(DEADLINE) and cells[0].wait(DEADLINE)
    wait_state(cells[1], "running")
    trainer.open(S2, 3)
    assert cells[1].wait(DEADLINE) and cells[1].state == "done"
    assert sorted(s.seed for s, _ in store.saves) == [0, 2, 3]  # each run stored once, complete


def test_a_visitor_watching_a_sweep_cell_raises_it_and_leaving_lowers_it_again(make, trainer):
    """A cell a visitor also opens is theirs to wait for (interactive); when they leave it is a cell again."""
    manager = make(max_concurrent=1)
    first, cell = (manager.watch(s, "a/sweep", SWEEP) for s in (S, S2))
    other = manager.watch(S3, "c")
    assert other.queue_position() == 1 and cell.queue_position() == 2
    assert manager.watch(S2, "b") is cell
    assert cell.queue_position() == 1  # both interactive now: the cell, asked for first, goes first
    manager.unwatch("b")
    assert cell.queue_position() == 2 and not cell.finished  # the sweep still waits for it
    manager.unwatch("a/sweep")
    assert cell.state == "cancelled" and first.finished is False  # nobody waits: cancelled; first stops
    trainer.open(S)
    wait_state(first, "cancelled")


ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (`from a import b` gives a and a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_page_servers_modules_do_not_import_the_training_package():
    """service.py, app.py and ui/*.py import nothing of regviz.training, even inside a function."""
    page = [ROOT / "regviz" / "service.py", ROOT / "app.py", *sorted((ROOT / "ui").glob("*.py"))]
    found = {
        str(path.relative_to(ROOT)): module
        for path in page
        for module in imported_modules(path)
        if module == "regviz.training" or module.startswith("regviz.training.")
    }
    assert found == {}


def test_importing_the_service_loads_neither_the_training_loop_nor_tensorflow():
    """A fresh interpreter that imports regviz.service holds no training module but the version constant
    (the store keys runs on it) and no tensorflow or keras."""
    code = (
        "import sys, regviz.service\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')"
        " or m.startswith('regviz.training')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['regviz.training', 'regviz.training.version']"


THREADS_ALONE = """
import sys, threading
from regviz.runs.seam import Job
from regviz.runs.threads import ThreadExecutor
from regviz.settings import Settings

ended = threading.Event()
executor = ThreadExecutor(lambda settings, cancel: iter(()))
executor.start(Job(Settings(), lambda record: None, lambda error: ended.set()))
assert ended.wait(60) and executor.close(60), "the thread did not serve its job and stop"
print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))
"""


def test_a_thread_executor_serving_a_trainer_of_its_own_imports_no_tensorflow():
    """Training threads serve whatever trainer they are given: with one that needs no TensorFlow, a
    fresh interpreter serves a job and stops its threads without importing it (its import held a stop)."""
    proc = subprocess.run(
        [sys.executable, "-c", THREADS_ALONE], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_a_worker_pumps_its_jobs_round_the_order_given():
    """A worker's turns go round its jobs in the order given; a job waits behind an earlier job of its
    lane (the manager's owner) and behind a more urgent one: no fairness of the worker's own."""
    from regviz.runs.worker import Worker, _Active

    worker = Worker(lambda event: None)
    given = [(1, "a", 0), (2, "b", 0), (3, "a", 0), (4, "c", 5)]  # job (and place given), lane, priority
    a1, b1, a2, c5 = (_Active(job, lane, priority, job, {}) for job, lane, priority in given)
    turns = []
    for _ in range(4):
        job = worker._next([c5, a2, b1, a1])  # the list's order is not the order given
        turns.append(job.job)
        worker._last = job.given  # what a turn records
    assert turns == [1, 2, 1, 2]
    assert worker._next([a2, c5]) is a2  # a's next run, once its first is gone; c waits while it is there
    assert worker._next([c5]) is c5


def test_a_session_holding_every_slot_yields_one_to_another_sessions_short_run(make, trainer, store):
    """Session a's 4-fold group holds all 4 slots; session b's short run starts within one epoch of the
    group (the group's least trained fold stops at its next epoch boundary and is queued again), and
    every fold still trains to the end afterwards (issue 19 §3). Epochs counted from the records."""
    from regviz.runs import group

    manager = make(max_concurrent=4)
    kfold = S.replace(validation="kfold", folds=4)
    folds = group.watch(manager, kfold, "a")
    assert [r.state for r in folds.runs] == ["running"] * 4
    short = manager.watch(S2, "b")
    assert short.state == "queued"
    for fold in kfold.fold_runs():
        trainer.open(fold)  # the group's next epoch boundary
    wait_state(short, "running")
    assert max(len(r) for r in folds.fold_records()) <= 1  # the short run started within one epoch
    assert sum(r.state == "running" for r in folds.runs) == 3  # a keeps three slots; one is b's
    trainer.open(S2, 3)
    assert short.wait(DEADLINE) and short.state == "done"
    trainer.release_all()
    assert folds.wait(DEADLINE) and folds.state == "done"
    assert all(len(r) == 3 for r in folds.fold_records())


def test_sessions_with_as_many_slots_do_not_take_them_from_each_other(make, trainer):
    """A session one slot ahead of a waiting one keeps it: no slot goes back and forth."""
    manager = make(max_concurrent=2)
    a = [manager.watch(S.replace(seed=30 + i), "a") for i in range(2)]
    b1 = manager.watch(S3, "b")
    assert b1.state == "queued"
    trainer.open(a[1].settings)  # a gives its least trained run up at its next epoch boundary
    wait_state(b1, "running")
    b2 = manager.watch(S3.replace(seed=40), "b")  # b holds 1, a holds 1: b2 waits its turn
    assert b2.state == "queued" and a[0].state == "running" and b1.state == "running"


def test_the_queue_line_counts_the_runs_a_session_trains_one_after_another(make, trainer):
    """A worker trains a session's runs one after another: a run of it that has not begun frees its slot
    after the earlier ones, not when its own estimate ran out while it waited (which said "starts in
    about 0 s"); a slot being given up frees at its run's next epoch (issue 19 §3)."""
    manager = make(max_concurrent=3, costs=FixedCosts(seconds=0.003))  # estimates long run out
    first, *waiting = [manager.watch(S.replace(seed=50 + i), "a") for i in range(3)]
    fourth = manager.watch(S.replace(seed=53), "a")
    trainer.open(first.settings)
    wait_records(first, 1)  # 2 s an epoch on the fake's clock: 4 s to go; the other two have not begun
    assert fourth.queue_position() == 1
    assert fourth.starts_in() == pytest.approx(4.0, abs=0.5)


def test_a_run_waiting_for_a_given_up_slot_starts_in_about_one_epoch(make, trainer):
    """Session b's run, given a slot session a gives up, is told it starts in about one epoch of a's run."""
    manager = make(max_concurrent=2, costs=FixedCosts(seconds=30.0))  # 10 s an epoch
    [manager.watch(S.replace(seed=60 + i), "a") for i in range(2)]
    short = manager.watch(S2, "b")
    assert short.queue_position() == 1
    assert short.starts_in() == pytest.approx(10.0, abs=0.5)
