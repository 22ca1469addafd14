"""Training on a Ray cluster: the same seam as the local workers, with Ray actors as the workers.

Used when configured (`configured()`): `RAY_ADDRESS` names a running cluster (`ray start --head`), or
`REGVIZ_RAY` is `local` (a Ray instance started in this process), `auto` or an address; `REGVIZ_RAY=0`
turns it off whatever RAY_ADDRESS says. Nothing imports `ray` unless so configured: this module
imports it only inside the functions that talk to the cluster.

Each actor is what a local worker process is: it sizes TensorFlow's thread pools to its CPU share,
then runs the same `worker.Worker`, which pumps epochs of the jobs it is given in the order given.
This file is only the transport: commands are actor calls, and the server side long-polls each actor
for its events, so records arrive as each epoch ends, in order. Slots, grace, the stuck timer,
respawn, describe and close are the pool's (`pool.py`). Ray ships this `regviz` package to the
actors with the job (`py_modules` in `ray.init`; if something else connected this process to Ray
first, regviz must be importable on the cluster): the machines need the same Python, TensorFlow and
Keras, and the data (`REGVIZ_IMDB_PATH` is passed on).
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import threading
from collections.abc import Mapping

import regviz
from regviz import data
from regviz.runs.pool import CANCEL_GRACE_S, STUCK_S, Reporter, WorkerPool, later, thread
from regviz.runs.seam import check_count, one_line, shorten

log = logging.getLogger(__name__)

ENV_RAY = "REGVIZ_RAY"
ENV_ADDRESS = "RAY_ADDRESS"  # Ray's own variable: the cluster `ray.init()` connects to
LOCAL = "local"  # REGVIZ_RAY=local: start a Ray instance inside this process
OFF = frozenset({"0", "off", "false", "no"})
LOCAL_OBJECT_STORE = 200 * 1024 * 1024  # bytes: only epoch records pass through it
CPUS_PER_ACTOR = 2  # each actor's share of the cluster, and its TensorFlow threads
CONNECT_S = 30.0  # a cluster that has not answered by then is reported (ray.init may wait far longer)
START_S = 120.0  # an actor not up by then is reported: the cluster may have no room for it
POLL_S = 1.0  # an actor's long poll returns after this even without news
CALLS_PER_ACTOR = 8  # its concurrent calls: the long poll, commands, describes
DIED = "the Ray actor training this run stopped unexpectedly ({}); retry to train this run again"
_init_lock = threading.Lock()  # ray.init is global to the process
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its messages
_RAISED = re.compile(r"^(\w+\.)*\w*(Error|Exception): ")


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when trainings go to Ray: REGVIZ_RAY set (and not 0/off), or RAY_ADDRESS set."""
    return address_from_env(environ) is not None


def address_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """Where to train: "local", a cluster's address (or "auto"), or None when Ray is not configured."""
    env = os.environ if environ is None else environ
    setting = env.get(ENV_RAY, "").strip()
    if setting.lower() in OFF:
        return None
    return setting or env.get(ENV_ADDRESS, "").strip() or None


class TrainingActor:
    """One Ray actor (made by RayWorkers with ray.remote): the worker of `worker.py`, driven by calls."""

    def __init__(self, threads: int, warm_dataset: str):
        from regviz.runs import worker  # tensorflow once, before the first call is answered

        self._events: queue.Queue = queue.Queue()
        self._worker = worker.start(self._events.put, warm_dataset, threads)  # pools sized to its CPUs

    def ready(self) -> dict:
        """Where the actor runs and TensorFlow's (intra-op, inter-op) threads, once it is imported."""
        import ray
        import tensorflow as tf

        threads = tf.config.threading  # 0 would mean "as many as the machine has"
        pools = [threads.get_intra_op_parallelism_threads(), threads.get_inter_op_parallelism_threads()]
        return {"node": ray.util.get_node_ip_address(), "pid": os.getpid(), "threads": pools}

    def command(self, message: dict) -> None:
        """A worker command: train, cancel, describe or forget (see worker.py)."""
        self._worker.command(message)

    def events(self, wait: float) -> list[dict]:
        """The worker's events since the last call, waiting up to `wait` seconds for one."""
        try:
            events = [self._events.get(timeout=wait)]
        except queue.Empty:
            return []
        while not self._events.empty():  # the one reader: what is there stays there
            events.append(self._events.get_nowait())
        return events


