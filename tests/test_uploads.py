"""An uploaded file across the process boundary and in the service: it trains in a worker process (and
on a Ray actor, in test_ray_cluster.py) exactly as here, a worker started after a crash is sent it
again, a forgotten file is unavailable everywhere, its runs are stored only when kept, and a session
that ends forgets the files only it held."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Collected as _Collected

from regviz import data
from regviz.data import csvfile, uploads
from regviz.runs.inprocess import train_here
from regviz.runs.local import LocalWorkers
from regviz.runs.threads import ThreadExecutor
from regviz.service import RunService
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


# ---- memory: what the server holds per upload, and after its session ends ---------------------------

MEMORY_SCRIPT = r"""
import json, os, sys, tempfile
import numpy as np

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

def csv_file(seed, rows):
    # 12 numeric columns, two categorical ones and a price: about 1 MB per 10,000 rows
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 12)).round(5)
    towns, kinds = rng.choice(["north", "south", "east", "west"], rows), rng.choice(["a", "b", "c"], rows)
    price = rng.integers(1000, 9000, rows)
    body = "\n".join(",".join(map(str, x[i])) + f",{towns[i]},{kinds[i]},{price[i]}" for i in range(rows))
    return (",".join([f"f{i}" for i in range(12)] + ["town", "kind", "price"]) + "\n" + body).encode()

from regviz import data
from regviz.data import csvfile, uploads
from regviz.runs.threads import ThreadExecutor
from regviz.runs.inprocess import train_here
from regviz.service import RunService
from regviz.store import RunStore

def upload(service, session, content, name):
    # what the page does: read and hold the table, prepare, then train on it (the service holds it)
    table = csvfile.read_table(content, name)
    data.hold_reading(session, name, table, int(table.frame.memory_usage(deep=True).sum()))
    prepared = csvfile.prepare(table, "price")
    del table
    data.drop_reading(session)
    service.add_upload(prepared, session)
    data.upload_payload(prepared.name)  # sent to a worker
    return prepared

rows, sessions = int(sys.argv[1]), int(sys.argv[2])
files = [csv_file(seed, rows) for seed in range(sessions)]
store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite"))
service = RunService(store=store, executor=ThreadExecutor(train_here))
upload(service, "warm-up", csv_file(99, 2000), "warm.csv")  # pandas, pyarrow, scikit-learn loaded
service.drop_uploads("warm-up")
base = rss_mb()
held = []
for i, content in enumerate(files):
    prepared = upload(service, f"s{i}", content, f"f{i}.csv")
    del prepared
    held.append(rss_mb() - base)
accounted = data.held_bytes() / 2**20
for i in range(sessions):
    service.drop_uploads(f"s{i}")
print(json.dumps({"file_mb": [len(c) / 2**20 for c in files], "held_mb": held, "accounted_mb": accounted,
                  "released_mb": rss_mb() - base, "left": data.held_bytes()}))
"""


def test_an_upload_costs_the_server_about_its_size_and_is_given_back_when_its_session_ends(tmp_path):
    """Three sessions upload a 19 MB file each, through the calls the server makes (the page's read and
    held table, prepare, the service holding it, its payload made for a worker), in a process of their
    own that reads its VmRSS in /proc/self/status: each held file costs under twice its size (it cost
    7.6 times), and once the sessions end their memory is back to under a third of that."""
    script = tmp_path / "uploads_memory.py"
    script.write_text(MEMORY_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, str(script), "175000", "3"], capture_output=True, text=True, env=env, timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    print("upload memory (MB):", got)  # the figures for the report: pytest -s shows them
    file_mb, held = got["file_mb"][0], got["held_mb"]
    assert 18 < file_mb < 20
    assert held[-1] / 3 < 2 * file_mb, held
    assert got["accounted_mb"] < held[-1]  # the cap counts the matrices, which are held
    assert got["left"] == 0 and got["released_mb"] < held[-1] / 3, got


def test_uploads_over_the_cap_are_refused_in_one_line_until_a_session_ends(flats, monkeypatch):
    """REGVIZ_MAX_UPLOAD_MB caps what every session's files hold together (previewed tables and files in
    use, counted from their arrays): one over it is refused in one line naming the setting and holds
    nothing; a worker holds what it is sent; a session's end makes room again."""
    data.release_uploads("s")
    table = csvfile.read_table(flats_csv(rows=400, seed=8), "big.csv")
    other = csvfile.prepare(table, "price")
    size = other.x.nbytes + other.y.nbytes
    assert data.held_bytes() == 0
    small = flats.x.nbytes + flats.y.nbytes
    monkeypatch.setenv(data.MAX_UPLOAD_MB_ENV, str((size + small / 2) / 2**20))  # one file, not both
    data.add_upload(flats, holder="a")
    assert data.held_bytes() == small
    with pytest.raises(data.UploadRefused) as refused:
        data.hold_reading("b", "file 1", table, size)
    message = str(refused.value)
    assert "REGVIZ_MAX_UPLOAD_MB" in message and "\n" not in message and data.reading("b", "file 1") is None
    with pytest.raises(data.UploadRefused):
        data.add_upload(other, holder="b")
    assert data.uploaded(other.name) is None
    data.add_upload(other.to_payload())  # a worker: sent by a server that held it
    data.forget_upload(other.name)
    assert data.release_uploads("a") == [flats.name] and data.held_bytes() == 0
    data.hold_reading("b", "file 1", table, size)
    assert data.reading("b", "file 1") is table and data.reading("b", "file 2") is None
    data.release_uploads("b")
    assert data.reading("b", "file 1") is None and data.held_bytes() == 0


@pytest.mark.parametrize(("raw", "mb"), [(None, 200), ("50", 50), ("0.5", 0.5), ("-1", 200), ("lots", 200)])
def test_the_upload_cap_comes_from_its_setting_or_defaults_to_200_mb(raw, mb):
    """REGVIZ_MAX_UPLOAD_MB in megabytes; unset, not a number or not positive: 200 MB."""
    environ = {} if raw is None else {data.MAX_UPLOAD_MB_ENV: raw}
    assert uploads.max_upload_bytes(environ) == int(mb * 2**20)
