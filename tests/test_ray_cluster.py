"""Training on a real Ray cluster (`ray start --head` on this machine): records stream one per epoch and
equal training here, cancel frees the slot, a sweep through the run manager equals local runs and is
stored once per cell, a killed actor fails its run in one line and is replaced, TensorFlow is sized
to an actor's CPUs, an unreachable cluster or an actor with no room is one problem line,
REGVIZ_RAY=local trains in a Ray of its own and leaves no process behind; nothing imports ray unless
configured."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
from conftest import Collected as _Collected
from conftest import subprocess_env

from regviz import data
from regviz.records import EpochRecord
from regviz.runs import ray_cluster
from regviz.runs.inprocess import train_here
from regviz.runs.manager import DONE
from regviz.runs.ray_cluster import RayWorkers
from regviz.service import RunService
from regviz.settings import Settings
from regviz.store import RunStore

HAVE_RAY = importlib.util.find_spec("ray") is not None
DEADLINE = 120.0  # seconds; an actor starts in about 5 s (tensorflow, data, warm-up), more on a busy host
Collected = functools.partial(_Collected, deadline=DEADLINE)  # this file's deadline
SMALL = Settings(dataset="synthetic", width=4, epochs=3)
LONG = Settings(dataset="synthetic", width=256, depth=2, epochs=60)  # tens of seconds: ends by a cancel
RAY_ENV = {
    # every Ray address on loopback: without it Ray binds the cluster to the machine's network address
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Ray's token authentication, with a token of our own: ~/.ray/auth_token is never read nor written
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}
# for services that warm up on IMDB: a missing file fails at once, where a download would try the network
NO_IMDB = {data.IMDB_PATH_ENV: "/nonexistent/imdb.npz"}


def need_ray() -> None:
    """Skip without ray installed, except in CI, which installs requirements-ray.txt: there, fail."""
    if not HAVE_RAY:
        if os.environ.get("CI") == "true":
            pytest.fail("ray is not installed: CI installs requirements-dev.txt, which includes it")
        pytest.skip("ray is not installed (pip install -r requirements-ray.txt)")




def assert_same_run(got: list[EpochRecord], settings: Settings) -> None:
    """Records equal to the same settings trained in this process, to 1e-6 (seconds apart)."""
    here = list(train_here(settings))
    assert [r.epoch for r in got] == list(range(1, settings.epochs + 1))
    for ours, theirs in zip(got, here, strict=True):
        for name in ("data_loss", "val_data_loss", "penalty", "loss", "val_loss", "accuracy", "val_accuracy"):
            assert getattr(ours, name) == pytest.approx(getattr(theirs, name), abs=1e-6), name
        assert ours.val_auc == pytest.approx(theirs.val_auc, abs=1e-6)
        assert [s.l2_norm for s in ours.layers] == pytest.approx([s.l2_norm for s in theirs.layers], abs=1e-6)
        assert ours.hist == theirs.hist


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports free now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def ray_start_command(temp: str) -> tuple[list[str], str]:
    """`ray start --head --block` with 2 CPUs, no dashboard, a small object store and its own ports."""
    gcs, client, agent, agent_grpc, runtime_env, metrics, node, objects = free_ports(8)
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--num-cpus", "2",
        "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp,
        "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
        "--node-manager-port", str(node), "--object-manager-port", str(objects),
        "--object-store-memory", str(100 * 1024 * 1024),
    ]  # fmt: skip
    return command, f"127.0.0.1:{gcs}"


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """Read proc's output until a line holds marker; return what was read. Output is drained after."""
    lines: queue.Queue = queue.Queue()

    def drain():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no {marker!r} from ray start in {timeout:.0f} s:\n" + "".join(seen[-30:]))
        assert line is not None, "ray start exited:\n" + "".join(seen[-30:])
        seen.append(line)
        if marker in line:
            return "".join(seen)


def group_alive(pgid: int) -> bool:
    """True while any process of the group is left (zombies included)."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> bool:
    """End proc (SIGTERM), wait for every process of its group (its own session) to be gone, and kill
    what is left at the deadline; True if something was left."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + timeout
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling with a deadline: nothing signals a whole group's end
    left = group_alive(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    return left


@pytest.fixture(scope="module")
def cluster():
    """A one-node cluster started as a user would (`ray start --head`), RAY_ADDRESS pointed at it; after
    the module, stopped by ending the `ray start --block` process we started and, at worst, its group."""
    need_ray()
    assert "ray" not in sys.modules, "ray was imported before RAY_ENV could apply"
    temp = tempfile.mkdtemp(prefix="rv-ray-")  # short: Ray's socket paths must fit in 107 characters
    command, address = ray_start_command(temp)
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **RAY_ENV}, start_new_session=True,  # its own group: all of it is ours
    )  # fmt: skip
    try:
        wait_for_line(proc, "Ray runtime started", 60)
        with pytest.MonkeyPatch.context() as mp:
            for name, value in {**RAY_ENV, "RAY_ADDRESS": address}.items():
                mp.setenv(name, value)
            yield address
    finally:
        left = stop_group(proc)  # `ray start --block` stops every process it started on SIGTERM
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, "Ray processes were still running 30 s after ray start stopped"


