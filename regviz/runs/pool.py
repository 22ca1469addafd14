"""The worker pool behind the seam: slots, grace, the stuck timer, respawn, describe and close, once.

A pool holds `places` workers, each pumping up to `per_place` jobs. How a worker is reached is its
transport, a `Link`: a pipe to a local process (`local.py`), a Ray actor (`ray_cluster.py`) or a
thread of this process (`threads.py`). All speak the worker's protocol (`worker.py`): commands in,
events out. The pool decides which worker a job goes to; which job trains when is the run manager's
(`manager.py`): a worker pumps epochs of the jobs it is given in the order given (see `worker.Worker`).

A cancelled job ends at once when it is not computing; one that is stops within a chunk of an epoch.
If it has not within `grace` seconds (a first trace cannot be interrupted), its slot is released
anyway; a worker still stuck in it after `stuck` seconds is stopped and replaced, as is a worker that
dies. One that cannot start is reported once, as one line, and tried again after a pause.
"""

from __future__ import annotations

import base64
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from regviz import data, problems
from regviz.data import DatasetInfo, DatasetUnavailable
from regviz.records import EpochRecord
from regviz.runs.manager import max_trainings_from_env
from regviz.runs.seam import Job, check_count, count_from_env, deadline, one_line, time_left
from regviz.settings import to_wire

CANCEL_GRACE_S = 0.6  # a cancelled job still computing after this no longer holds its slot
STUCK_S = 20.0  # a worker that has not stopped a cancelled job after this is killed and replaced
RUNS_PER_WORKER = 4  # jobs a worker interleaves; a 512-unit trainer holds about 70 MB
ENV_RUNS_PER_WORKER = "REGVIZ_RUNS_PER_WORKER"
DESCRIBE_TIMEOUT_S = 180.0  # a worker's first answer waits for tensorflow and the data to load
RESTART_PAUSES_S = (1.0, 5.0, 30.0, 60.0)  # after 1, 2, 3, 4+ failed starts in a row


class WorkersUnavailable(RuntimeError):
    """No training worker is running; the message is the one line the page shows."""


class Link(Protocol):
    """One worker, however reached. Its own thread passes what the worker says to its `Reporter`: each
    event, then its end, once."""

    def send(self, command: dict) -> None: ...  # held until the worker is up if need be

    def kill(self) -> None: ...  # at once; the end is reported

    def stop(self, timeout: float | None) -> bool: ...  # politely, by force at the deadline; True if gone


class _Place:
    """One worker's place: its link (None while none runs), the jobs it trains, the files it was sent."""

    def __init__(self, index: int):
        self.index = index
        self.link: Link | None = None
        self.ready = False
        self.started = 0.0  # time.monotonic() when its worker was started
        self.stopping = False  # set when we stop its worker: its end is no news
        self.jobs: dict[int, Job] = {}
        self.released: set[int] = set()  # cancelled jobs given up on while the worker still computes them
        self.uploads: set[str] = set()  # uploaded files sent to its worker

    @property
    def up(self) -> bool:
        """Its worker runs and is not being stopped."""
        return self.link is not None and not self.stopping


