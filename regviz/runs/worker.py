"""A training worker process: `python -m regviz.runs.worker`, started and stopped by `local.py`.

It imports TensorFlow once, loads each dataset once, warms up in the background, then pumps epochs of
the jobs it is given, in the order given, one epoch per turn. It decides nothing about fairness: the
run manager (`manager.py`) does, and says so with each job: its lane ("owner", the session whose turn
it takes) and its priority. A job waits while a job given before it is in its lane or a job is more
urgent; the others take turns round the order they were given in.

One JSON command per line on stdin, one JSON event per line on a private copy of stdout (anything
else printed goes to stderr, so a stray print cannot break the protocol); in a Ray actor the same
commands are calls and the same events go through a queue (`ray_cluster.py`):

    in:  {"op": "train", "job": 7, "owner": "tab", "priority": 0, "settings": {...}}  (settings.to_wire)
         {"op": "cancel", "job": 7}   {"op": "describe", "req": 3, "dataset": "imdb"}
         {"op": "forget", "dataset": "csv-..."}  (an uploaded file's session ended)
         a train or describe on an uploaded file the worker lacks carries it: "upload": base64 bytes
    out: {"ev": "ready", "pid": 123}   {"ev": "record", "job": 7, "record": {...}}
         {"ev": "end", "job": 7, "error": null}
         {"ev": "described", "req": 3, "info": {...}, "error": null, "unavailable": false}

A cancelled job that is not training this moment ends at once; one that is stops at its next check
(the epoch loop checks between chunks of an epoch). The worker exits when stdin closes, so a server
that dies, however it dies, leaves no worker behind.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
Train = Callable[..., Iterator]  # (settings, cancel event) -> its epoch records, one per epoch


def train_here(settings, cancel: threading.Event | None = None) -> Iterator:
    """Train in this process: what every worker runs (the command line and tests call it too)."""
    from regviz import data
    from regviz.training.loop import train  # tensorflow: only where training happens in this process

    return train(settings, cancel, dataset=data.load(settings.dataset))


def _protocol_out():
    """A private line-buffered copy of stdout for events; fd 1 itself is pointed at stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


@dataclass(eq=False)
class _Active:
    """A job in this worker: its command, cancel event, epoch generator (made at its first turn)."""

    job: int
    owner: str  # its lane: jobs of one lane train one after another, in the order given
    priority: int
    given: int  # its place in the order given
    settings: dict
    cancel: threading.Event = field(default_factory=threading.Event)
    epochs: object = None
    ended: bool = False  # its end event was sent


