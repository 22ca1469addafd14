"""The app's background prefetch (issue 22 §3): once a visitor's run is done, the runs one slider stop away
train at background priority, from one thread, bounded, newest neighbourhood first; they yield to a
visitor's run within one epoch. Fake gated work for the bounds, worker processes for the yield, AppTest
for the page."""

from __future__ import annotations

import threading
import time

import pytest
import streamlit as st
from test_app import SMALL, SMALL_LINK, Recorder, _recording_backend, finish, open_app
from test_runs import DEADLINE, FakeStore, FakeTrainer

import regviz.service
from regviz import prefetch
from regviz.prefetch import WATCHER, Around, around
from regviz.runs.manager import BACKGROUND, RunManager
from regviz.runs.threads import ThreadExecutor
from regviz.settings import Settings

S = Settings(dataset="synthetic", epochs=3)
CHEAP = staticmethod(lambda settings: 0.01 * settings.epochs)  # estimated seconds: 0.01 per epoch


def until(check, what: str, deadline: float = DEADLINE) -> None:
    """Poll check() until it holds; fail the test at the deadline."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)  # poll interval, bounded by the deadline


# ---- around(): the neighbourhood of one setting ---------------------------------------------------------


def test_around_is_every_one_stop_neighbour_then_its_baseline_without_the_settings_own():
    """L2 0.001 on IMDB, worked by hand: 9 one-stop neighbours and the 5 baselines that differ from its
    own; each baseline right after its neighbour; neither the settings nor their baseline."""
    base = Settings()
    here = base.replace(l2=0.001)
    near = [
        here.replace(l2=3e-4), here.replace(l2=3e-3), here.replace(l1=1e-5), here.replace(dropout=0.05),
        *(here.replace(width=w) for w in (8, 32)), *(here.replace(depth=d) for d in (1, 3)),
        here.replace(train_fraction=0.9),
    ]  # fmt: skip
    baselines = [n.baseline() for n in near if n.baseline() != base]
    got = around(here)
    assert len(got) == len(set(got)) == 14
    assert set(got) == set(near) | set(baselines)
    assert here not in got and base not in got
    for n in near:
        if n.baseline() != base:
            assert got.index(n.baseline()) == got.index(n) + 1


def test_around_a_kfold_run_is_asked_as_its_fold_runs():
    """A K-fold experiment's neighbours go to the manager one fold run each, as the store keeps them."""
    boston = Settings.for_dataset("boston")
    asked = []
    spy = Around(_Recording(asked), CHEAP, lambda s: True)  # all stored: nothing is watched
    assert spy.ask(boston) == len(prefetch.runs_of(around(boston))) == boston.folds * len(around(boston))


class _Recording:
    """A manager that records nothing but what it is asked to watch (for tests that train nothing)."""

    def __init__(self, asked: list):
        self.asked = asked

    def watch(self, settings, watcher, priority):
        self.asked.append(settings)
        raise AssertionError("nothing should be watched")


# ---- the bounds, on a manager with fake gated work --------------------------------------------------------


@pytest.fixture
def trainer():
    return FakeTrainer()


@pytest.fixture
def manager(trainer):
    made = RunManager(ThreadExecutor(trainer, 1), FakeStore().lookup, lambda settings, records: None)
    made.watched = []  # (settings, priority, unfinished background runs at the time of asking)
    watch = made.watch

    def recording(settings, watcher, priority=0):
        with made._lock:
            unfinished = sum(1 for s, _, _, run in made.watched if run is not None and not run.finished)
            run = watch(settings, watcher, priority)
            made.watched.append((settings, priority, unfinished, run if watcher == WATCHER else None))
        return run

    made.watch = recording
    yield made
    made.shutdown(timeout=0)
    trainer.release_all()
    assert made.shutdown(timeout=DEADLINE), "a worker did not stop"


def background(manager) -> list[Settings]:
    """The settings the background prefetch asked the manager for, in order."""
    return [s for s, priority, _, _ in manager.watched if priority == BACKGROUND]