class WorkerPool:
    """`places` workers of `per_place` jobs each over one transport (`_open`), replaced when one dies;
    places and per_place default to REGVIZ_MAX_TRAININGS and REGVIZ_RUNS_PER_WORKER."""

    what = "training worker"  # how log lines name a worker
    died = "the training process stopped unexpectedly ({}); retry to train this run again"
    cannot_start = "the training workers cannot start: {}"

    def __init__(self, places, per_place, names: tuple[str, str], grace: float, stuck: float):
        places = max_trainings_from_env() if places is None else places
        per_place = count_from_env(ENV_RUNS_PER_WORKER, RUNS_PER_WORKER) if per_place is None else per_place
        for name, value in zip(names, (places, per_place), strict=True):
            check_count(name, value)
        self.slots = places * per_place
        self.per_place, self.grace, self.stuck = per_place, grace, stuck
        self._log = logging.getLogger(type(self).__module__)  # a transport's log lines under its own name
        self._lock = threading.RLock()
        self._places = [_Place(i) for i in range(places)]
        self._failures = 0  # failed starts in a row
        self._problem: str | None = None
        self._answers: dict[int, tuple[threading.Event, list, _Place]] = {}  # describes asked
        self._requests = itertools.count(1)
        self._closed = False

    def _open(self, index: int, reports: Reporter) -> Link:
        """Start worker `index` (the transport's part); raises when it cannot be started at all."""
        raise NotImplementedError

    def _may_open(self) -> bool:
        """False while workers cannot be opened yet (Ray: not connected)."""
        return True

    # the seam

    def start(self, job: Job) -> None:
        """Give the job to a worker with room (one still starting takes it as soon as it is up)."""
        with self._lock:
            open_ = [p for p in self._places if p.up and len(p.jobs) < self.per_place]
            place = min(open_, key=lambda p: (not p.ready, len(p.jobs) + len(p.released)), default=None)
            if place is not None:
                place.jobs[job.id] = job
                command = dict(op="train", job=job.id, owner=job.owner, priority=job.priority)
                upload = upload_for(place.uploads, job.settings.dataset)
                place.link.send(dict(command, settings=to_wire(job.settings), **upload))
        if place is None:
            job.end(self._problem or f"no {self.what} is running")

    def cancel(self, job: Job) -> None:
        """Ask the worker to stop the job; give its slot up anyway after the grace time."""
        with self._lock:
            place = next((p for p in self._places if p.jobs.get(job.id) is job), None)
            if place is None:
                return
            place.link.send({"op": "cancel", "job": job.id})  # a worker gone meanwhile ends it anyway
        if self.grace is not None:  # None: the slot is held until the job ends (a thread's)
            later(self.grace, self._release, place, job)

    def forget(self, dataset: str) -> None:
        """An uploaded file's session ended: the workers that hold it drop it."""
        with self._lock:
            for place in self._places:
                if dataset in place.uploads:
                    place.uploads.discard(dataset)
                    place.link.send({"op": "forget", "dataset": dataset})

    def describe(self, dataset: str, timeout: float | None = DESCRIBE_TIMEOUT_S) -> DatasetInfo:
        """Ask a worker to load and describe the dataset; raises DatasetUnavailable or WorkersUnavailable."""
        request = next(self._requests)
        with self._lock:
            alive = [p for p in self._places if p.up]
            place = min(alive, key=lambda p: (not p.ready, len(p.jobs)), default=None)
            if place is None:
                raise WorkersUnavailable(self._problem or f"no {self.what} is running")
            answer = self._answers[request] = (threading.Event(), [], place)
            upload = upload_for(place.uploads, dataset)
            place.link.send(dict(op="describe", req=request, dataset=dataset, **upload))
        if not answer[0].wait(timeout):
            with self._lock:
                self._answers.pop(request, None)
            raise WorkersUnavailable(f"the {self.what} did not describe {dataset!r} in {timeout:.0f} s")
        info, error, unavailable = answer[1]
        if info is None:
            raise (DatasetUnavailable if unavailable else WorkersUnavailable)(error or "unknown error")
        return DatasetInfo(**info)

    def problem(self) -> str | None:
        """The one-line reason trainings cannot start, while they cannot."""
        with self._lock:
            return self._problem

    def close(self, timeout: float | None = None) -> bool:
        """End every job and stop every worker; True if all stopped in time."""
        with self._lock:
            self._closed = True
            links = [p.link for p in self._places if p.link is not None]
            jobs = [job for p in self._places for job in p.jobs.values()]
            for place in self._places:
                place.stopping, place.jobs = True, {}
        for job in jobs:
            job.end(None)
        until = deadline(timeout)
        return all([link.stop(time_left(until)) for link in links])

    # workers coming and going

    def _spawn_all(self) -> None:
        with self._lock:
            for place in self._places:
                if place.link is None:
                    self._spawn(place)

    def _spawn(self, place: _Place) -> None:
        if self._closed or not self._may_open():
            return
        reporter = Reporter(self, place)
        try:
            link = reporter.link = self._open(place.index, reporter)
        except Exception as e:  # no interpreter, a bad runtime env: tried again after a pause
            self._log.warning("cannot start a %s", self.what, exc_info=True)
            self._start_failed(place, one_line(e))
            return
        place.link, place.ready, place.stopping, place.uploads = link, False, False, set()
        place.started = time.monotonic()

    def _start_failed(self, place: _Place, why: str, problem: str | None = None) -> str:
        place.link = None
        self._failures += 1
        self._set_problem(problem or self.cannot_start.format(why))
        later(self._pause(), self._spawn_all)
        return self._problem

    def _pause(self) -> float:
        """Seconds before the next try: longer after each failed start in a row."""
        return RESTART_PAUSES_S[min(max(self._failures, 1), len(RESTART_PAUSES_S)) - 1]

    def _set_problem(self, problem: str) -> None:
        with self._lock:
            if problem != self._problem:
                self._log.error("%s", problem)  # once, not at every retry
            self._problem = problem

    # what the workers report, from their links' threads

    def _event(self, place: _Place, event: dict) -> None:
        kind = event.get("ev")
        if kind == "ready":
            with self._lock:
                place.ready, self._failures = True, 0
                if self._problem:
                    self._log.info("%ss start again", self.what)
                self._problem = None
            took = time.monotonic() - place.started
            self._log.info("%s %d ready in %.1f s (%s)", self.what, place.index, took, event.get("where", ""))
        elif kind == "problem":  # a worker slow to come up says why, and goes on trying
            self._set_problem(event["line"])
        elif kind == "record":
            job = place.jobs.get(event["job"])
            if job is not None:
                job.record(EpochRecord.from_dict(event["record"]), event.get("compute"))
        elif kind == "end":
            with self._lock:
                job = place.jobs.pop(event["job"], None)
                place.released.discard(event["job"])
            if job is not None:
                job.end(event.get("error"))
        elif kind == "described":
            self._answer(event["req"], (event["info"], event["error"], event["unavailable"]))

    def _answer(self, request: int, answer: tuple) -> None:
        with self._lock:
            waiting = self._answers.pop(request, None)
        if waiting is not None:
            waiting[1].extend(answer)
            waiting[0].set()

    def _ended(self, place: _Place, reporter: Reporter, cause: str, problem: str | None) -> None:
        """The worker is gone: its jobs end in one line each, and a successor is made (after a pause
        when it never came up)."""
        with self._lock:  # held by _spawn too: reporter.link is set by the time this reads it
            if place.link is None or place.link is not reporter.link:
                return  # replaced already
            jobs, place.jobs, place.released = list(place.jobs.values()), {}, set()
            asked = [request for request, (_, _, at) in self._answers.items() if at is place]
            place.link = None
            if place.stopping or self._closed:
                why = None
            elif place.ready:
                self._log.warning("%s %d stopped unexpectedly (%s)", self.what, place.index, cause)
                self._spawn(place)
                why = self.died.format(cause)
            else:
                why = self._start_failed(place, cause, problem)
        for request in asked:
            self._answer(request, (None, why or f"the {self.what} stopped before it answered", False))
        for job in jobs:
            job.end(why)

    # cancelled jobs that do not stop

    def _release(self, place: _Place, job: Job) -> None:
        """A cancelled job still computing after the grace time gives its slot up; the worker is
        replaced if it has not dropped the job after `stuck` seconds."""
        with self._lock:
            if place.jobs.get(job.id) is not job:
                return  # it stopped in time
            del place.jobs[job.id]
            place.released.add(job.id)
            link = place.link
        self._log.info("run %s still stopping after %.1f s; its slot is free", job.settings.key(), self.grace)
        job.end(None)
        later(self.stuck, self._unstick, place, link, job.id)

    def _unstick(self, place: _Place, link: Link, job_id: int) -> None:
        with self._lock:
            stuck = place.link is link and job_id in place.released and not self._closed
        if stuck:
            self._log.warning("%s %d is stuck in a cancelled run; replacing it", self.what, place.index)
            link.kill()  # its reader sees the end, ends its other jobs and a successor is made


class Reporter:
    """What a link tells its pool, bound to its place (and to the link, so a replaced link's news is
    ignored): `event` for each event of its worker, then `ended` once, with `cause` in a few words (for
    a worker that never came up, why), or `problem`, a whole line instead of `cannot_start`."""

    def __init__(self, pool: WorkerPool, place: _Place):
        self._pool, self._place = pool, place
        self.link: Link | None = None

    def event(self, event: dict) -> None:
        self._pool._event(self._place, event)

    def ended(self, cause: str, problem: str | None = None) -> None:
        self._pool._ended(self._place, self, cause, problem)


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


def later(seconds: float, function: Callable, *args) -> None:
    """Call function(*args) on a daemon timer thread after `seconds`."""
    timer = threading.Timer(seconds, function, args=args)
    timer.daemon = True
    timer.start()


def thread(target: Callable, name: str, *args) -> threading.Thread:
    """Run target(*args) on a started daemon thread."""
    started = threading.Thread(target=target, args=args, daemon=True, name=name)
    started.start()
    return started
