"""Tests for regviz.store_postgres: the PostgreSQL store, on the real server at $REGVIZ_TEST_POSTGRES
(scripts/postgres.sh starts one); they skip without it, except in CI, where a missing server fails them."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
import uuid
import warnings
from subprocess import PIPE
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from conftest import REPO, TESTS, subprocess_env
from test_store import DATA, dicts, in_threads, record, run

import regviz.training.version
from regviz import store as store_mod
from regviz.settings import Settings
from regviz.store import RunStore, StoreError, open_store, run_key

SERVER_ENV = "REGVIZ_TEST_POSTGRES"
IN_CI = os.environ.get("CI") == "true"
PASSWORD = "not-to-be-printed-7f3a"  # in the unreachable store's URL only
SWEEP = ["--dataset", "synthetic", "--epochs", "3", "--l2", "0,0.001", "--dropout", "0,0.5"]
TOLERANCE = 1e-6


def missing(why: str) -> None:
    """Skip, or fail under CI=true, where the PostgreSQL store must be proven."""
    if IN_CI:
        pytest.fail(f"{why} (CI=true: the PostgreSQL store tests must run)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def psycopg():
    """The driver, from requirements-postgres.txt."""
    try:
        import psycopg
    except ImportError:
        missing("psycopg is not installed (pip install -r requirements-postgres.txt)")
    return psycopg


@pytest.fixture(scope="module")
def server(psycopg) -> str:
    """The test server's URL, checked to answer."""
    url = os.environ.get(SERVER_ENV)
    if not url:
        missing(f"{SERVER_ENV} is not set (bash scripts/postgres.sh prints a URL for it)")
    with psycopg.connect(url, connect_timeout=10) as db:
        db.execute("SELECT 1")
    return url


def with_params(url: str, **params: str) -> str:
    """The URL with these query parameters added (or replaced)."""
    parts = urlsplit(url)
    query = {**dict(parse_qsl(parts.query)), **params}
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def url(server, psycopg):
    """A URL whose tables live in a schema of this test's own, dropped afterwards: tests are independent."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{schema}"')
    yield with_params(server, options=f"-csearch_path={schema}", application_name=f"regviz-{schema}")
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store(url):
    """A fresh PostgreSQL store in this test's schema."""
    opened = open_store(url)
    yield opened
    opened.close()


