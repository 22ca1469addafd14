"""Training on a Ray cluster: the same seam as the local workers, with Ray actors as the workers.

Used when configured (`configured()`): `RAY_ADDRESS` names a running cluster (`ray start --head`), or
`REGVIZ_RAY` is `local` (a Ray instance started in this process), `auto` or an address; `REGVIZ_RAY=0`
turns it off whatever RAY_ADDRESS says. Nothing imports `ray` unless so configured: this module
imports it only inside the functions that talk to the cluster.

Each actor is what a local worker process is: it sizes TensorFlow's thread pools to its CPU share,
imports TensorFlow once, warms up, loads each dataset once, and trains up to REGVIZ_RUNS_PER_WORKER
jobs at once, an epoch at a time, fairly between sessions (`worker.Worker` schedules them here too).
The server side long-polls each actor for its events, so records arrive as each epoch ends, in
order. Ray ships this `regviz` package to the actors with the job (`py_modules` in `ray.init`; if
something else connected this process to Ray first, regviz must be importable on the cluster): the
machines need the same Python, TensorFlow and Keras, and the data (`REGVIZ_IMDB_PATH` is passed on).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping

import regviz
from regviz import data
from regviz.data import DatasetInfo, DatasetUnavailable
from regviz.records import EpochRecord
from regviz.runs.local import (
    CANCEL_GRACE_S,
    DESCRIBE_TIMEOUT_S,
    RESTART_PAUSES_S,
    STUCK_S,
    WorkersUnavailable,
    runs_per_worker_from_env,
    upload_for,
)
from regviz.runs.manager import max_trainings_from_env
from regviz.runs.seam import Job, one_line, shorten

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
    """One Ray actor (made by RayWorkers with ray.remote): a worker process driven by calls, not pipes."""

    def __init__(self, threads: int, warm_dataset: str):
        _set_tensorflow_threads(threads)
        import regviz.training.loop  # noqa: F401  tensorflow once, before the first call is answered
        from regviz.runs.worker import Worker

        self._events = _Events()
        self._worker = Worker(self._events)
        self._lock = threading.Lock()
        self._given: set[int] = set()  # jobs handed to the worker
        self._gone: set[int] = set()  # jobs cancelled before their train command came
        threading.Thread(target=self._worker.serve_jobs, args=(warm_dataset,), daemon=True).start()

    def ready(self) -> dict:
        """Where the actor runs and TensorFlow's (intra-op, inter-op) threads, once it is imported."""
        import ray
        import tensorflow as tf

        threads = tf.config.threading  # 0 would mean "as many as the machine has"
        pools = [threads.get_intra_op_parallelism_threads(), threads.get_inter_op_parallelism_threads()]
        return {"node": ray.util.get_node_ip_address(), "pid": os.getpid(), "threads": pools}

    def command(self, message: dict) -> None:
        """A worker command: train, cancel or forget (see worker.py)."""
        if message.get("upload"):  # held even when its train comes too late: the next one lacks it
            from regviz import data

            data.add_upload(base64.b64decode(message.pop("upload")))
        job = message.get("job")
        with self._lock:
            # a threaded actor may run two calls out of order: a cancel can overtake its train
            early = message.get("op") == "cancel" and job not in self._given
            late = message.get("op") == "train" and job in self._gone
            if early:
                self._gone.add(job)
            elif message.get("op") == "train":
                self._given.add(job)
        if late:
            self._events.write(json.dumps({"ev": "end", "job": job, "error": None}))
        elif not early:
            self._worker.command(message)

    def events(self, after: int, wait: float) -> list[dict]:
        """The events from number `after` on, waiting up to `wait` seconds for one."""
        return self._events.read(after, wait)

    def describe(self, dataset: str) -> tuple[dict | None, str | None, bool]:
        """(info, None, False), or (None, the one-line error, whether the dataset is unavailable)."""
        try:
            return data.describe(data.load(dataset)).to_dict(), None, False
        except DatasetUnavailable as e:
            return None, str(e), True
        except Exception as e:  # any other failure is still one line for the page
            return None, one_line(e), False


class _Events:
    """The worker's event lines (worker.Worker writes here), kept until the server has read them."""

    def __init__(self):
        self._events: list[dict] = []
        self._first = 0  # number of the first event kept
        self._changed = threading.Condition()

    def write(self, line: str) -> None:
        """Keep one event line."""
        event = json.loads(line)
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def read(self, after: int, wait: float) -> list[dict]:
        """Forget the events before `after` (read already), then return those from it on."""
        with self._changed:
            del self._events[: max(0, after - self._first)]
            self._first = max(self._first, after)
            self._changed.wait_for(lambda: self._events, wait)
            return list(self._events)