@pytest.fixture
def make(manager):
    made = []

    def make(**kwargs) -> Around:
        kwargs = {"estimate": CHEAP, "stored": lambda s: False, "check_s": 0.02, **kwargs}
        made.append(Around(manager, **kwargs))
        return made[-1]

    yield make
    for spare in made:
        assert spare.close(DEADLINE), "the prefetch thread did not end"


def test_at_most_limit_background_runs_are_unfinished_and_a_finished_one_makes_room(manager, trainer, make):
    """With a limit of 3: three runs of the neighbourhood are asked for (one trains, two wait); when one
    finishes, the next is asked for; never more than three unfinished at once."""
    prefetcher = make(limit=3)
    wanted = around(S)
    assert prefetcher.ask(S) == len(wanted) > 4
    until(lambda: len(background(manager)) == 3, "three background runs")
    assert background(manager) == wanted[:3]
    first = manager.watch(wanted[0], "peek")  # the same shared run (a visitor looking at it)
    manager.unwatch("peek")
    trainer.open(wanted[0], S.epochs)
    assert first.wait(DEADLINE) and first.state == "done"
    until(lambda: len(background(manager)) == 4, "a fourth once the first finished")
    assert background(manager) == wanted[:4]
    assert max(u for s, p, u, _ in manager.watched if p == BACKGROUND) <= 2  # before each: at most 2 others


def test_the_newest_neighbourhood_goes_first_and_older_waiting_runs_step_back(manager, make):
    """Asking for S2's neighbourhood while S1's runs wait takes S1's waiting runs out of the queue
    (cancelled, nothing trained) and asks for S2's first; S1's come back after."""
    s1, s2 = S, S.replace(seed=9)
    prefetcher = make(limit=3)
    prefetcher.ask(s1)
    until(lambda: len(background(manager)) == 3, "three runs of the first neighbourhood")
    waiting = [run for _, _, _, run in manager.watched[1:3]]
    assert [r.state for r in waiting] == ["queued", "queued"]
    prefetcher.ask(s2)
    until(lambda: len(background(manager)) == 5, "two runs of the newest neighbourhood")
    assert [r.state for r in waiting] == ["cancelled", "cancelled"]
    assert background(manager)[3:] == around(s2)[:2]
    pending = prefetcher.pending()
    assert pending[: len(around(s2)) - 2] == around(s2)[2:]
    assert around(s1)[1:3] == [s for s in pending if s in around(s1)][-2:]  # stepped back, at the end


def test_stored_costly_and_already_asked_runs_are_not_submitted(manager, make):
    """A stored run, one estimated over 0.5 s an epoch and one of unknown cost are skipped; asking again
    for the same settings asks for nothing new."""
    costly = {S.replace(width=8)}
    stored = {S.replace(depth=3)}
    unknown = {S.replace(depth=1)}

    def estimate(settings):
        if settings in unknown:
            return None
        return (prefetch.MAX_EPOCH_SECONDS + 0.1 if settings in costly else 0.01) * settings.epochs

    prefetcher = make(estimate=estimate, stored=stored.__contains__, limit=100)
    expected = [s for s in around(S) if s not in costly | stored | unknown]
    assert len(expected) == len(around(S)) - 3
    prefetcher.ask(S)
    until(lambda: len(background(manager)) == len(expected), "every cheap unstored neighbour")
    assert background(manager) == expected
    assert prefetcher.ask(S) == 0


def test_what_is_remembered_and_waiting_is_bounded(manager, make):
    """With room for 4: at most 4 runs wait, the newest; a run forgotten is asked for again."""
    prefetcher = make(limit=0, remember=4)  # a limit of 0: nothing is submitted, everything waits
    prefetcher.ask(S)
    assert prefetcher.pending() == around(S)[:4]
    other = S.replace(seed=5)
    prefetcher.ask(other)
    assert prefetcher.pending() == around(other)[:4]
    assert prefetcher.ask(other) == len(around(other)) - 4  # the 4 waiting are remembered, no more
    assert prefetcher.ask(S) == len(around(S))  # forgotten: asked again
    assert background(manager) == []


