"""The service: dataset descriptions and the store in front of training, as the CLI and the app use it."""

from __future__ import annotations

import threading
import time

import pytest

from regviz import data
from regviz.records import EpochRecord, LayerStats
from regviz.runs.inprocess import HereService as RunService
from regviz.runs.inprocess import train_here
from regviz.runs.threads import ThreadExecutor
from regviz.settings import Settings
from regviz.store import RunStore
from regviz.training import loop, warmup

SMALL = Settings(dataset="synthetic", width=4, epochs=2, l2=0.001)


@pytest.fixture
def service(temporary_store) -> RunService:
    """A service on this test's empty store, training in a thread of this process."""
    made = RunService(RunStore(temporary_store), executor=ThreadExecutor(train_here))
    yield made
    made.close(timeout=30)


def test_a_stored_run_comes_back_whole_without_training(service, monkeypatch):
    """The first stream trains and stores; the second returns identical records and never calls train."""
    first = list(service.stream(SMALL))
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained a stored run"))
    assert [r.to_dict() for r in service.stream(SMALL)] == [r.to_dict() for r in first]
    assert len(first) == SMALL.epochs


def test_a_cancelled_stream_is_not_stored(service):
    """A run cancelled after its first epoch leaves nothing in the store."""
    cancel = threading.Event()
    for _ in service.stream(SMALL.replace(epochs=5), cancel):
        cancel.set()
    assert service.lookup(SMALL.replace(epochs=5)) is None


def test_the_store_key_includes_the_data_version(service, monkeypatch):
    """Other data under the same dataset name never serves the stored curves."""
    list(service.stream(SMALL))
    real = data.load("synthetic")
    other = data.Dataset(**{**real.__dict__, "version": real.version + "-changed"})
    fresh = RunService(service.store, executor=ThreadExecutor(train_here))
    monkeypatch.setattr(data, "load", lambda name: other)
    assert fresh.lookup(SMALL) is None
    fresh.close(timeout=5)


def test_the_manager_trains_and_stores_through_the_service(service):
    """A watched run trains behind the executor and lands in the store when complete."""
    run = service.manager.watch(SMALL, "tab")
    assert run.wait(timeout=120) and run.state == "done"
    assert [r.to_dict() for r in service.lookup(SMALL)] == [r.to_dict() for r in run.records()]


def test_dataset_info_is_what_the_data_holds(service):
    """The description the page uses (rows, width, version) is read off the loaded dataset."""
    ds = data.load("synthetic")
    info = service.dataset_info("synthetic")
    assert (info.n_train, info.n_val, info.num_features) == (len(ds.y_train), len(ds.y_val), ds.num_features)
    assert info.version == ds.version and info.training_rows(0.5) == len(ds.training_rows(0.5)[1])
    assert info.nnz_per_row == pytest.approx(
        (ds.x_train.nnz + ds.x_val.nnz) / (len(ds.y_train) + len(ds.y_val))
    )


def test_dataset_info_without_waiting_asks_in_the_background(service):
    """wait=False returns None at first and the description once the executor has answered."""
    assert service.known_info("synthetic") is None
    assert service.dataset_info("synthetic", wait=False) is None
    deadline = time.monotonic() + 120
    while service.known_info("synthetic") is None and time.monotonic() < deadline:
        time.sleep(0.05)  # poll interval, bounded by the deadline
    assert service.dataset_info("synthetic", wait=False).name == "synthetic"


def test_an_unavailable_dataset_is_remembered_and_raised(service, monkeypatch):
    """A dataset that cannot be loaded raises DatasetUnavailable, the same line every time."""

    def unavailable(name):
        raise data.DatasetUnavailable("IMDB could not be downloaded (no network)")

    monkeypatch.setattr(data, "load", unavailable)
    for _ in range(2):
        with pytest.raises(data.DatasetUnavailable, match="no network"):
            service.dataset_info("imdb")


def test_warm_up_finishes_and_survives_a_missing_dataset(monkeypatch):
    """Warm-up trains a tiny model once; an unloadable dataset just returns False."""
    assert warmup.warm("synthetic") is True

    def unavailable(name):
        raise data.DatasetUnavailable("no network")

    monkeypatch.setattr(data, "load", unavailable)
    assert warmup.warm("imdb") is False


def test_a_stored_book_run_is_found_before_any_worker_describes_the_data(temporary_store, monkeypatch):
    """A fresh server finds a run stored under a book file's version without asking its workers: the
    version is the file's digest, the same the loaded dataset carries."""
    imdb = data.load("imdb")  # REGVIZ_IMDB_PATH: the file the workers would load
    settings = Settings(width=4, epochs=1)
    record = EpochRecord(epoch=1, data_loss=0.5, val_data_loss=0.6, penalty=0.0, loss=0.5, val_loss=0.6,
                         accuracy=0.8, val_accuracy=0.7, val_auc=0.75, seconds=0.1,
                         layers=(LayerStats(1.0, 0.1),), hist=(1, 2, 3))  # fmt: skip
    RunStore(temporary_store).put(settings, imdb.version, [record])

    class NoWorkers(ThreadExecutor):
        def describe(self, dataset, timeout=None):
            pytest.fail("asked a worker to describe the data")

    fresh = RunService(RunStore(temporary_store), executor=NoWorkers(train_here))
    assert data.version_of("imdb") == imdb.version
    assert [r.to_dict() for r in fresh.lookup(settings)] == [record.to_dict()]
    fresh.close(timeout=5)