def _set_tensorflow_threads(threads: int) -> None:
    """Size both TensorFlow pools to the actor's CPUs: by default each is as big as the machine."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


class _Actor:
    """One actor place: its handle (None until made), the jobs it trains, commands held until made."""

    def __init__(self, index: int):
        self.index = index
        self.handle = None
        self.ready = False
        self.failed = False  # could not start: takes no jobs until tried again
        self.jobs: dict[int, Job] = {}
        self.released: set[int] = set()  # cancelled jobs given up on while the actor still computes them
        self.held: list[dict] = []  # commands for an actor not made yet
        self.uploads: set[str] = set()  # uploaded files sent to its actor
        self.read = 0  # events read so far


class RayWorkers:
    """Trains on Ray: REGVIZ_MAX_TRAININGS actors (default 1), not the cluster's CPUs, so that the slots
    are known before the cluster answers; each trains up to REGVIZ_RUNS_PER_WORKER jobs (default 4)
    on CPUS_PER_ACTOR of the cluster's CPUs (fewer if it has fewer). A dead actor is replaced."""

    def __init__(
        self, address: str | None = None, actors: int | None = None, per_actor: int | None = None,
        cpus: int = CPUS_PER_ACTOR, warm_dataset: str = "imdb", grace: float = CANCEL_GRACE_S,
        stuck: float = STUCK_S, connect_timeout: float = CONNECT_S, start_timeout: float = START_S,
    ):  # fmt: skip
        self.address = address or address_from_env() or LOCAL
        self.actors = max_trainings_from_env() if actors is None else actors
        self.per_actor = runs_per_worker_from_env() if per_actor is None else per_actor
        for name, value in (("actors", self.actors), ("per_actor", self.per_actor), ("cpus", cpus)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: an integer >= 1")
        self.slots = self.actors * self.per_actor
        self.cpus, self.warm_dataset = cpus, warm_dataset
        self.grace, self.stuck, self.start_timeout = grace, stuck, start_timeout
        self._lock = threading.RLock()
        self._places = [_Actor(i) for i in range(self.actors)]
        self._connected = threading.Event()
        self._news = threading.Condition(self._lock)  # connected, or could not connect
        self._owns_ray = False  # True when our ray.init made this process's connection
        self._failures = 0
        self._problem: str | None = None
        self._closed = False
        self._closing = threading.Event()
        self._readers: list[threading.Thread] = []  # one per actor made: close waits for them
        _thread(self._connect, "regviz-ray-connect")
        _later(connect_timeout, self._connect_timed_out, connect_timeout)

    # the seam

    def start(self, job: Job) -> None:
        """Give the job to an actor with room (one still starting takes it as soon as it is up)."""
        with self._lock:
            place = self._free_place()
            if place is not None:
                place.jobs[job.id] = job
                self._send(place, op="train", job=job.id, owner=job.owner, priority=job.priority,
                           settings=job.settings.as_dict(),
                           **upload_for(place.uploads, job.settings.dataset))  # fmt: skip
        if place is None:
            job.end(self._problem or "no Ray training actor is running")

    def cancel(self, job: Job) -> None:
        """Ask the actor to stop the job; give its slot up anyway after the grace time."""
        with self._lock:
            place = next((p for p in self._places if p.jobs.get(job.id) is job), None)
            if place is None:
                return
            if place.handle is None:  # never sent: it ends here and now
                place.held = [c for c in place.held if c.get("job") != job.id]
                del place.jobs[job.id]
            else:
                self._send(place, op="cancel", job=job.id)
        if place.handle is None:
            job.end(None)
        else:
            _later(self.grace, self._release, place, job)

    def forget(self, dataset: str) -> None:
        """An uploaded file's session ended: the actors that hold it drop it."""
        with self._lock:
            for place in self._places:
                if dataset in place.uploads:
                    place.uploads.discard(dataset)
                    self._send(place, op="forget", dataset=dataset)

    def describe(self, dataset: str, timeout: float | None = DESCRIBE_TIMEOUT_S) -> DatasetInfo:
        """Ask an actor to load and describe the dataset; raises DatasetUnavailable or WorkersUnavailable."""
        import ray

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._news:  # a cluster that cannot be reached answers at once, with its problem
            self._news.wait_for(lambda: self._connected.is_set() or self._problem or self._closed, timeout)
        handle = self._any_handle()
        if handle is None:
            raise WorkersUnavailable(self._problem or "no Ray training actor is running")
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            info, error, unavailable = ray.get(handle.describe.remote(dataset), timeout=left)
        except ray.exceptions.GetTimeoutError:
            raise WorkersUnavailable(f"the Ray training actor did not describe {dataset!r} in time") from None
        except ray.exceptions.RayError as e:
            raise WorkersUnavailable(f"the Ray training actor stopped before answering ({_cause(e)})") from e
        if info is None:
            raise (DatasetUnavailable if unavailable else WorkersUnavailable)(error or "unknown error")
        return DatasetInfo(**info)

    def problem(self) -> str | None:
        """The one-line reason trainings cannot start: the cluster cannot be reached, or no actor starts."""
        with self._lock:
            return self._problem

    def close(self, timeout: float | None = None) -> bool:
        """End every job, kill the actors, and disconnect from Ray if this executor connected."""
        with self._lock:
            self._closed = True
            handles = [p.handle for p in self._places if p.handle is not None]
            jobs = [job for p in self._places for job in p.jobs.values()]
            for place in self._places:
                place.jobs, place.held = {}, []
        for job in jobs:
            job.end(None)
        self._kill(handles)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in [t for t in self._readers if t is not threading.current_thread()]:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        stopped = not any(t.is_alive() for t in self._readers)
        if self._owns_ray and stopped:
            import ray

            ray.shutdown()  # before the connecting thread ends: a local Ray's processes stop in order
        self._closing.set()
        return stopped

    def handles(self) -> list:
        """The Ray actor handles now up (for tests and tools: `ray.kill(handle)`)."""
        with self._lock:
            return [p.handle for p in self._places if p.handle is not None and p.ready]

    # connecting and starting actors

    def _connect(self) -> None:
        try:
            self._owns_ray = _init_ray(self.address)
            import ray

            cpus = max(1, min(self.cpus, int(ray.cluster_resources().get("CPU", 1))))
        except Exception as e:  # whatever ray.init raises, the page shows one line
            log.warning("cannot connect to Ray at %s", self.address, exc_info=True)
            self._connect_failed(one_line(e))
            return
        log.info("connected to Ray at %s: %d actor(s) of %d CPU(s)", self.address, self.actors, cpus)
        self.cpus = cpus
        with self._lock:
            if self._problem and self._problem.startswith("cannot reach"):
                self._problem = None
            for place in self._places:
                self._spawn(place)
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
        with self._lock:
            problem = f"cannot reach the Ray cluster at {self.address}: {why}"
            if problem != self._problem:
                log.error("%s", problem)
            self._problem = problem
            jobs = [job for p in self._places for job in p.jobs.values()]
            for place in self._places:
                place.jobs, place.held, place.failed = {}, [], True
            self._failures += 1
            self._news.notify_all()
        for job in jobs:
            job.end(problem)
        if retry and not self._closed:
            _later(self._pause(), _thread, self._connect, "regviz-ray-connect")

    def _spawn(self, place: _Actor) -> None:
        """Make the place's actor (with the lock held) and start reading its events."""
        if self._closed:
            return
        options = dict(num_cpus=self.cpus, max_concurrency=CALLS_PER_ACTOR, runtime_env=_actor_env())
        try:
            place.handle = _actor_class().options(**options).remote(self.cpus, self.warm_dataset)
            place.uploads = set()  # a new actor holds no uploaded file yet
        except Exception as e:  # a bad runtime_env, or Ray going away: tried again after a pause
            log.warning("cannot make a Ray training actor", exc_info=True)
            jobs, place.jobs, place.held = list(place.jobs.values()), {}, []
            why = self._start_failed(place, one_line(e))
            _thread(lambda: [job.end(why) for job in jobs], "regviz-ray-failed")  # never under our lock
            return
        place.ready, place.failed, place.read, place.released = False, False, 0, set()
        for command in place.held:
            place.handle.command.remote(command)
        place.held = []
        reader = _thread(self._serve, f"regviz-ray-actor-{place.index}", place, place.handle)
        self._readers = [t for t in self._readers if t.is_alive()] + [reader]

    def _serve(self, place: _Actor, handle) -> None:
        """Wait for the actor to be up, then pass its events on until it dies or we close."""
        import ray

        try:
            self._wait_ready(place, handle)
            while not self._closed:
                events = ray.get(handle.events.remote(place.read, POLL_S), timeout=POLL_S + self.stuck)
                place.read += len(events)
                for event in events:
                    self._handle(place, event)
        except ray.exceptions.GetTimeoutError:
            self._died(place, handle, f"no answer in {POLL_S + self.stuck:.0f} s")
        except Exception as e:  # RayActorError mostly; anything else from Ray ends the actor's jobs too
            self._died(place, handle, _cause(e))

    def _wait_ready(self, place: _Actor, handle) -> None:
        import ray

        waiting, where = handle.ready.remote(), None
        while not self._closed and where is None:
            try:
                where = ray.get(waiting, timeout=self.start_timeout)
            except ray.exceptions.GetTimeoutError:  # not placed yet, or slow: say so, and keep waiting
                self._set_problem(
                    f"no Ray training actor started in {self.start_timeout:.0f} s: "
                    f"the cluster may have no {self.cpus} free CPU(s) for one"
                )  # fmt: skip
        if where is None:
            return  # closed meanwhile
        with self._lock:
            place.ready, self._failures = True, 0
            if self._problem and not self._problem.startswith("cannot reach"):
                self._problem = None
        log.info("Ray training actor %d ready: %s", place.index, where)

    def _handle(self, place: _Actor, event: dict) -> None:
        kind = event.get("ev")
        if kind == "record":
            job = place.jobs.get(event["job"])
            if job is not None:
                job.record(EpochRecord.from_dict(event["record"]))
        elif kind == "end":
            with self._lock:
                job = place.jobs.pop(event["job"], None)
                place.released.discard(event["job"])
            if job is not None:
                job.end(event.get("error"))

    def _died(self, place: _Actor, handle, cause: str) -> None:
        """The actor is gone: end its jobs in one line each, and make its successor."""
        self._kill([handle])  # dead already, or not answering: either way, it frees its CPUs
        with self._lock:
            if self._closed or place.handle is not handle:
                return
            jobs, place.jobs = list(place.jobs.values()), {}
            started, place.handle = place.ready, None
            if started:
                log.warning("Ray training actor %d stopped unexpectedly (%s)", place.index, cause)
                self._spawn(place)
                why = DIED.format(cause)
            else:
                why = self._start_failed(place, cause)
        for job in jobs:
            job.end(why)

    def _start_failed(self, place: _Actor, cause: str) -> str:
        place.failed = True
        self._failures += 1
        self._set_problem(f"the Ray training actors cannot start: {cause}")
        self._news.notify_all()
        _later(self._pause(), self._respawn, place)
        return self._problem

    def _respawn(self, place: _Actor) -> None:
        with self._lock:
            if place.handle is None and place.failed and self._connected.is_set():
                self._spawn(place)

    def _set_problem(self, problem: str) -> None:
        with self._lock:
            if problem != self._problem:
                log.error("%s", problem)  # once, not at every retry
            self._problem = problem

    def _pause(self) -> float:
        return RESTART_PAUSES_S[min(max(self._failures, 1), len(RESTART_PAUSES_S)) - 1]

    # cancelled jobs that do not stop

    def _release(self, place: _Actor, job: Job) -> None:
        """A cancelled job still computing after the grace time gives its slot up; the actor is
        replaced if it has not dropped the job after `stuck` seconds."""
        with self._lock:
            if place.jobs.get(job.id) is not job:
                return  # it stopped in time
            del place.jobs[job.id]
            place.released.add(job.id)
            handle = place.handle
        log.info("run %s still stopping after %.1f s; its slot is free", job.settings.key(), self.grace)
        job.end(None)
        _later(self.stuck, self._unstick, place, handle, job.id)

    def _unstick(self, place: _Actor, handle, job_id: int) -> None:
        with self._lock:
            stuck = place.handle is handle and job_id in place.released and not self._closed
        if stuck:
            log.warning("Ray training actor %d is stuck in a cancelled run; replacing it", place.index)
            self._kill([handle])  # its reader sees the death, ends its other jobs and makes a new one

    # helpers, with the lock held where they touch places

    def _send(self, place: _Actor, **command) -> None:
        if place.handle is None:
            place.held.append(command)
        else:
            place.handle.command.remote(command)  # if the actor died just now, its reader ends the job

    def _free_place(self) -> _Actor | None:
        open_ = [p for p in self._places if not p.failed and len(p.jobs) < self.per_actor]
        return min(open_, key=lambda p: (not p.ready, len(p.jobs) + len(p.released))) if open_ else None

    def _any_handle(self):
        with self._lock:
            made = [p for p in self._places if p.handle is not None]
            return min(made, key=lambda p: (not p.ready, len(p.jobs))).handle if made else None

    @staticmethod
    def _kill(handles: list) -> None:
        import ray

        for handle in handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # already gone, or Ray is shutting down
                log.debug("could not kill a Ray actor", exc_info=True)


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


def _thread(target, name: str, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True, name=name)
    thread.start()
    return thread


def _later(seconds: float, function, *args) -> None:
    timer = threading.Timer(seconds, function, args=args)
    timer.daemon = True
    timer.start()