class _ActorLink:
    """A Ray actor as the pool's link: commands held until it is made, its events long-polled."""

    def __init__(self, workers: RayWorkers, index: int, reports: Reporter):
        self._workers, self._reports = workers, reports
        self._handle = None
        self._held: list[dict] = []  # commands for an actor not made yet
        self._lock = threading.Lock()
        self._stopped = False
        self._failed: str | None = None  # the cluster could not be reached: the line to end with
        self._thread = thread(self._serve, f"regviz-ray-actor-{index}")

    def send(self, command: dict) -> None:
        """Call the actor's command, or hold it until the actor is made (a cancel drops a held train)."""
        with self._lock:
            if self._handle is not None:
                self._handle.command.remote(command)  # if it died just now, the reader ends the job
                return
            train = [c for c in self._held if c["op"] == "train" and c.get("job") == command.get("job")]
            if command["op"] != "cancel" or not train:
                self._held.append(command)
                return
            self._held.remove(train[0])  # never sent: it ends here and now (not under the pool's lock)
        thread(self._reports.event, "regviz-ray-ended", {"ev": "end", "job": command["job"], "error": None})

    def kill(self) -> None:
        """Kill the actor; its reader reports the end."""
        with self._lock:
            handle = self._handle
        if handle is not None:
            _kill(handle)

    def fail(self, problem: str) -> None:
        """The cluster cannot be reached: end with this line (unless the actor is made already)."""
        with self._workers._news:
            self._failed = problem
            self._workers._news.notify_all()

    def stop(self, timeout: float | None) -> bool:
        """Kill the actor (made or still unborn) and wait for its reader to end."""
        with self._workers._news:
            self._stopped = True
            self._workers._news.notify_all()
        self.kill()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _serve(self) -> None:
        """Wait for the cluster, make the actor, wait for it to be up, then pass its events on."""
        import ray

        with self._workers._news:
            self._workers._news.wait_for(self._may_go)
        if self._failed or self._stopped:
            return self._reports.ended(self._failed or "stopped", self._failed)
        try:
            handle = self._make()
            where = self._wait_ready(handle)
            if where is not None:
                self._reports.event({"ev": "ready", "where": where})
            while not self._stopped:
                for event in ray.get(handle.events.remote(POLL_S), timeout=POLL_S + self._workers.stuck):
                    self._reports.event(event)
            cause = "stopped"
        except ray.exceptions.GetTimeoutError:
            cause = f"no answer in {POLL_S + self._workers.stuck:.0f} s"
        except Exception as e:  # RayActorError mostly; anything else from Ray ends the actor's jobs too
            cause = _cause(e)
        self.kill()  # dead already, or not answering: either way, it frees its CPUs
        self._reports.ended(cause)

    def _may_go(self) -> bool:
        return self._workers._connected.is_set() or bool(self._failed) or self._stopped

    def _make(self):
        w = self._workers
        options = dict(num_cpus=w.cpus, max_concurrency=CALLS_PER_ACTOR, runtime_env=_actor_env())
        handle = _actor_class().options(**options).remote(w.cpus, w.warm_dataset)
        with self._lock:
            self._handle, held, self._held = handle, self._held, []
            for command in held:
                handle.command.remote(command)
        return handle

    def _wait_ready(self, handle) -> str | None:
        import ray

        waiting, timeout = handle.ready.remote(), self._workers.start_timeout
        while not self._stopped:
            try:
                return str(ray.get(waiting, timeout=timeout))
            except ray.exceptions.GetTimeoutError:  # not placed yet, or slow: say so, and keep waiting
                line = (
                    f"no Ray training actor started in {timeout:.0f} s: "
                    f"the cluster may have no {self._workers.cpus} free CPU(s) for one"
                )  # fmt: skip
                self._reports.event({"ev": "problem", "line": line})
        return None