class Worker:
    """The worker's state: the event channel, its jobs, and the job that had the last turn."""

    def __init__(self, emit, train: Train = train_here, end_waiting: bool = True):
        self._emit = emit  # takes one event (a dict): a line on the pipe, a Ray actor's queue, a pool's call
        self._train = train
        self._end_waiting = end_waiting  # False: a cancelled job ends only at its next turn
        self._jobs: dict[int, _Active] = {}  # in the order given
        self._gone: set[int] = set()  # cancelled before their train came (a Ray actor's calls may overtake)
        self._running: _Active | None = None  # the job whose epoch is being computed now
        self._last = 0  # the place in the order given of the job that had the last turn
        self._given = 0
        self._news = threading.Condition()  # a job came, or the worker stops
        self._stopped = False

    def command(self, message: dict) -> None:
        """Act on one command line from the server."""
        from regviz import data

        op = message.get("op")
        if message.get("upload"):  # an uploaded file, sent with the first command that needs it
            data.add_upload(base64.b64decode(message["upload"]))
        if op == "forget":
            data.forget_upload(message.get("dataset", ""))
        elif op == "train":
            self._take(message)
        elif op == "cancel":
            self._cancel(message["job"])
        elif op == "describe":
            threading.Thread(target=self._describe, args=(message,), daemon=True).start()

    def stop(self) -> None:
        """Cancel every job and end `serve_jobs` at its next check (a thread of this process ends so)."""
        with self._news:
            self._stopped = True
            for active in self._jobs.values():
                active.cancel.set()
            self._news.notify_all()

    def _take(self, message: dict) -> None:
        with self._news:
            self._given += 1
            active = _Active(
                message["job"], message.get("owner", ""), message.get("priority", 0), self._given,
                message["settings"],
            )  # fmt: skip
            late = active.job in self._gone
            if not late:
                self._jobs[active.job] = active
                self._news.notify_all()
        if late:
            self._end(active, None)

    def _cancel(self, job: int) -> None:
        with self._news:
            active = self._jobs.get(job)
            if active is None:
                self._gone.add(job)
                return
            active.cancel.set()
            waiting = self._end_waiting and active is not self._running  # not computing: ends at once
        if waiting:
            self._end(active, None)

    def _end(self, active: _Active, error: str | None) -> None:
        """Send the job's end once."""
        with self._news:
            if active.ended:
                return
            active.ended = True
        self._emit({"ev": "end", "job": active.job, "error": error})

    # the training thread

    def serve_jobs(self, warm_dataset: str | None) -> None:
        """Warm up, then pump epochs of the jobs in the order given, until stopped."""
        if warm_dataset:
            # imported only here: a thread of this process (threads.py) warms nothing, and must not
            # import tensorflow to serve a test's fake trainings (a stop waited for the import)
            from regviz.training import warmup

            try:
                warmup.warm(warm_dataset)
            except Exception:  # a failed warm-up only costs the first run its start-up time
                log.warning("warm-up failed", exc_info=True)
        while True:
            with self._news:
                self._news.wait_for(lambda: self._jobs or self._stopped)
                active = list(self._jobs.values())
            for done in [a for a in active if a.ended or (a.cancel.is_set() and a.epochs is not None)]:
                self._drop(done)  # a cancelled job that was computing ends here
                active.remove(done)
            if self._stopped:
                return
            if active:
                self._turn(self._next(active))

    def _next(self, active: list[_Active]) -> _Active:
        """The job whose turn it is: the next after the last one, round the order given, of those free
        to go (the first of each lane among the most urgent)."""
        urgent = min(a.priority for a in active)
        firsts: dict[str, _Active] = {}
        for a in sorted(active, key=lambda a: a.given):
            if a.priority == urgent:
                firsts.setdefault(a.owner, a)
        free = list(firsts.values())  # in the order given
        return next((a for a in free if a.given > self._last), free[0])

    def _turn(self, a: _Active) -> None:
        """One epoch of job a (the first call also builds and traces its model)."""
        from regviz.data import DatasetUnavailable
        from regviz.runs.seam import one_line
        from regviz.settings import from_wire

        with self._news:
            self._running, self._last = a, a.given
        try:
            if a.epochs is None:
                a.epochs = iter(self._train(from_wire(a.settings), a.cancel))
            began = time.perf_counter()
            record = next(a.epochs)
            own = time.perf_counter() - began  # this epoch's compute alone, not the other jobs' turns
            if not a.cancel.is_set():
                self._emit({"ev": "record", "job": a.job, "record": record.to_dict(), "compute": own})
        except StopIteration:
            self._drop(a)
        except DatasetUnavailable as exc:  # expected (an upload its session forgot): one line
            log.warning("run not trained: %s", one_line(exc))
            self._drop(a, one_line(exc))
        except Exception as exc:  # the page shows it as one line; the full traceback goes to the log
            log.warning("training raised", exc_info=True)
            self._drop(a, one_line(exc))
        finally:
            with self._news:
                self._running = None

    def _drop(self, a: _Active, error: str | None = None) -> None:
        """The job is over: its epochs closed (its trainer goes back to the pool now), its end sent once."""
        getattr(a.epochs, "close", lambda: None)()
        self._end(a, error)
        with self._news:
            self._jobs.pop(a.job, None)

    def _describe(self, message: dict) -> None:
        from regviz import data
        from regviz.runs.seam import one_line

        answer = {"ev": "described", "req": message["req"], "info": None, "error": None, "unavailable": False}
        try:
            answer["info"] = data.describe(data.load(message["dataset"])).to_dict()
        except data.DatasetUnavailable as e:
            answer.update(error=str(e), unavailable=True)
        except Exception as e:  # any other failure is still one line for the page
            answer["error"] = one_line(e)
        self._emit(answer)


def start(emit, warm_dataset: str, threads: int | None = None) -> Worker:
    """A Worker whose training thread is started, tensorflow imported first (its thread pools sized to
    `threads` if given): what a worker process and a Ray actor run."""
    import tensorflow as tf

    if threads:  # by default each pool is as big as the machine
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import regviz.training.loop  # noqa: F401  before "ready": a worker that cannot import it fails to start

    worker = Worker(emit)
    threading.Thread(target=worker.serve_jobs, args=(warm_dataset,), daemon=True, name="train").start()
    return worker


def _lower_priority() -> None:
    """REGVIZ_WORKER_NICE (local.py sets 10): training yields the CPU to the page server, so that on a
    small host a class's stored runs and page reruns are answered while runs train (bench/crowd.py, one
    core, 30 visitors: a stored run's answer took 1.5 s at the median and 12 s at p95 at equal priority,
    0.05 s and 0.64 s so). 0 keeps the server's priority."""
    raw = os.environ.get("REGVIZ_WORKER_NICE", "0").strip() or "0"
    try:
        nice = int(raw)
    except ValueError:
        log.warning("REGVIZ_WORKER_NICE=%r is not a whole number: the worker keeps its priority", raw)
        return
    if nice > 0:
        os.nice(min(nice, 19))


def main() -> int:
    """Serve commands from stdin until it closes."""
    out, lock = _protocol_out(), threading.Lock()
    _lower_priority()

    def emit(event: dict) -> None:
        line = json.dumps(event) + "\n"
        with lock:
            out.write(line)

    worker = start(emit, os.environ.get("REGVIZ_WORKER_WARM_DATASET", ""))
    emit({"ev": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if line.strip():
            worker.command(json.loads(line))
    os._exit(0)  # stdin closed: the server is gone; the training thread must not keep us alive


if __name__ == "__main__":
    sys.exit(main())