def sql(psycopg, url: str, statement: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on the test's schema behind the store's back, on a connection of its own."""
    with psycopg.connect(url, autocommit=True) as db:
        cur = db.execute(statement, params)
        return cur.fetchall() if cur.description else []


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key() -> str:
    """The run key of Settings() on DATA, for statements behind the store's back."""
    return run_key(Settings(), DATA)


def assert_records_close(got: list[dict], want: list[dict]) -> None:
    """Epoch records equal field for field, numbers to TOLERANCE; the wall-clock seconds are not compared."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for name in g.keys() - {"seconds"}:
            assert_close(g[name], w[name], name)


def assert_close(got, want, where: str) -> None:
    """Nested lists, dicts and numbers equal, numbers to TOLERANCE (absolute and relative)."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for k in want:
            assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not math.isfinite(want):
        assert got == want or (math.isnan(got) and math.isnan(want)), where
    elif isinstance(want, int | float):
        assert math.isclose(got, want, rel_tol=TOLERANCE, abs_tol=TOLERANCE), (where, got, want)
    else:
        assert got == want, where


# --- the factory --------------------------------------------------------------------------------


def test_open_store_picks_sqlite_for_paths_and_postgres_for_urls(tmp_path, monkeypatch, psycopg):
    """A path (or nothing) opens the SQLite store, a postgresql:// or postgres:// URL the PostgreSQL one,
    from the argument or REGVIZ_STORE; opening does not connect yet."""
    from regviz.store_postgres import PostgresStore

    assert isinstance(open_store(tmp_path / "a.sqlite"), RunStore)
    assert isinstance(open_store(str(tmp_path / "b.sqlite")), RunStore)
    assert isinstance(open_store(), RunStore)  # conftest's REGVIZ_STORE: a file path
    port = closed_port()
    for url in (f"postgresql://u:p@127.0.0.1:{port}/db", f"postgres://u:p@127.0.0.1:{port}/db"):
        assert isinstance(open_store(url), PostgresStore)
    monkeypatch.setenv("REGVIZ_STORE", f"postgresql://u:p@127.0.0.1:{port}/db")
    opened = open_store()
    assert isinstance(opened, PostgresStore)
    assert opened.where == f"PostgreSQL database db on 127.0.0.1:{port} as u"
    with pytest.raises(StoreError, match="open_store"):
        RunStore()  # a URL is never taken for a file name


def test_without_psycopg_a_url_gives_one_line(monkeypatch):
    """With a PostgreSQL URL but no psycopg installed, opening the store says what to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    with pytest.raises(StoreError, match="requirements-postgres.txt") as err:
        open_store("postgresql://u:p@localhost/db")
    assert "\n" not in str(err.value)


# --- the store on a real server -----------------------------------------------------------------


def test_round_trip_put_get_has_count(store):
    """What put stores, get returns field for field and in epoch order; has and count follow; other
    settings or data are misses; a second put of a run replaces it."""
    assert store.get(Settings(), DATA) is None and not store.has(Settings(), DATA) and store.count() == 0
    store.put(Settings(), DATA, list(reversed(run(20))))
    assert dicts(store.get(Settings(), DATA)) == dicts(run(20))
    assert store.has(Settings(), DATA) and store.count() == 1
    assert store.get(Settings(l2=1e-4), DATA) is None and store.get(Settings(), "imdb-v2") is None
    store.put(Settings(), DATA, run(4, shift=1.0))
    assert dicts(store.get(Settings(), DATA)) == dicts(run(4, shift=1.0)) and store.count() == 1


def test_diverged_values_survive(store):
    """NaN and infinite losses of a diverged run are stored and read back as such."""
    store.put(Settings(), DATA, [dataclasses.replace(record(1), loss=math.nan, val_loss=-math.inf)])
    (back,) = store.get(Settings(), DATA)
    assert math.isnan(back.loss) and back.val_loss == -math.inf


def test_row_records_settings_versions_and_time(store, url, psycopg):
    """A row carries the settings (as JSON), both versions and a time with a zone."""
    settings = Settings(l2=1e-3, dropout=0.5)
    store.put(settings, DATA, run())
    ((stored, data_version, training, created),) = sql(
        psycopg, url, "SELECT settings, data_version, training_version, created FROM regviz_runs"
    )
    assert stored == settings.as_dict()
    assert (data_version, training) == (DATA, regviz.training.version.TRAINING_VERSION)
    assert created.utcoffset() is not None


def test_stale_training_version_is_never_served(store, url, psycopg, monkeypatch):
    """After TRAINING_VERSION changes the old run is a miss, and a row labelled with another training
    version is not served even under the current key."""
    store.put(Settings(), DATA, run())
    monkeypatch.setattr(
        regviz.training.version, "TRAINING_VERSION", regviz.training.version.TRAINING_VERSION + "-next"
    )
    assert store.get(Settings(), DATA) is None and not store.has(Settings(), DATA)
    store.put(Settings(), DATA, run(3))
    sql(psycopg, url, "UPDATE regviz_runs SET training_version = 'old' WHERE key = %s", (key(),))
    assert store.get(Settings(), DATA) is None and not store.has(Settings(), DATA)


def test_unreadable_row_is_dropped_with_a_warning(store, url, psycopg):
    """A row whose records cannot be decoded is a miss with a warning and is deleted; other runs stay."""
    store.put(Settings(), DATA, run())
    store.put(Settings(seed=1), DATA, run())
    sql(psycopg, url, "UPDATE regviz_runs SET records = '[{\"epoch\": 1' WHERE key = %s", (key(),))
    with pytest.warns(RuntimeWarning, match="could not be read"):
        assert store.get(Settings(), DATA) is None
    assert not store.has(Settings(), DATA) and store.count() == 1
    assert dicts(store.get(Settings(seed=1), DATA)) == dicts(run())


def test_tables_dropped_behind_the_store_are_created_again(store, url, psycopg):
    """Tables dropped while the store is open are created again on the next call, which is a miss."""
    store.put(Settings(), DATA, run())
    sql(psycopg, url, "DROP TABLE regviz_runs, regviz_schema")
    assert store.get(Settings(), DATA) is None
    store.put(Settings(), DATA, run(3))
    assert dicts(store.get(Settings(), DATA)) == dicts(run(3)) and store.count() == 1


def test_newer_schema_is_refused_in_one_line(store, url, psycopg):
    """Tables of a newer regviz are left alone and reported as one StoreError line."""
    store.count()  # creates the tables
    sql(psycopg, url, "UPDATE regviz_schema SET version = version + 1")
    with pytest.raises(StoreError, match="newer") as err:
        open_store(url).count()
    assert "\n" not in str(err.value)


def test_concurrent_puts_of_the_same_run_from_threads(store):
    """Sixteen threads storing the same run at once all succeed, and one complete copy is kept."""
    n = 16
    in_threads(n, lambda i: store.put(Settings(), DATA, run(10, shift=i)))
    assert store.count() == 1
    assert dicts(store.get(Settings(), DATA)) in [dicts(run(10, shift=i)) for i in range(n)]
    in_threads(n, lambda i: store.put(Settings(seed=i), DATA, run(10, shift=i)))
    assert store.count() == 1 + n - 1  # seed 0 is Settings() again
    assert all(dicts(store.get(Settings(seed=i), DATA)) == dicts(run(10, shift=i)) for i in range(1, n))


def share_runs(mine: int, theirs: int, timeout: float = 60.0) -> None:
    """Process body: store run `mine` through open_store() ($REGVIZ_STORE), then poll until run `theirs`,
    stored by another process, reads back whole; exit 1 if it does not within timeout."""
    import time

    store = open_store()
    store.put(Settings(seed=mine), DATA, run(10, shift=mine))
    deadline = time.monotonic() + timeout
    while dicts(store.get(Settings(seed=theirs), DATA)) != dicts(run(10, shift=theirs)):
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
    print(f"process {mine} saw run {theirs}")


def test_two_processes_see_each_others_runs(url):
    """Two interpreters sharing REGVIZ_STORE=<url> each read the run the other stored."""
    code = "import sys, test_store_postgres as t; t.share_runs(int(sys.argv[1]), int(sys.argv[2]))"
    env = subprocess_env(REGVIZ_STORE=url)
    args = [[sys.executable, "-c", code, "1", "2"], [sys.executable, "-c", code, "2", "1"]]
    procs = [subprocess.Popen(a, cwd=TESTS, env=env, stdout=PIPE, text=True) for a in args]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["process 1 saw run 2\n", "process 2 saw run 1\n"]
    assert open_store(url).count() == 2


def test_a_terminated_backend_is_reconnected_transparently(store, url, psycopg):
    """When the server ends the store's connection (pg_terminate_backend), the next calls reconnect
    and answer as if nothing happened, without a warning."""
    store.put(Settings(), DATA, run())
    name = dict(parse_qsl(urlsplit(url).query))["application_name"]
    # the store's own backend: this test's name, and not the connection that asks
    pids = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()"
    (before,) = sql(psycopg, url, pids, (name,))
    killed = sql(psycopg, url, f"SELECT pg_terminate_backend(pid, 5000) FROM ({pids}) AS p", (name,))
    assert killed == [(True,)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dicts(store.get(Settings(), DATA)) == dicts(run())
        store.put(Settings(seed=1), DATA, run())
        assert store.count() == 2
    (after,) = sql(psycopg, url, pids, (name,))
    assert after != before  # a new backend serves the store


def test_an_unreachable_server_gives_one_line_without_the_password(psycopg):
    """A closed port: StoreError in one line naming host, port, database and REGVIZ_STORE, never the
    password; for a while after, calls fail at once instead of waiting for the server again."""
    import time

    port = closed_port()
    store = open_store(f"postgresql://regviz:{PASSWORD}@127.0.0.1:{port}/regviz_test")
    calls = (store.count, lambda: store.get(Settings(), DATA), lambda: store.put(Settings(), DATA, run()))
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and PASSWORD not in message
        assert f"127.0.0.1:{port}" in message and "regviz_test" in message and "REGVIZ_STORE" in message
    assert time.monotonic() - started < 0.5  # the later calls did not retry


def test_cli_reports_an_unreachable_server_in_one_line(psycopg):
    """`python -m regviz train` with an unreachable PostgreSQL store exits 1 with one line, no traceback."""
    url = f"postgresql://regviz:{PASSWORD}@127.0.0.1:{closed_port()}/regviz_test"
    done = subprocess.run(
        [sys.executable, "-m", "regviz", "train", "--dataset", "synthetic", "--width", "4", "--epochs", "1"],
        cwd=REPO, env=subprocess_env(REGVIZ_STORE=url), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run store PostgreSQL database regviz_test")
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr


def test_the_app_trains_a_run_when_the_server_is_unreachable(caplog, psycopg):
    """The app's path (RunService and its run manager) with the PostgreSQL store unreachable: the run is
    trained instead of served and kept in memory; the failed lookup and save are warnings in the server's
    log (the page shows no error), and neither the log nor the run holds the password."""
    from regviz.runs.inprocess import train_here
    from regviz.runs.threads import ThreadExecutor
    from regviz.service import RunService

    store = open_store(f"postgresql://regviz:{PASSWORD}@127.0.0.1:{closed_port()}/regviz_test")
    service = RunService(store=store, executor=ThreadExecutor(train_here))
    try:
        run_ = service.manager.watch(Settings(dataset="synthetic", width=4, epochs=1), "a tab")
        assert run_.wait(timeout=300)
        assert run_.state == "done" and not run_.from_store and len(run_.records()) == 1
    finally:
        service.close(timeout=60)
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith("store lookup failed") for m in logged)
    assert any(m.startswith("could not save run") for m in logged)
    assert "regviz_test" in caplog.text and PASSWORD not in caplog.text


def sweep_cells():
    """The Settings of SWEEP's four cells, as the command line builds them."""
    from regviz import sweep

    given = dict(zip(SWEEP[::2], SWEEP[1::2], strict=True))
    base, grid = sweep.read_grid({k.removeprefix("--"): v for k, v in given.items()})
    return sweep.cells(base, grid)


def test_a_sweep_through_postgres_equals_local_training(store, url):
    """`python -m regviz sweep` with REGVIZ_STORE=<url> stores its four cells in PostgreSQL, each equal
    (to 1e-6) to the same settings trained here in-process; the sweep again reads every cell from there."""
    from regviz import data
    from regviz.runs.inprocess import train_here

    def sweep_lines():
        done = subprocess.run(
            [sys.executable, "-m", "regviz", "sweep", *SWEEP], cwd=REPO,
            env=subprocess_env(REGVIZ_STORE=url), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in done.stdout.splitlines()][:-1]

    first = sweep_lines()
    cells = sweep_cells()
    assert [line["key"] for line in first] == [c.key() for c in cells] and len(cells) == 4
    assert not any(line["stored"] for line in first) and store.count() == 4
    version = data.load("synthetic").version
    for cell in cells:
        assert_records_close(dicts(store.get(cell, version)), dicts(list(train_here(cell))))
    assert all(line["stored"] for line in sweep_lines())
    assert store.count() == 4


def test_store_module_keeps_psycopg_out_of_the_default_install():
    """Importing regviz.store (the SQLite default) does not import psycopg."""
    code = "import sys, regviz.store, regviz.service; print('psycopg' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.stdout.strip() == "False", done.stderr
    assert store_mod.is_postgres_url("postgres://h/db")
    assert not store_mod.is_postgres_url("/tmp/postgres.sqlite")
