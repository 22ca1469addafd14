"""Training in long-lived worker processes on this machine: the app's executor.

Why processes: Streamlit serves every tab from one interpreter and, after each script run (every
0.5 s poll of every tab), calls `keras.backend.clear_session()` and `gc.collect(2)`. With training
in a thread beside it, the book's 16-16 run took 24-32 s instead of 1.7 s. Here the server process
never imports TensorFlow: each worker (`worker.py`) imports it once, loads the data once, warms up
in the background, and trains one run at a time.

Each worker trains up to RUNS_PER_WORKER jobs at once, an epoch at a time, fairly between the
sessions they are for (`worker.py`). A cancelled job ends at once when it is not computing; one that
is stops within a chunk of an epoch. If it has not within CANCEL_GRACE_S (a first trace cannot be
interrupted), its slot is released anyway; a worker still stuck in it after STUCK_S is stopped and
replaced, as is a worker that dies. One that cannot start is reported once, as one line, and tried
again after a pause.
"""

from __future__ import annotations

import atexit
import base64
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from regviz import data, problems
from regviz.data import DatasetInfo, DatasetUnavailable
from regviz.records import EpochRecord
from regviz.runs.manager import max_trainings_from_env
from regviz.runs.seam import Job, shorten

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 0.6  # a cancelled job still computing after this no longer holds its slot
STUCK_S = 20.0  # a worker that has not stopped a cancelled job after this is killed and replaced
RUNS_PER_WORKER = 4  # jobs a worker interleaves; a 512-unit trainer holds about 70 MB
ENV_RUNS_PER_WORKER = "REGVIZ_RUNS_PER_WORKER"
DESCRIBE_TIMEOUT_S = 180.0  # a worker's first answer waits for tensorflow and the data to load
RESTART_PAUSES_S = (1.0, 5.0, 30.0, 60.0)  # after 1, 2, 3, 4+ failed starts in a row
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # where `import regviz` finds this checkout
_all: weakref.WeakSet[LocalWorkers] = weakref.WeakSet()


class WorkersUnavailable(RuntimeError):
    """No training worker is running; the message is the one line the page shows."""


class _Worker:
    """One worker process, its pipes, and the job it trains (at most one)."""

    def __init__(self, index: int, command: list[str], env: dict[str, str]):
        self.index = index
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        self.pid = self.proc.pid
        self.ready = False
        self.stopping = False  # set when we stop it: its end is no news
        self.jobs: dict[int, Job] = {}  # the jobs it trains, by id
        self.released: set[int] = set()  # cancelled jobs given up on while the worker still computes them
        self.asked: set[int] = set()  # describe requests waiting for this worker's answer
        self.tail: deque[str] = deque(maxlen=20)  # its last stderr lines, for a failed start
        self.uploads: set[str] = set()  # uploaded files sent to it
        self._write = threading.Lock()

    def send(self, **command) -> bool:
        """Write one command line; False when the worker is gone."""
        try:
            with self._write:
                self.proc.stdin.write(json.dumps(command) + "\n")
                self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def kill(self) -> None:
        """Stop the process at once (SIGKILL); its reader thread sees the end."""
        self.stopping = True
        try:
            self.proc.kill()
        except OSError:
            pass


