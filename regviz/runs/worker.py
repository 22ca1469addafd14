"""A training worker process: `python -m regviz.runs.worker`, started and stopped by `local.py`.

It imports TensorFlow once, loads each dataset once, warms up in the background, then trains the jobs
it is given, several at a time, one epoch at a time: the next epoch goes to the job whose owner (the
session it trains for) has had the least training time so far, so a long run cannot make a short
one of another visitor wait for its end. Jobs of one owner run first come, first served.

One JSON command per line on stdin, one JSON event per line on a private copy of stdout (anything
else printed goes to stderr, so a stray print cannot break the protocol):

    in:  {"op": "train", "job": 7, "owner": "tab", "priority": 0, "settings": {...}}
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
import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field


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
    owner: str
    priority: int
    arrival: int
    settings: dict
    cancel: threading.Event = field(default_factory=threading.Event)
    epochs: object = None
    ended: bool = False  # its end event was sent


class Worker:
    """The worker's state: the event channel, its jobs, and the training time each owner has had."""

    def __init__(self, out):
        self._out, self._out_lock = out, threading.Lock()
        self._new: queue.Queue = queue.Queue()
        self._jobs: dict[int, _Active] = {}
        self._running: _Active | None = None  # the job whose epoch is being computed now
        self._used: dict[str, float] = {}  # owner -> seconds of training time had
        self._arrivals = 0
        self._lock = threading.Lock()

    def send(self, **event) -> None:
        """Write one event line."""
        line = json.dumps(event)
        with self._out_lock:
            self._out.write(line + "\n")

    def command(self, message: dict) -> None:
        """Act on one command line from the server."""
        from regviz import data

        op = message.get("op")
        if message.get("upload"):  # an uploaded file, sent with the first command that needs it
            data.add_upload(base64.b64decode(message["upload"]))
        if op == "forget":
            data.forget_upload(message.get("dataset", ""))
        elif op == "train":
            with self._lock:
                self._arrivals += 1
                active = _Active(
                    message["job"], message.get("owner", ""), message.get("priority", 0), self._arrivals,
                    message["settings"],
                )  # fmt: skip
                self._jobs[active.job] = active
            self._new.put(active)
        elif op == "cancel":
            self._cancel(message["job"])
        elif op == "describe":
            threading.Thread(target=self._describe, args=(message,), daemon=True).start()

    def _cancel(self, job: int) -> None:
        with self._lock:
            active = self._jobs.get(job)
            if active is None:
                return
            active.cancel.set()
            waiting = active is not self._running  # not computing now: it can end at once
        if waiting:
            self._end(active, None)

    def _end(self, active: _Active, error: str | None) -> None:
        """Send the job's end once."""
        with self._lock:
            if active.ended:
                return
            active.ended = True
        self.send(ev="end", job=active.job, error=error)

    # the training thread

    def serve_jobs(self, warm_dataset: str | None) -> None:
        """Warm up, then give epochs to the jobs in turn, forever."""
        from regviz.training import warmup

        if warm_dataset:
            try:
                warmup.warm(warm_dataset)
            except Exception:  # a failed warm-up only costs the first run its start-up time
                traceback.print_exc(file=sys.stderr)
        active: list[_Active] = []
        while True:
            self._take_new(active, block=not active)
            for done in [a for a in active if a.cancel.is_set() or a.ended]:
                self._close(done)
                active.remove(done)
            if active:
                self._turn(min(active, key=self._rank), active)

    def _take_new(self, active: list[_Active], block: bool) -> None:
        try:
            item = self._new.get(block=block)
        except queue.Empty:
            return
        while True:
            # a newcomer starts level with the owners already training, not years behind them
            floor = min((self._used.get(a.owner, 0.0) for a in active), default=0.0)
            self._used[item.owner] = max(self._used.get(item.owner, floor), floor)
            active.append(item)
            try:
                item = self._new.get_nowait()
            except queue.Empty:
                return

    def _rank(self, a: _Active) -> tuple:
        return (a.priority, self._used.get(a.owner, 0.0), a.arrival)

    def _turn(self, a: _Active, active: list[_Active]) -> None:
        """One epoch of job a (the first call also builds and traces its model)."""
        with self._lock:
            self._running = a
        start = time.perf_counter()
        try:
            if a.epochs is None:
                a.epochs = self._start(a)
            record = next(a.epochs)
            if not a.cancel.is_set():
                self.send(ev="record", job=a.job, record=record.to_dict())
        except StopIteration:
            self._finish(a, None, active)
        except Exception as exc:  # the page shows it as one line; the full traceback goes to the log
            from regviz.data import DatasetUnavailable
            from regviz.runs.seam import one_line

            if isinstance(exc, DatasetUnavailable):  # expected (an upload its session forgot): one line
                print(f"regviz worker: run not trained: {one_line(exc)}", file=sys.stderr, flush=True)
            else:
                traceback.print_exc(file=sys.stderr)
            self._finish(a, one_line(exc), active)
        finally:
            with self._lock:
                self._running = None
            self._used[a.owner] = self._used.get(a.owner, 0.0) + time.perf_counter() - start

    def _start(self, a: _Active):
        from regviz import data
        from regviz.settings import Settings
        from regviz.training.loop import train

        settings = Settings(**a.settings)
        return iter(train(settings, a.cancel, dataset=data.load(settings.dataset)))

    def _finish(self, a: _Active, error: str | None, active: list[_Active]) -> None:
        self._end(a, error)
        self._close(a)
        active.remove(a)

    def _close(self, a: _Active) -> None:
        close = getattr(a.epochs, "close", None)
        if close is not None:
            close()  # gives the trainer back to the pool now
        self._end(a, None)  # a cancelled job that was computing ends here
        with self._lock:
            self._jobs.pop(a.job, None)
            gone = not any(b.owner == a.owner for b in self._jobs.values())
        if gone:
            self._used.pop(a.owner, None)

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
        self.send(**answer)


def main() -> int:
    """Serve commands from stdin until it closes."""
    out = _protocol_out()
    # tensorflow is imported here, before "ready": a worker that cannot import it fails to start
    import regviz.training.loop  # noqa: F401

    worker = Worker(out)
    warm = os.environ.get("REGVIZ_WORKER_WARM_DATASET", "")
    threading.Thread(target=worker.serve_jobs, args=(warm,), daemon=True, name="train").start()
    worker.send(ev="ready", pid=os.getpid())
    for line in sys.stdin:
        if line.strip():
            worker.command(json.loads(line))
    os._exit(0)  # stdin closed: the server is gone; the training thread must not keep us alive


if __name__ == "__main__":
    sys.exit(main())
