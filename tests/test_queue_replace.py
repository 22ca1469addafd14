"""A visitor who moves again before their queued run started replaces it: the stale run never trains
(issue 22 §4). Driven by gated fake work in threads, as the explore page drives the manager: unwatch
everything but the new request, then watch it."""

from __future__ import annotations

import pytest
from test_runs import DEADLINE, FakeStore, FakeTrainer

from regviz.runs import group
from regviz.runs.manager import RunManager
from regviz.runs.threads import ThreadExecutor
from regviz.settings import Settings

BUSY = Settings(dataset="synthetic", epochs=2, seed=1)  # another session's run, holding the one slot
A = BUSY.replace(seed=2, l2=0.001)  # the visitor's first move: queued behind BUSY
B = A.replace(l2=0.01)  # the visitor's next move, before A started


@pytest.fixture
def trainer():
    return FakeTrainer()


@pytest.fixture
def manager(trainer):
    store = FakeStore()
    made = RunManager(ThreadExecutor(trainer, 1), store.lookup, store.save)
    yield made
    made.shutdown(timeout=0)  # cancel first, so released trainings stop instead of finishing
    trainer.release_all()
    assert made.shutdown(timeout=DEADLINE), "a worker did not stop"


def move(manager: RunManager, settings: Settings, session: str):
    """What the explore page does on a slider move: drop what it no longer shows, then watch the new run."""
    manager.unwatch(session, keep=group.kept([settings]))
    return group.watch(manager, settings, session)


def test_a_queued_run_replaced_by_its_visitors_next_move_never_trains(manager, trainer):
    """A is queued behind another session's run; the visitor moves to B: A is cancelled at once, never
    reaches a worker, and B trains in the slot BUSY frees."""
    busy = manager.watch(BUSY, "other")
    first = move(manager, A, "visitor")
    assert busy.state == "running" and first.state == "queued" and first.queue_position() == 1
    second = move(manager, B, "visitor")
    assert first.state == "cancelled" and second.queue_position() == 1  # no stale run waits ahead of B
    trainer.open(BUSY, BUSY.epochs)
    assert busy.wait(DEADLINE) and busy.state == "done"
    trainer.open(B, B.epochs)
    assert second.wait(DEADLINE) and second.state == "done"
    assert trainer.calls == [BUSY, B]  # A never reached a worker


def test_a_queued_run_another_visitor_also_waits_for_stays_queued(manager, trainer):
    """Replacing drops only this visitor's interest: a run another visitor shares still trains for them."""
    manager.watch(BUSY, "other")
    shared = move(manager, A, "visitor")
    assert manager.watch(A, "friend") is shared
    move(manager, B, "visitor")
    assert shared.state == "queued"
    for settings in (BUSY, A, B):  # whichever of A and B goes first, both may finish
        trainer.open(settings, settings.epochs)
    assert shared.wait(DEADLINE) and shared.state == "done"
    assert A in trainer.calls
