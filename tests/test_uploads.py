"""An uploaded file across the process boundary and in the service: it trains in a worker process (and
on a Ray actor, in test_ray_cluster.py) exactly as here, a worker started after a crash is sent it
again, a forgotten file is unavailable everywhere, its runs are stored only when kept, and a session
that ends forgets the files only it held."""

from __future__ import annotations

import functools
import logging
import os
import signal
import time

import numpy as np
import pytest
from conftest import Collected as _Collected

from regviz import data
from regviz.data import csvfile
from regviz.runs.local import LocalWorkers
from regviz.runs.threads import ThreadExecutor
from regviz.service import RunService, train_here
from regviz.settings import Settings
from regviz.store import RunStore

DEADLINE = 180.0
Collected = functools.partial(_Collected, deadline=DEADLINE)


def flats_csv(rows: int = 90, seed: int = 5) -> bytes:
    """A small regression file made here: prices from an area, a room count and a town (some missing)."""
    rng = np.random.default_rng(seed)
    lines = ["area,rooms,town,price"]
    for _ in range(rows):
        area, rooms = rng.uniform(40, 200), rng.integers(1, 6)
        town = rng.choice(["north", "south", ""])
        lines.append(f"{area:.1f},{rooms},{town},{2500 * area + 8000 * rooms + rng.normal(0, 2e4):.0f}")
    return "\n".join(lines).encode()


@pytest.fixture
def flats():
    """The file prepared, held for session "s", forgotten after the test."""
    prepared = csvfile.prepare(csvfile.read_table(flats_csv(), "flats.csv"), "price")
    data.add_upload(prepared, holder="s")
    yield prepared
    data.forget_upload(prepared.name)


@pytest.fixture
def workers():
    """One worker process, warming up on the offline dataset; stopped after the test."""
    made = LocalWorkers(workers=1, per_worker=2, warm_dataset="synthetic")
    yield made
    assert made.close(timeout=30)


def same(got, settings) -> None:
    """Records equal to the settings trained in this process, to 1e-6."""
    here = list(train_here(settings))
    assert [r.epoch for r in got] == [r.epoch for r in here]
    for ours, theirs in zip(got, here, strict=True):
        assert ours.val_data_loss == pytest.approx(theirs.val_data_loss, abs=1e-6)
        assert ours.val_mae == pytest.approx(theirs.val_mae, rel=1e-6)


def trained(workers, settings: Settings):
    """The job of these settings, started on the workers and ended."""
    got = Collected(settings)
    workers.start(got.job)
    got.wait_end()
    return got


def test_an_uploaded_file_trains_in_a_worker_process_as_here(workers, flats):
    """The worker, which has never seen the file, is sent it with the run and trains the same records."""
    settings = Settings.for_dataset(flats.name, epochs=3)
    got = trained(workers, settings)
    assert got.error is None
    same(got.records, settings)


def test_a_worker_started_after_a_crash_is_sent_the_file_again(workers, flats):
    """SIGKILL the worker that holds the file: its successor gets the file with the next run."""
    trained(workers, Settings.for_dataset(flats.name, epochs=2))
    (pid,) = workers.pids()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + DEADLINE
    while workers.pids() in ([], [pid]):
        assert time.monotonic() < deadline, "no new worker"
        time.sleep(0.05)
    settings = Settings.for_dataset(flats.name, epochs=2, l2=0.001)
    again = trained(workers, settings)
    assert again.error is None
    same(again.records, settings)


def test_a_forgotten_file_is_unavailable_in_the_worker_and_here(workers, flats):
    """After forget (its session ended), a run on the file ends with one line that says where the data
    went, in the worker as here."""
    trained(workers, Settings.for_dataset(flats.name, epochs=1))
    workers.forget(flats.name)
    data.forget_upload(flats.name)
    late = trained(workers, Settings.for_dataset(flats.name, epochs=1))
    assert late.records == [] and "uploaded in another session" in late.error and "\n" not in late.error
    with pytest.raises(data.UploadMissing):
        data.load(flats.name)


def test_runs_on_an_uploaded_file_are_stored_only_when_kept(tmp_path, flats):
    """Without "keep results" a finished run on the file is not stored; with it, it is, and its row
    holds the curves under the file's hash, not the file's rows or column names."""
    service = RunService(store=RunStore(tmp_path / "runs.sqlite"), executor=ThreadExecutor(train_here))
    try:
        settings = Settings.for_dataset(flats.name, epochs=2)
        records = list(train_here(settings))
        service.save(settings, records)
        assert service.lookup(settings) is None
        service.keep_results(flats.name, "s", True)
        service.save(settings, records)
        assert [r.epoch for r in service.lookup(settings)] == [1, 2]
        raw = (tmp_path / "runs.sqlite").read_bytes()
        assert b"north" not in raw and b"rooms" not in raw and flats.name.encode() in raw
    finally:
        service.close(timeout=10)


def test_a_session_that_ends_forgets_the_files_only_it_held(tmp_path, flats):
    """Two sessions hold the same file: the first one's end keeps it; the second's forgets it here and
    tells the executor to forget it too."""
    forgotten = []
    executor = ThreadExecutor(train_here)
    executor.forget = forgotten.append
    service = RunService(store=RunStore(tmp_path / "runs.sqlite"), executor=executor)
    try:
        service.add_upload(flats, "a")
        service.add_upload(flats, "b")
        data.release_uploads("s")  # the fixture's own hold
        assert service.drop_uploads("a") == [] and data.uploaded(flats.name) is not None
        assert service.drop_uploads("b") == [flats.name] and forgotten == [flats.name]
        assert data.uploaded(flats.name) is None
        with pytest.raises(data.UploadMissing):
            service.dataset_info(flats.name)
    finally:
        service.close(timeout=10)


def test_a_background_run_on_a_forgotten_file_is_one_log_line_not_a_traceback(tmp_path, flats, caplog):
    """A run that wanted the file after its session ended (a prefetched one, training in this process)
    fails with the one line the page shows, and the log has one line for it, without a traceback."""
    service = RunService(store=RunStore(tmp_path / "runs.sqlite"), executor=ThreadExecutor(train_here))
    try:
        data.release_uploads("s")
        service.add_upload(flats, "gone")
        service.drop_uploads("gone")
        with caplog.at_level(logging.INFO, logger="regviz"):
            (run,) = service.manager.prefetch([Settings.for_dataset(flats.name, epochs=1)])
            assert run.wait(DEADLINE)
        assert run.state == "failed" and "uploaded in another session" in run.error
        assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
        lines = [r.getMessage() for r in caplog.records if "uploaded in another session" in r.getMessage()]
        assert len(lines) == 1 and "\n" not in lines[0]
    finally:
        service.close(timeout=10)


def test_a_worker_told_to_train_a_forgotten_file_logs_one_line(workers, flats, capsys):
    """The worker process, asked to train a file nobody holds any more, ends the run with the page's line
    and writes one line to the server's log (its stderr), not a traceback."""
    data.forget_upload(flats.name)
    late = trained(workers, Settings.for_dataset(flats.name, epochs=1))
    assert "uploaded in another session" in late.error
    err, deadline = "", time.monotonic() + DEADLINE
    while "uploaded in another session" not in err:  # the worker's stderr arrives on its own pipe
        assert time.monotonic() < deadline, err
        time.sleep(0.05)
        err += capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "uploaded in another session" in line]) == 1
