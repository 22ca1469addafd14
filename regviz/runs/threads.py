"""Training in threads of this process, for the command line, tests and small tools: the pool's third
transport, each thread a `worker.Worker` reached by plain calls.

The app does not use it: training beside a Streamlit server in one interpreter is slow (see
`local.py`). A thread cannot be stopped from outside, so a cancelled training ends at its next record
and holds its slot until then (no grace, no stuck timer).
"""

from __future__ import annotations

import threading

from regviz.runs.pool import Reporter, WorkerPool, thread
from regviz.runs.worker import Train, Worker


class _Thread:
    """A Worker on a thread of this process as the pool's link: commands are calls, events callbacks."""

    def __init__(self, index: int, train: Train, reports: Reporter):
        self._reports = reports
        # a job given is begun, as a thread trains one: a cancel reaches it at its training's next record
        self._worker = Worker(self._emit, train, end_waiting=False)
        self._thread = thread(self._serve, f"regviz-train-{index}")

    def send(self, command: dict) -> None:
        """Hand the command to the worker; a thread reads this process's own uploads: none are sent."""
        if command["op"] != "forget":
            self._worker.command({k: v for k, v in command.items() if k != "upload"})

    def kill(self) -> None:
        """A thread cannot be killed; never asked, as there is no stuck timer."""

    def stop(self, timeout: float | None) -> bool:
        """Cancel its jobs and wait for the thread to end (at its training's next record)."""
        self._worker.stop()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _serve(self) -> None:
        self._reports.event({"ev": "ready", "where": "a thread of this process"})
        self._worker.serve_jobs(None)
        self._reports.ended("stopped")

    def _emit(self, event: dict) -> None:
        # a thread trains alone: a record's own seconds are its compute (the job's stays None)
        event.pop("compute", None)
        if threading.current_thread() is self._thread:
            self._reports.event(event)
        else:  # an end said inside a call to send: passed on apart, as a training thread would
            thread(self._reports.event, "regviz-train-ended", event)


class ThreadExecutor(WorkerPool):
    """Runs `train(settings, cancel)` generators on `slots` threads, one job each."""

    what = "training thread"

    def __init__(self, train: Train, slots: int = 1):
        super().__init__(slots, 1, ("slots", "per_place"), grace=None, stuck=None)
        self._train = train
        self._spawn_all()

    def _open(self, index: int, reports: Reporter) -> _Thread:
        return _Thread(index, self._train, reports)