@pytest.fixture(scope="module")
def workers(cluster):
    """One Ray actor on the cluster (2 CPUs, 4 jobs at once), warmed up on the offline dataset."""
    made = RayWorkers(address=cluster, actors=1, per_actor=4, warm_dataset="synthetic")
    yield made
    assert made.close(timeout=30)


def test_the_command_line_sweep_trains_its_cells_on_the_cluster(cluster, tmp_path):
    """`python -m regviz sweep` with RAY_ADDRESS set: 4 cells trained on the cluster's actor, each equal
    to the same settings trained here (1e-6), stored once; the second sweep reads them all from the store.
    (First in the module: the `workers` fixture's actor would otherwise hold the cluster's 2 CPUs.)"""
    store = tmp_path / "runs.sqlite"
    grid = ["--l2", "0,0.001", "--dropout", "0,0.5"]
    args = ["sweep", "--dataset", "synthetic", "--width", "4", "--epochs", "3", *grid]

    def run(**env) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "regviz", *args], capture_output=True, text=True, timeout=DEADLINE * 2,
            env=subprocess_env(REGVIZ_STORE=str(store), **NO_IMDB, **env),
        )  # fmt: skip

    def sweep() -> list[dict]:
        proc = run()
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads(line) for line in proc.stdout.splitlines()[:-1]]

    cells = sweep()
    assert len(cells) == 4 and not any(c["stored"] for c in cells)
    base = Settings(dataset="synthetic", width=4, epochs=3)
    for c in cells:
        here = list(train_here(base.replace(**c["cell"])))
        assert c["min_val_data_loss"] == pytest.approx(min(r.val_data_loss for r in here), abs=1e-6)
    assert RunStore(store).count() == 4
    assert all(c["stored"] for c in sweep())
    store.unlink()  # a cluster that is not there: one line, exit 1, nothing trained here instead
    gone = run(RAY_ADDRESS=f"127.0.0.1:{free_ports(1)[0]}")
    assert gone.returncode == 1 and gone.stdout == "", gone.stdout
    ours = [line for line in gone.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and "Ray" in ours[0] and "Traceback" not in gone.stderr, gone.stderr[-3000:]


def test_records_stream_one_per_epoch_equal_to_training_here(workers):
    """Records come from the actor one per epoch, in order, equal to the same settings trained here."""
    got = Collected(SMALL)
    workers.start(got.job)
    got.wait_end()
    assert got.error is None
    assert workers.problem() is None
    assert_same_run(got.records, SMALL)


def test_an_actor_sizes_tensorflow_to_its_cpus(workers):
    """The actor's TensorFlow runs both thread pools with its 2 CPUs, not as many as the machine has."""
    import ray

    (actor,) = workers.handles()
    assert ray.get(actor.ready.remote(), timeout=30)["threads"] == [2, 2]


def test_an_actor_describes_datasets(workers):
    """describe loads the dataset in an actor; an unknown dataset raises DatasetUnavailable."""
    info = workers.describe("synthetic")
    ds = data.load("synthetic")
    assert (info.version, info.n_train, info.n_val) == (ds.version, len(ds.y_train), len(ds.y_val))
    with pytest.raises(data.DatasetUnavailable, match="unknown dataset"):
        workers.describe("no-such-data")


def test_cancel_mid_run_ends_the_job_early_and_frees_the_slot(workers):
    """A run cancelled while it trains (records streaming, not yet ended) ends before its last epoch;
    the next trains. The seconds it took are in the message, not bounded (they measure CI's load)."""
    long = Collected(LONG)
    workers.start(long.job)
    long.wait_records(2)
    assert not long.ended.is_set()  # records arrive while the run trains, not at its end
    asked = time.monotonic()
    workers.cancel(long.job)
    long.wait_end()
    took = long.ended_at - asked
    assert long.error is None and len(long.records) < LONG.epochs, f"cancel took {took:.2f} s"
    after = Collected(SMALL.replace(seed=3))
    workers.start(after.job)
    after.wait_end()
    assert after.error is None and len(after.records) == SMALL.epochs


class CountingStore(RunStore):
    """The real SQLite store, counting how often each run is written."""

    def __init__(self, path):
        super().__init__(path)
        self.puts: dict[str, int] = {}

    def put(self, settings, data_version, records):
        """Count, then store."""
        self.puts[settings.key()] = self.puts.get(settings.key(), 0) + 1
        super().put(settings, data_version, records)


def test_a_sweep_through_the_run_manager_equals_local_runs_and_is_stored_once(workers, tmp_path):
    """l2 {0, 0.001} x dropout {0, 0.5}, asked of the run manager: each cell trains on the actor, equals
    the same run trained here to 1e-6, and is written to the store exactly once."""
    store = CountingStore(tmp_path / "runs.sqlite")
    service = RunService(store=store, executor=workers)  # not closed: that would close the shared actors
    cells = [
        Settings(dataset="synthetic", epochs=3, l2=l2, dropout=dropout)
        for l2, dropout in itertools.product((0.0, 0.001), (0.0, 0.5))
    ]
    runs = [service.manager.watch(cell, "sweep") for cell in cells]
    for run in runs:
        assert run.wait(DEADLINE), f"{run.key} did not finish"
        assert run.state == DONE, run.error
    version = service.dataset_info("synthetic").version
    for cell, run in zip(cells, runs, strict=True):
        assert_same_run(run.records(), cell)
        assert store.get(cell, version) == run.records()
    assert store.puts == {cell.key(): 1 for cell in cells}
    service.manager.unwatch("sweep")


def test_with_ray_address_set_the_default_service_trains_on_ray(cluster, tmp_path, monkeypatch):
    """RunService() picks RayWorkers when RAY_ADDRESS is set (the cluster fixture sets it)."""
    monkeypatch.setenv(data.IMDB_PATH_ENV, NO_IMDB[data.IMDB_PATH_ENV])
    service = RunService(store=RunStore(tmp_path / "runs.sqlite"))
    try:
        assert isinstance(service.executor, RayWorkers)
        assert service.executor.address == cluster
    finally:
        assert service.executor.close(timeout=30)  # its actor may still wait for CPUs: killed unborn


def test_an_actor_the_cluster_has_no_room_for_is_one_problem_line(workers, cluster):
    """While the module's actor holds both CPUs, a second executor's actor cannot be placed: after its
    start timeout problem() says so in one line (and close kills the unborn actor)."""
    waiting = RayWorkers(address=cluster, actors=1, warm_dataset="synthetic", start_timeout=1)
    try:
        deadline = time.monotonic() + 30
        while waiting.problem() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # polling with a deadline: problem() has no event to wait on
        assert waiting.problem() == (
            "no Ray training actor started in 1 s: the cluster may have no 2 free CPU(s) for one"
        )
        assert workers.problem() is None
    finally:
        assert waiting.close(timeout=30)


def test_a_killed_actor_fails_its_run_in_one_line_and_a_retry_trains_on_a_fresh_actor(workers):
    """ray.kill mid-run: the job ends with one clear line; a new actor trains the retry to the end."""
    import ray

    doomed = Collected(LONG.replace(seed=2))
    workers.start(doomed.job)
    doomed.wait_records(1)
    (actor,) = workers.handles()
    ray.kill(actor)
    doomed.wait_end()
    assert doomed.error == ray_cluster.DIED.format("it was killed by `ray.kill`")
    retry = Collected(SMALL)
    workers.start(retry.job)
    retry.wait_end()
    assert retry.error is None
    assert_same_run(retry.records, SMALL)
    assert [a._actor_id for a in workers.handles()] != [actor._actor_id]


@pytest.mark.parametrize(
    "environ, address",
    [
        ({}, None),
        ({"RAY_ADDRESS": "10.0.0.5:6379"}, "10.0.0.5:6379"),
        ({"RAY_ADDRESS": " "}, None),
        ({"REGVIZ_RAY": "local"}, "local"),
        ({"REGVIZ_RAY": "auto", "RAY_ADDRESS": "10.0.0.5:6379"}, "auto"),
        ({"REGVIZ_RAY": "0", "RAY_ADDRESS": "10.0.0.5:6379"}, None),
        ({"REGVIZ_RAY": "off"}, None),
    ],
)
def test_ray_is_configured_by_ray_address_or_regviz_ray(environ, address):
    """RAY_ADDRESS or REGVIZ_RAY turn Ray on; REGVIZ_RAY names an address, `local` or `auto`; 0/off wins."""
    assert ray_cluster.address_from_env(environ) == address
    assert ray_cluster.configured(environ) is (address is not None)


def test_regviz_and_the_default_service_do_not_import_ray_unless_configured(tmp_path):
    """Without RAY_ADDRESS or REGVIZ_RAY, importing regviz and building the default service leaves ray
    unimported, and the service trains in local worker processes."""
    code = (
        "import sys, regviz, regviz.cli, regviz.service, regviz.runs.ray_cluster\n"
        "from regviz.store import RunStore\n"
        "service = regviz.service.RunService(store=RunStore(sys.argv[1]))\n"
        "print(type(service.executor).__name__, 'ray' in sys.modules)\n"
        "service.close(timeout=0)\n"
    )
    env = {k: v for k, v in subprocess_env(**NO_IMDB).items() if k not in ("RAY_ADDRESS", "REGVIZ_RAY")}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "runs.sqlite")], capture_output=True, text=True,
        timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["LocalWorkers", "False"]