class LocalWorkers:
    """`workers` worker processes, each training up to `per_worker` jobs, restarted when one dies."""

    def __init__(
        self, workers: int | None = None, per_worker: int | None = None, warm_dataset: str = "imdb",
        env=None, grace: float = CANCEL_GRACE_S, stuck: float = STUCK_S,
    ):  # fmt: skip
        self.workers = max_trainings_from_env() if workers is None else workers
        self.per_worker = runs_per_worker_from_env() if per_worker is None else per_worker
        for name, value in (("workers", self.workers), ("per_worker", self.per_worker)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: an integer >= 1")
        self.slots = self.workers * self.per_worker
        self.grace, self.stuck = grace, stuck
        self._env = _worker_env(self.workers, warm_dataset, env)
        self._command = [sys.executable, "-m", "regviz.runs.worker"]
        self._lock = threading.RLock()
        self._workers: list[_Worker | None] = [None] * self.workers
        self._failures = 0  # failed starts in a row
        self._problem: str | None = None
        self._answers: dict[int, tuple[threading.Event, list]] = {}
        self._requests = itertools.count(1)
        self._closed = False
        for index in range(self.workers):
            self._spawn(index)
        _all.add(self)

    # the seam

    def start(self, job: Job) -> None:
        """Give the job to a free worker (one still starting takes it as soon as it is up)."""
        with self._lock:
            worker = self._free_worker()
            if worker is not None:
                worker.jobs[job.id] = job
        if worker is None:
            job.end(self._problem or "no training worker is running")
            return
        command = dict(job=job.id, owner=job.owner, priority=job.priority, settings=job.settings.as_dict())
        worker.send(op="train", **command, **upload_for(worker.uploads, job.settings.dataset))
        # if it died just now, its reader ends the job

    def cancel(self, job: Job) -> None:
        """Ask the worker to stop the job; stop the worker itself if it has not within the grace time."""
        with self._lock:
            worker = self._holding(job)
        if worker is None:
            return
        worker.send(op="cancel", job=job.id)
        _later(self.grace, self._release, worker, job)

    def forget(self, dataset: str) -> None:
        """An uploaded file's session ended: the workers that hold it drop it."""
        with self._lock:
            holding = [w for w in self._workers if w is not None and dataset in w.uploads]
        for worker in holding:
            worker.uploads.discard(dataset)
            worker.send(op="forget", dataset=dataset)

    def describe(self, dataset: str, timeout: float | None = DESCRIBE_TIMEOUT_S) -> DatasetInfo:
        """Ask a worker to load and describe the dataset; raises DatasetUnavailable or WorkersUnavailable."""
        request = next(self._requests)
        answer: tuple[threading.Event, list] = (threading.Event(), [])
        with self._lock:
            worker = self._any_worker()
            if worker is None:
                raise WorkersUnavailable(self._problem or "no training worker is running")
            self._answers[request] = answer
            worker.asked.add(request)
        worker.send(op="describe", req=request, dataset=dataset, **upload_for(worker.uploads, dataset))
        if not answer[0].wait(timeout):
            with self._lock:
                self._answers.pop(request, None)
            raise WorkersUnavailable(f"the training worker did not describe {dataset!r} in {timeout:.0f} s")
        info, error, unavailable = answer[1]
        if info is None:
            raise (DatasetUnavailable if unavailable else WorkersUnavailable)(error or "unknown error")
        return DatasetInfo(**info)

    def problem(self) -> str | None:
        """The one-line reason workers cannot start, while none could."""
        with self._lock:
            return self._problem

    def close(self, timeout: float | None = None) -> bool:
        """Stop every worker (closing its stdin ends it); kill those still alive at the deadline."""
        with self._lock:
            self._closed = True
            workers = [w for w in self._workers if w is not None]
        for worker in workers:
            worker.stopping = True
            try:
                worker.proc.stdin.close()
            except OSError:
                pass
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in workers:
            try:
                worker.proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.proc.wait()
        return True

    def pids(self) -> list[int]:
        """Process ids of the workers now running."""
        with self._lock:
            return [w.pid for w in self._workers if w is not None and w.proc.poll() is None]

    # workers coming and going

    def _spawn(self, index: int) -> None:
        if self._closed:
            return
        try:
            worker = _Worker(index, self._command, self._env)
        except OSError as e:
            self._start_failed(index, f"cannot start {self._command[0]} ({e.strerror or e})")
            return
        self._workers[index] = worker
        log.info("training worker %d starting (pid %d)", index, worker.pid)
        threading.Thread(
            target=self._read, args=(worker,), daemon=True, name=f"regviz-worker-{index}"
        ).start()
        threading.Thread(target=self._read_errors, args=(worker,), daemon=True).start()

    def _read(self, worker: _Worker) -> None:
        for line in worker.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("worker %d wrote a line that is not an event: %r", worker.index, line[:200])
                continue
            self._handle(worker, event)
        self._ended(worker, worker.proc.wait())

    def _read_errors(self, worker: _Worker) -> None:
        for line in worker.proc.stderr:
            worker.tail.append(line.rstrip("\n"))
            sys.stderr.write(line)  # the worker's log lines belong in the server's log

    def _handle(self, worker: _Worker, event: dict) -> None:
        kind = event.get("ev")
        if kind == "ready":
            with self._lock:
                worker.ready, self._failures = True, 0
                if self._problem:
                    log.info("training workers start again")
                self._problem = None
            log.info("training worker %d ready in %.1f s", worker.index, time.monotonic() - worker.started)
        elif kind == "record":
            job = worker.jobs.get(event["job"])
            if job is not None:
                job.record(EpochRecord.from_dict(event["record"]))
        elif kind == "end":
            with self._lock:
                job = worker.jobs.pop(event["job"], None)
                worker.released.discard(event["job"])
            if job is not None:
                job.end(event.get("error"))
        elif kind == "described":
            answer = event.get("info"), event.get("error"), bool(event.get("unavailable"))
            self._answer(worker, event["req"], answer)

    def _answer(self, worker: _Worker, request: int, answer: tuple) -> None:
        with self._lock:
            worker.asked.discard(request)
            waiting = self._answers.pop(request, None)
        if waiting is not None:
            waiting[1][:] = answer
            waiting[0].set()

    def _ended(self, worker: _Worker, code: int) -> None:
        """A worker's process is gone: end its job, answer its requests, and start its successor."""
        with self._lock:
            current = self._workers[worker.index] is worker
            jobs, worker.jobs = list(worker.jobs.values()), {}
            asked, worker.asked = set(worker.asked), set()
            how = _exit_text(code)
            if current and not worker.stopping:
                if worker.ready:
                    log.warning(
                        "training worker %d (pid %d) stopped unexpectedly (%s)", worker.index, worker.pid, how
                    )
                    self._spawn(worker.index)
                else:
                    self._start_failed(worker.index, self._start_error(worker, how))
            problem = self._problem
        for request in asked:
            self._answer(worker, request, (None, "the training worker stopped before it answered", False))
        for job in jobs:
            if worker.ready or not problem:
                job.end(f"the training process stopped unexpectedly ({how}); retry to train this run again")
            else:
                job.end(problem)

    def _start_failed(self, index: int, why: str) -> None:
        self._workers[index] = None
        self._failures += 1
        problem = f"the training workers cannot start: {why}"
        if problem != self._problem:
            log.error("%s", problem)  # once, not at every retry
        self._problem = problem
        _later(RESTART_PAUSES_S[min(self._failures, len(RESTART_PAUSES_S)) - 1], self._respawn, index)

    def _respawn(self, index: int) -> None:
        with self._lock:
            if self._workers[index] is None:
                self._spawn(index)

    @staticmethod
    def _start_error(worker: _Worker, how: str) -> str:
        lines = [line for line in worker.tail if line.strip()]
        last = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
        return shorten(f"{last} ({how})" if last else how, 300)

    def _release(self, worker: _Worker, job: Job) -> None:
        """A cancelled job still computing after the grace time gives its slot up; the worker finishes
        that piece of work and drops it (or is replaced if it has not after `stuck` seconds)."""
        with self._lock:
            if worker.jobs.get(job.id) is not job:
                return  # it stopped in time
            del worker.jobs[job.id]
            worker.released.add(job.id)
        log.info("run %s still stopping after %.1f s; its slot is free", job.settings.key(), self.grace)
        job.end(None)
        _later(self.stuck, self._unstick, worker, job.id)

    def _unstick(self, worker: _Worker, job_id: int) -> None:
        with self._lock:
            if job_id not in worker.released or worker.stopping:
                return
            log.warning("training worker %d is stuck in a cancelled run; replacing it", worker.index)
            worker.kill()
            self._spawn(worker.index)
        # its other jobs end, with the one-line failure, when its reader sees the end of the process

    # choosing workers, with the lock held

    def _free_worker(self) -> _Worker | None:
        alive = [
            w for w in self._workers if w is not None and not w.stopping and len(w.jobs) < self.per_worker
        ]
        return min(alive, key=lambda w: (not w.ready, len(w.jobs) + len(w.released))) if alive else None

    def _any_worker(self) -> _Worker | None:
        alive = [w for w in self._workers if w is not None and not w.stopping]
        return min(alive, key=lambda w: (not w.ready, len(w.jobs))) if alive else None

    def _holding(self, job: Job) -> _Worker | None:
        return next((w for w in self._workers if w is not None and w.jobs.get(job.id) is job), None)


def upload_for(sent: set[str], dataset: str) -> dict:
    """{"upload": the file's payload} for a command on an uploaded file the worker has not been sent
    (it travels with the command, so no ordering can separate them), else {}."""
    if dataset in sent or not problems.is_upload(dataset):
        return {}
    payload = data.upload_payload(dataset)
    if payload is None:
        return {}  # not held here either: the worker says it is unavailable
    sent.add(dataset)
    return {"upload": base64.b64encode(payload).decode("ascii")}


def runs_per_worker_from_env(environ=None) -> int:
    """REGVIZ_RUNS_PER_WORKER (an integer >= 1) if set, else RUNS_PER_WORKER."""
    raw = (os.environ if environ is None else environ).get(ENV_RUNS_PER_WORKER, "").strip()
    if not raw:
        return RUNS_PER_WORKER
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{ENV_RUNS_PER_WORKER}={raw!r} is not allowed: an integer >= 1")
    return int(raw)


def _later(seconds: float, function, *args) -> None:
    timer = threading.Timer(seconds, function, args=args)
    timer.daemon = True
    timer.start()


def _worker_env(workers: int, warm_dataset: str, extra) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["REGVIZ_WORKER_WARM_DATASET"] = warm_dataset
    if workers > 1:  # workers share the cores: without this each would start a pool as big as the machine
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return env


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@atexit.register
def _stop_all() -> None:
    for workers in list(_all):
        workers.close(timeout=5)
