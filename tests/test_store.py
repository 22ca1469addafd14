"""Tests for regviz.store: the SQLite store of finished runs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import warnings
from datetime import datetime
from pathlib import Path

import pytest
from conftest import TESTS, subprocess_env

import regviz.training.version
from regviz.records import HIST_EDGES, EpochRecord, LayerStats
from regviz.settings import Settings
from regviz.store import APPLICATION_ID, SCHEMA_VERSION, RunStore, StoreError, default_path, run_key

DATA = "imdb-v1"
ASIDE = re.compile(r"\.corrupt-\d{8}T\d{6}Z(-\d+)?$")  # a moved-aside database, not its -wal or -shm


def record(epoch: int, shift: float = 0.0) -> EpochRecord:
    """A complete, made-up record whose values differ by epoch and by shift."""
    hist = [0] * (len(HIST_EDGES) - 1)
    hist[epoch % len(hist)] = 100 + epoch
    return EpochRecord(
        epoch=epoch,
        data_loss=0.7 / epoch + shift,
        val_data_loss=0.6 + 0.01 * epoch + shift,
        penalty=1e-3 * epoch,
        loss=0.7 / epoch + 1e-3 * epoch + shift,
        val_loss=0.6 + 0.011 * epoch + shift,
        accuracy=1 - 0.3 / epoch,
        val_accuracy=0.85 - 0.001 * epoch,
        val_auc=0.9 if epoch % 2 else None,
        seconds=1.25 * epoch,
        layers=(LayerStats(l2_norm=3.0 + epoch, small_fraction=0.01 * epoch), LayerStats(2.5, 0.0)),
        hist=tuple(hist),
    )


def run(epochs: int = 5, shift: float = 0.0) -> list[EpochRecord]:
    """A run's records, epochs 1..epochs."""
    return [record(e, shift) for e in range(1, epochs + 1)]


def dicts(records: list[EpochRecord] | None) -> list[dict] | None:
    """Records as plain dicts, for equality checks."""
    return None if records is None else [r.to_dict() for r in records]