def test_an_unreachable_cluster_is_one_problem_line_and_fails_jobs_with_it():
    """A cluster that does not answer: problem() says so in one line, and a job started ends with it."""
    need_ray()
    (port,) = free_ports(1)
    code = (
        "import os, sys, threading, time\n"
        "from regviz.runs.ray_cluster import RayWorkers\n"
        "from regviz.runs.seam import Job\n"
        "from regviz.settings import Settings\n"
        "workers = RayWorkers(address=sys.argv[1], connect_timeout=1)\n"
        "deadline = time.monotonic() + 20\n"
        "while workers.problem() is None and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"  # polling with a deadline: problem() has no event to wait on
        "ended, errors = threading.Event(), []\n"
        "job = Job(Settings(), lambda r: None, lambda e: (errors.append(e), ended.set()))\n"
        "workers.start(job)\n"
        "print(workers.problem()); print(errors[0] if ended.wait(5) else 'no end')\n"
        "sys.stdout.flush(); os._exit(0)\n"  # ray.init may go on trying: do not wait for it
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60,
        env=subprocess_env(**RAY_ENV),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    problem = f"cannot reach the Ray cluster at 127.0.0.1:{port}: no answer in 1 s"
    assert proc.stdout.splitlines() == [problem, problem]


def test_regviz_ray_local_starts_ray_in_the_process_trains_and_leaves_nothing_behind(tmp_path):
    """REGVIZ_RAY=local: the default service starts Ray in its own process (no dashboard; even with
    RAY_ADDRESS set, as the cluster fixture leaves it), trains a run on an actor and stores it; after
    close, no process of that Ray is left."""
    need_ray()
    code = (
        "import sys\n"
        "from regviz.service import RunService\n"
        "from regviz.settings import Settings\n"
        "from regviz.store import RunStore\n"
        "service = RunService(store=RunStore(sys.argv[1]))\n"
        "settings = Settings(dataset='synthetic', width=4, epochs=2)\n"
        "run = service.manager.watch(settings, 'tab')\n"
        "print(type(service.executor).__name__, run.wait(60), run.state, len(run.records()))\n"
        "print(service.store.get(settings, service.dataset_info('synthetic').version) == run.records())\n"
        "print(service.close(timeout=30))\n"
    )
    temp = tempfile.mkdtemp(prefix="rv-ray-")  # Ray's session files, removed after
    env = subprocess_env(REGVIZ_RAY="local", REGVIZ_MAX_TRAININGS="1", RAY_TMPDIR=temp, **RAY_ENV, **NO_IMDB)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "runs.sqlite")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=100)
    finally:
        left = stop_group(proc)
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, err[-3000:]
    assert out.splitlines() == ["RayWorkers True done 2", "True", "True"]
    assert not left, "Ray processes were still running 30 s after the service closed"


def test_an_uploaded_file_trains_on_an_actor_as_here(workers):
    """A file uploaded to this process is sent to the actor with its first run there: the records
    equal the same settings trained here; after forget, the actor drops it."""
    from regviz.data import csvfile

    rng = np.random.default_rng(6)
    rows = ["a,b,label"] + [f"{x:.3f},{y:.3f},{int(x + y > 0)}" for x, y in rng.normal(size=(80, 2))]
    prepared = csvfile.prepare(csvfile.read_table("\n".join(rows).encode(), "ab.csv"), "label")
    data.add_upload(prepared, holder="s")
    try:
        settings = Settings.for_dataset(prepared.name, epochs=3)
        got = Collected(settings)
        workers.start(got.job)
        got.wait_end()
        assert got.error is None
        here = list(train_here(settings))
        for ours, theirs in zip(got.records, here, strict=True):
            assert ours.val_data_loss == pytest.approx(theirs.val_data_loss, abs=1e-6)
        workers.forget(prepared.name)
    finally:
        data.forget_upload(prepared.name)