class RayWorkers(WorkerPool):
    """Trains on Ray: REGVIZ_MAX_TRAININGS actors (default 1), not the cluster's CPUs, so that the slots
    are known before the cluster answers; each trains up to REGVIZ_RUNS_PER_WORKER jobs (default 4)
    on CPUS_PER_ACTOR of the cluster's CPUs (fewer if it has fewer). A dead actor is replaced."""

    what = "Ray training actor"
    died = DIED
    cannot_start = "the Ray training actors cannot start: {}"

    def __init__(
        self, address: str | None = None, actors: int | None = None, per_actor: int | None = None,
        cpus: int = CPUS_PER_ACTOR, warm_dataset: str = "imdb", grace: float = CANCEL_GRACE_S,
        stuck: float = STUCK_S, connect_timeout: float = CONNECT_S, start_timeout: float = START_S,
    ):  # fmt: skip
        self.address = address or address_from_env() or LOCAL
        check_count("cpus", cpus)
        super().__init__(actors, per_actor, ("actors", "per_actor"), grace, stuck)
        self.cpus, self.warm_dataset, self.start_timeout = cpus, warm_dataset, start_timeout
        self._connected = threading.Event()
        self._news = threading.Condition()  # connected, could not connect, or a link stopped
        self._unreachable = False  # the last try to connect failed: no actor is made until one succeeds
        self._owns_ray = False  # True when our ray.init made this process's connection
        self._closing = threading.Event()
        self._spawn_all()
        thread(self._connect, "regviz-ray-connect")
        later(connect_timeout, self._connect_timed_out, connect_timeout)

    def _open(self, index: int, reports: Reporter) -> _ActorLink:
        return _ActorLink(self, index, reports)

    def _may_open(self) -> bool:
        return not self._unreachable

    def close(self, timeout: float | None = None) -> bool:
        """End every job, kill the actors, and disconnect from Ray if this executor connected."""
        stopped = super().close(timeout)
        if self._owns_ray and stopped:
            import ray

            ray.shutdown()  # before the connecting thread ends: a local Ray's processes stop in order
        self._closing.set()
        return stopped

    def handles(self) -> list:
        """The Ray actor handles now up (for tests and tools: `ray.kill(handle)`)."""
        with self._lock:
            return [p.link._handle for p in self._places if p.link is not None and p.ready]

    # connecting

    def _connect(self) -> None:
        try:
            self._owns_ray = _init_ray(self.address)
            import ray

            cpus = max(1, min(self.cpus, int(ray.cluster_resources().get("CPU", 1))))
        except Exception as e:  # whatever ray.init raises, the page shows one line
            log.warning("cannot connect to Ray at %s", self.address, exc_info=True)
            self._connect_failed(one_line(e))
            return
        log.info("connected to Ray at %s: %d actor(s) of %d CPU(s)", self.address, len(self._places), cpus)
        self.cpus = cpus
        with self._lock:
            self._unreachable = False
            if self._problem and self._problem.startswith("cannot reach"):
                self._problem = None
            self._spawn_all()
        with self._news:
            self._connected.set()
            self._news.notify_all()
        if self._owns_ray:
            # the processes of a Ray started here die with the thread that started them (Linux's
            # parent-death signal is per thread): this one lives until close
            self._closing.wait()

    def _connect_timed_out(self, seconds: float) -> None:
        if not self._connected.is_set() and not self._closed:
            self._connect_failed(f"no answer in {seconds:.0f} s", retry=False)  # ray.init may still finish

    def _connect_failed(self, why: str, retry: bool = True) -> None:
        problem = f"cannot reach the Ray cluster at {self.address}: {why}"
        with self._lock:
            self._unreachable = True
            self._set_problem(problem)
            links = [p.link for p in self._places if p.link is not None]
        for link in links:
            link.fail(problem)  # each ends its jobs with the line
        if retry and not self._closed:
            later(self._pause(), thread, self._connect, "regviz-ray-connect")


@functools.cache
def _actor_class():
    """TrainingActor as a Ray actor class, made once (the class travels by reference: regviz.runs...)."""
    import ray

    return ray.remote(TrainingActor)


def _init_ray(address: str) -> bool:
    """Connect this process to Ray (or start a local instance); False when it was connected already."""
    import ray

    with _init_lock:
        if ray.is_initialized():
            return False
        # the package goes with the job: Ray uploads a local directory only when it is given here
        runtime_env = {"py_modules": [os.path.dirname(regviz.__file__)]}
        if address == LOCAL:  # "local" also tells Ray to start one even when RAY_ADDRESS is set
            ray.init(
                address=LOCAL, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE,
                runtime_env=runtime_env,
            )  # fmt: skip
        else:
            ray.init(address=address, runtime_env=runtime_env)
        return True


def _actor_env() -> dict:
    """An actor's variables, on top of the job's runtime env: the settings the data needs."""
    env_vars = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if os.environ.get(data.IMDB_PATH_ENV):
        env_vars[data.IMDB_PATH_ENV] = os.environ[data.IMDB_PATH_ENV]
    return {"env_vars": env_vars}


def _cause(exc: BaseException) -> str:
    """Why an actor died, in a few words: Ray's messages are paragraphs."""
    lines = [_ANSI.sub("", line).strip() for line in str(exc).splitlines()]
    raised = [line for line in lines if _RAISED.match(line)]  # an error in the actor's own code
    if raised:
        return shorten(raised[-1], 160)
    text = " ".join(" ".join(lines).split())
    if "because " in text:
        return shorten(text.split("because ", 1)[1].split(". ", 1)[0].rstrip("."), 160)
    return shorten(text or type(exc).__name__, 160)


def _kill(handle) -> None:
    import ray

    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # already gone, or Ray is shutting down
        log.debug("could not kill a Ray actor", exc_info=True)
