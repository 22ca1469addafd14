"""The backend: the store in front of training, as the command line and the app use it."""

from __future__ import annotations

import threading

import pytest

from regviz import data
from regviz.service import RunService
from regviz.settings import Settings
from regviz.store import RunStore
from regviz.training import loop

SMALL = Settings(dataset="synthetic", width=4, epochs=2, l2=0.001)


@pytest.fixture
def backend(temporary_store) -> RunService:
    """A backend on this test's empty store."""
    service = RunService(RunStore(temporary_store), max_concurrent=1)
    yield service
    service.manager.shutdown(timeout=30)


def test_a_stored_run_comes_back_whole_without_training(backend, monkeypatch):
    """The first stream trains and stores; the second returns identical records and never calls train."""
    first = list(backend.stream(SMALL))
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained a stored run"))
    assert [r.to_dict() for r in backend.stream(SMALL)] == [r.to_dict() for r in first]
    assert len(first) == SMALL.epochs


def test_a_cancelled_stream_is_not_stored(backend):
    """A run cancelled after its first epoch leaves nothing in the store."""
    cancel = threading.Event()
    for _ in backend.stream(SMALL.replace(epochs=5), cancel):
        cancel.set()
    assert backend.lookup(SMALL.replace(epochs=5)) is None


def test_the_store_key_includes_the_data_version(backend, monkeypatch):
    """Other data under the same dataset name never serves the stored curves."""
    list(backend.stream(SMALL))
    real = data.load("synthetic")
    other = data.Dataset(**{**real.__dict__, "version": real.version + "-changed"})
    monkeypatch.setattr(data, "load", lambda name: other)
    assert backend.lookup(SMALL) is None


def test_the_manager_trains_and_stores_through_the_backend(backend):
    """A watched run trains in the manager's worker and lands in the store when complete."""
    run = backend.manager.watch(SMALL, "tab")
    assert run.wait(timeout=120) and run.state == "done"
    assert [r.to_dict() for r in backend.lookup(SMALL)] == [r.to_dict() for r in run.records()]


def test_warm_up_finishes_and_survives_a_missing_dataset(backend, monkeypatch):
    """Warm-up runs TensorFlow's set-up in the background; an unloadable dataset just ends it quietly."""
    thread = backend.warm_up(SMALL)
    thread.join(timeout=120)
    assert not thread.is_alive()

    def unavailable(name):
        raise data.DatasetUnavailable("no network")

    monkeypatch.setattr(data, "load", unavailable)
    thread = backend.warm_up(Settings())
    thread.join(timeout=30)
    assert not thread.is_alive()