# ---- the yield, in the app's worker processes: counted in epochs ------------------------------------------


def test_the_background_prefetch_yields_to_a_visitors_run_within_one_epoch():
    """A neighbour trains in the background in the one slot of a worker process; a visitor's run is asked
    for: at most one more background epoch (the one under way) arrives before the visitor's first, and
    the visitor's run completes. Records are counted as they arrive, in order; no clock. (The manager
    alone, with fake work: test_runs.py's test_a_visitors_run_pauses_a_training_prefetched_run_...)"""
    from regviz.runs.local import LocalWorkers

    workers = LocalWorkers(workers=1, per_worker=1, warm_dataset="synthetic")
    manager = RunManager(workers, lambda settings: None, lambda settings, records: None)
    events: list[str] = []  # the key of each record as it reaches the manager, in order
    changed = threading.Condition()
    start = workers.start

    def logged(job):
        passed, key = job.on_record, job.settings.key()

        def on_record(record):
            with changed:
                events.append(key)
                changed.notify_all()
            passed(record)

        job.on_record = on_record
        start(job)

    workers.start = logged
    long = Settings(dataset="synthetic", width=256, depth=2, epochs=60)  # tens of seconds: ends by a yield
    prefetcher = Around(manager, CHEAP, lambda s: False, limit=1, check_s=0.05)
    try:
        prefetcher.ask(long)
        with changed:
            assert changed.wait_for(lambda: events, 180.0), "the background run never trained an epoch"
        neighbour = events[0]
        with manager._lock, changed:  # no record is counted on the wrong side of the ask
            asked = len(events)
            visitor = manager.watch(Settings(dataset="synthetic", width=4, epochs=3, seed=11), "b")
        assert visitor.wait(180.0) and visitor.state == "done", visitor
        first = events.index(visitor.key)
        assert events[asked:first].count(neighbour) <= 1, events[asked:first]
        assert neighbour == around(long)[0].key()
    finally:
        prefetcher.close(DEADLINE)
        assert manager.shutdown(timeout=60)


# ---- the page: asks for the neighbourhood once its run is done, only with REGVIZ_PREFETCH on ---------------


@pytest.fixture(params=["1", "0"], ids=["prefetch-on", "prefetch-off"])
def app(request, temporary_store, monkeypatch):
    """The app with a recording backend (test_app.py's) and REGVIZ_PREFETCH on or off."""
    monkeypatch.delenv("REGVIZ_MAX_TRAININGS", raising=False)
    monkeypatch.setenv("REGVIZ_PREFETCH", request.param)
    recorder = Recorder()
    recorder.prefetch = request.param == "1"
    monkeypatch.setattr(regviz.service, "RunService", _recording_backend(recorder))
    st.cache_resource.clear()
    yield recorder
    st.cache_resource.clear()
    for backend in recorder.backends:
        backend.manager.shutdown(timeout=0)
    recorder.open()
    for backend in recorder.backends:
        assert backend.manager.shutdown(timeout=DEADLINE), "a trainer did not stop"


def test_the_explore_page_prefetches_the_neighbourhood_after_its_run_only_when_on(app):
    """After SMALL and its baseline are done, the page has the runs one stop from SMALL asked for at
    background priority (with REGVIZ_PREFETCH=1); with REGVIZ_PREFETCH=0, none; never before they are
    done."""
    at = open_app(SMALL_LINK)
    assert BACKGROUND not in app.priorities  # the run is still held at the gate
    finish(at, app)
    at.run()
    assert not at.exception
    if not app.prefetch:
        assert "around" not in at.session_state and BACKGROUND not in app.priorities
        return
    assert at.session_state["around"] == SMALL
    wanted = around(SMALL)
    asked = lambda: [r.settings for r, p in zip(app.watched, app.priorities, strict=True) if p == BACKGROUND]  # noqa: E731
    until(lambda: set(asked()) == set(wanted), "the neighbourhood asked for")
    assert asked() == wanted  # in order, each once