def sql(path: Path, statement: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on the file directly, behind the store's back, and commit."""
    db = sqlite3.connect(path)
    try:
        with db:
            return db.execute(statement, params).fetchall()
    finally:
        db.close()


def aside_files(directory: Path) -> list[Path]:
    """Databases moved aside in directory."""
    return sorted(p for p in directory.iterdir() if ASIDE.search(p.name))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where a test's store lives."""
    return tmp_path / "runs.sqlite"


@pytest.fixture
def store(path: Path) -> RunStore:
    """A fresh store."""
    return RunStore(path)


def test_round_trip_returns_identical_records(store):
    """What put stores, get returns field for field."""
    records = run(20)
    store.put(Settings(), DATA, records)
    assert dicts(store.get(Settings(), DATA)) == dicts(records)


def test_label_noise_is_its_own_run_and_zero_is_todays(store):
    """A run with label noise is stored apart from the clean one; label_noise=0 finds the clean run, under
    the run key it had before the setting existed."""
    store.put(Settings(), DATA, run(3))
    store.put(Settings(label_noise=0.3), DATA, run(3, shift=1.0))
    assert dicts(store.get(Settings(label_noise=0.0), DATA)) == dicts(run(3))
    assert dicts(store.get(Settings(label_noise=0.3), DATA)) == dicts(run(3, shift=1.0))
    assert run_key(Settings(label_noise=0.0), DATA) == run_key(Settings(), DATA)
    assert run_key(Settings(label_noise=0.05), DATA) != run_key(Settings(), DATA)


def test_get_returns_epoch_order(store):
    """Records come back sorted by epoch whatever order they were put in."""
    records = run(8)
    store.put(Settings(), DATA, random.Random(0).sample(records, len(records)))
    assert [r.epoch for r in store.get(Settings(), DATA)] == list(range(1, 9))


def test_diverged_values_survive(store):
    """NaN and infinite losses of a diverged run are stored and read back as such."""
    records = [dataclasses.replace(record(1), loss=math.nan, val_loss=math.inf)]
    store.put(Settings(), DATA, records)
    (back,) = store.get(Settings(), DATA)
    assert math.isnan(back.loss) and back.val_loss == math.inf


def test_unknown_run_is_a_miss(store):
    """A run never put gives None, has() is False and the store is empty."""
    assert store.get(Settings(), DATA) is None
    assert not store.has(Settings(), DATA)
    assert store.count() == 0


def test_other_settings_miss(store):
    """A run with one setting changed is a different run."""
    store.put(Settings(), DATA, run())
    assert store.get(Settings().replace(l2=1e-4), DATA) is None
    assert store.has(Settings(), DATA)


def test_other_data_version_misses(store):
    """Curves stored for one version of the data are not served for another."""
    store.put(Settings(), DATA, run())
    assert store.get(Settings(), "imdb-v2") is None


def test_training_version_bump_misses(store, monkeypatch):
    """After TRAINING_VERSION changes, runs of the old training code are not served."""
    store.put(Settings(), DATA, run())
    old_key = run_key(Settings(), DATA)
    monkeypatch.setattr(
        regviz.training.version, "TRAINING_VERSION", regviz.training.version.TRAINING_VERSION + "-next"
    )
    assert run_key(Settings(), DATA) != old_key
    assert store.get(Settings(), DATA) is None


def test_run_key_is_short_hex_and_deterministic():
    """run_key is 32 hex characters, equal for equal inputs, different when any input differs."""
    key = run_key(Settings(), DATA)
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert run_key(Settings(), DATA) == key
    assert len({key, run_key(Settings(seed=1), DATA), run_key(Settings(), DATA + "x")}) == 3


def test_put_replaces_older_copy(store):
    """A second put of the same run replaces the first; the store holds one row."""
    store.put(Settings(), DATA, run(3))
    store.put(Settings(), DATA, run(4, shift=1.0))
    assert dicts(store.get(Settings(), DATA)) == dicts(run(4, shift=1.0))
    assert store.count() == 1


def test_row_records_settings_versions_and_time(store, path):
    """A row carries the settings as JSON, both versions and a UTC creation time."""
    settings = Settings(l2=1e-3, dropout=0.5)
    store.put(settings, DATA, run())
    (row,) = sql(path, "SELECT settings, data_version, training_version, created FROM runs")
    assert json.loads(row[0]) == settings.as_dict()
    assert row[1:3] == (DATA, regviz.training.version.TRAINING_VERSION)
    assert datetime.fromisoformat(row[3]).utcoffset().total_seconds() == 0


def test_file_is_marked_as_regviz_store(store, path):
    """The file carries regviz's application_id and the schema version."""
    assert sql(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_runs_persist_across_store_objects(store, path):
    """A new RunStore on the same file sees the runs of an earlier one."""
    store.put(Settings(), DATA, run())
    assert dicts(RunStore(path).get(Settings(), DATA)) == dicts(run())


def test_env_var_sets_the_path(tmp_path, monkeypatch):
    """REGVIZ_STORE decides where a store without an explicit path lives; missing folders are made."""
    target = tmp_path / "deep" / "er" / "mine.sqlite"
    monkeypatch.setenv("REGVIZ_STORE", str(target))
    store = RunStore()
    store.put(Settings(), DATA, run())
    assert store.path == target == default_path()
    assert target.is_file()


def test_default_path_follows_xdg_cache_home(tmp_path, monkeypatch):
    """Without REGVIZ_STORE the store lives under $XDG_CACHE_HOME/regviz."""
    monkeypatch.delenv("REGVIZ_STORE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_path() == tmp_path / "regviz" / "runs.sqlite"


def test_default_path_falls_back_to_home_cache(tmp_path, monkeypatch):
    """Without REGVIZ_STORE and XDG_CACHE_HOME the store lives under ~/.cache/regviz."""
    monkeypatch.delenv("REGVIZ_STORE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path() == tmp_path / ".cache" / "regviz" / "runs.sqlite"


def test_empty_file_becomes_a_store_quietly(path):
    """An empty file (as `touch` leaves it) is taken over without a warning."""
    path.touch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = RunStore(path)
    store.put(Settings(), DATA, run())
    assert store.count() == 1
    assert aside_files(path.parent) == []


def write_random_bytes(path: Path) -> None:
    """Noise where the store should be."""
    path.write_bytes(random.Random(0).randbytes(8192))


def write_text(path: Path) -> None:
    """A text file where the store should be."""
    path.write_text("these are notes, not a database\n" * 20)


def write_truncated_store(path: Path) -> None:
    """The first third of a real store with several runs."""
    full = path.with_name("full.sqlite")
    store = RunStore(full)
    for seed in range(6):
        store.put(Settings(seed=seed), DATA, run(20))
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def write_foreign_table(path: Path) -> None:
    """Another program's SQLite database with its own table."""
    sql(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    sql(path, "INSERT INTO notes (body) VALUES ('keep me')")


def write_foreign_application(path: Path) -> None:
    """An SQLite database stamped with another application_id."""
    sql(path, "PRAGMA application_id = 12345")
    sql(path, "CREATE TABLE runs (key TEXT)")


CORRUPTIONS = [
    write_random_bytes,
    write_text,
    write_truncated_store,
    write_foreign_table,
    write_foreign_application,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.removeprefix("write_"))
def test_bad_file_is_moved_aside_and_replaced(path, corrupt, caplog):
    """A file that is not our store is moved to <name>.corrupt-<time> with a warning; a fresh store works."""
    corrupt(path)
    original = path.read_bytes()
    with pytest.warns(RuntimeWarning, match="moved it to") as caught:
        store = RunStore(path)
    (aside,) = aside_files(path.parent)
    assert aside.name.startswith("runs.sqlite.corrupt-")
    assert aside.read_bytes() == original
    message = str(caught[0].message)
    assert str(path) in message and str(aside) in message
    assert any(str(aside) in r.getMessage() for r in caplog.records if r.name == "regviz")
    store.put(Settings(), DATA, run())
    assert dicts(store.get(Settings(), DATA)) == dicts(run())


def test_file_damaged_while_open_is_moved_aside(store, path):
    """A store overwritten behind an open RunStore is noticed on the next get, which is then a miss."""
    store.put(Settings(), DATA, run())
    write_random_bytes(path)
    with pytest.warns(RuntimeWarning, match="moved it to"):
        assert store.get(Settings(), DATA) is None
    store.put(Settings(), DATA, run())
    assert store.count() == 1
    assert len(aside_files(path.parent)) == 1


def test_unreadable_row_is_dropped_with_warning(store, path, caplog):
    """A row whose records JSON cannot be read is a miss with a warning and is removed; other runs stay."""
    store.put(Settings(), DATA, run())
    store.put(Settings(seed=1), DATA, run())
    sql(path, "UPDATE runs SET records = '[{\"epoch\": 1' WHERE key = ?", (run_key(Settings(), DATA),))
    with pytest.warns(RuntimeWarning, match="could not be read"):
        assert store.get(Settings(), DATA) is None
    assert any("could not be read" in r.getMessage() for r in caplog.records if r.name == "regviz")
    assert not store.has(Settings(), DATA)
    assert dicts(store.get(Settings(seed=1), DATA)) == dicts(run())
    assert aside_files(path.parent) == []


SALVAGED = re.compile(r"(\d+) runs? salvaged, (\d+) lost")


def store_of_20_runs(path: Path) -> bytes:
    """A store at path holding 20 runs (seeds 0-19, each with its own records); its bytes."""
    store = RunStore(path)
    for seed in range(20):
        store.put(Settings(seed=seed), DATA, run(20, shift=seed))
    return path.read_bytes()


def check_salvage(store: RunStore, message: str) -> int:
    """Every run is either served whole or a miss; the counts in the message are those; returns how many
    were salvaged."""
    served = [seed for seed in range(20) if store.get(Settings(seed=seed), DATA) is not None]
    for seed in served:
        assert dicts(store.get(Settings(seed=seed), DATA)) == dicts(run(20, shift=seed))
    salvaged, lost = map(int, SALVAGED.search(message).groups())
    assert (salvaged, lost) == (len(served), 20 - len(served))
    assert 0 < salvaged < 20, "half a file should keep some runs and lose others"
    return salvaged


def test_truncated_store_keeps_the_runs_it_can_still_read(path, caplog):
    """A store of 20 runs cut to half its size: the runs still readable move into the fresh store, the log
    and the warning say how many were salvaged and lost, the damaged file is kept aside as it was."""
    data = store_of_20_runs(path)
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="moved it to") as caught:
        store = RunStore(path)
    (message,) = [str(w.message) for w in caught]
    assert store.count() == check_salvage(store, message)
    (aside,) = aside_files(path.parent)
    assert aside.read_bytes() == data[: len(data) // 2] and str(aside) in message
    assert any(SALVAGED.search(r.getMessage()) for r in caplog.records if r.name == "regviz")
    store.put(Settings(seed=99), DATA, run())  # the rebuilt store takes new runs
    assert dicts(store.get(Settings(seed=99), DATA)) == dicts(run())


def test_store_truncated_while_open_is_salvaged_on_next_use(path):
    """A store cut short behind an open RunStore is rebuilt from what can be read when a call meets the
    damage; the runs read before and after agree with what was stored."""
    store = RunStore(path)
    data = store_of_20_runs(path)
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="moved it to") as caught:
        store.put(Settings(seed=20), DATA, run(20, shift=20))  # a put meets the damaged end of the table
    salvaged = check_salvage(store, str(caught[0].message))
    assert dicts(store.get(Settings(seed=20), DATA)) == dicts(run(20, shift=20))
    assert store.count() == salvaged + 1 and len(aside_files(path.parent)) == 1


def test_the_page_notice_of_a_salvage_is_given_once(path):
    """take_notice: one line with the counts and where the damaged file is, then None (and None for a store
    that was never damaged)."""
    assert RunStore(path).take_notice() is None
    data = store_of_20_runs(path)
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning):
        store = RunStore(path)
    notice = store.take_notice()
    (aside,) = aside_files(path.parent)
    assert SALVAGED.search(notice) and str(aside) in notice and "\n" not in notice
    assert store.take_notice() is None


def test_a_file_that_was_never_a_store_salvages_nothing(path):
    """Random bytes are moved aside as before, with no salvage counts: there was nothing of ours in them."""
    write_random_bytes(path)
    with pytest.warns(RuntimeWarning, match="moved it to") as caught:
        store = RunStore(path)
    assert not SALVAGED.search(str(caught[0].message)) and store.count() == 0
    assert "could not be read" in store.take_notice()


def test_newer_schema_is_refused_not_moved(store, path):
    """A store from a newer regviz raises StoreError and is left where it is."""
    sql(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        RunStore(path)
    assert path.exists() and aside_files(path.parent) == []


def in_threads(n: int, work) -> None:
    """Run work(i) for i < n in n threads started together; re-raise the first failure."""
    start, errors = threading.Barrier(n), []

    def body(i):
        try:
            start.wait(timeout=30)
            work(i)
        except Exception as e:  # noqa: BLE001 - handed to the test thread below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


def test_concurrent_puts_from_threads_all_land(store):
    """Puts of different runs from many threads sharing one RunStore all end up stored intact."""
    n = 16
    in_threads(n, lambda i: store.put(Settings(seed=i), DATA, run(10, shift=i)))
    assert store.count() == n
    for i in range(n):
        assert dicts(store.get(Settings(seed=i), DATA)) == dicts(run(10, shift=i))


def test_concurrent_gets_repair_a_damaged_file_once(store, path):
    """When many threads hit a damaged file together, it is moved aside once and every get is a miss."""
    store.put(Settings(), DATA, run())
    write_random_bytes(path)
    results = [object()] * 8

    def get(i):
        results[i] = store.get(Settings(), DATA)

    with pytest.warns(RuntimeWarning, match="moved it to"):
        in_threads(len(results), get)
    assert results == [None] * len(results)
    assert len(aside_files(path.parent)) == 1


def put_runs(path: str, first: int, n: int) -> None:
    """Process body: put runs with seeds first..first+n-1, each through its own RunStore."""
    for seed in range(first, first + n):
        RunStore(path).put(Settings(seed=seed), DATA, run(10, shift=seed))


def test_concurrent_puts_from_processes_all_land(path):
    """Several processes putting runs into one file at once lose none of them."""
    RunStore(path)
    # fresh interpreters, not multiprocessing: its spawn re-runs whatever __main__ is (after AppTest, app.py)
    code = "import sys, test_store; test_store.put_runs(sys.argv[1], int(sys.argv[2]), 5)"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(10 * p)], cwd=TESTS, env=subprocess_env()
        )
        for p in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * len(procs)
    store = RunStore(path)
    assert store.count() == 20
    for seed in (0, 14, 32):
        assert dicts(store.get(Settings(seed=seed), DATA)) == dicts(run(10, shift=seed))


@pytest.mark.parametrize("inside", ["runs.sqlite", "sub/runs.sqlite"], ids=["in-dir", "missing-subdir"])
def test_unwritable_directory_raises_store_error(tmp_path, inside):
    """An unwritable place gives one StoreError line naming the path and REGVIZ_STORE."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("permissions are not enforced for this user (root?)")
        with pytest.raises(StoreError) as err:
            RunStore(locked / inside)
    finally:
        locked.chmod(0o755)
    message = str(err.value)
    assert str(locked / inside) in message and "REGVIZ_STORE" in message and "\n" not in message
