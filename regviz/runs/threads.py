"""An executor that trains in threads of this process: for the command line, tests and small tools.

The app does not use it: training beside a Streamlit server in one interpreter is slow (see
`local.py`). A thread cannot be stopped from outside, so a cancelled training ends at its next record.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator

from regviz import data
from regviz.data import DatasetInfo
from regviz.records import EpochRecord
from regviz.runs.seam import Job, check_count, one_line
from regviz.settings import Settings

log = logging.getLogger(__name__)

Train = Callable[[Settings, threading.Event], Iterator[EpochRecord]]


class ThreadExecutor:
    """Runs `train(settings, cancel)` generators on `slots` threads, started on first use."""

    def __init__(self, train: Train, slots: int = 1):
        check_count("slots", slots)
        self.slots = slots
        self._train = train
        self._jobs: deque[Job] = deque()
        self._work = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def start(self, job: Job) -> None:
        """Queue the job for the next free thread."""
        with self._work:
            if self._closed:
                raise RuntimeError("executor is closed")
            self._jobs.append(job)
            while len(self._threads) < self.slots:
                name = f"regviz-train-{len(self._threads)}"
                self._threads.append(threading.Thread(target=self._serve, name=name, daemon=True))
                self._threads[-1].start()
            self._work.notify()

    def cancel(self, job: Job) -> None:
        """Ask the training to stop; it ends at its next record (or at once if not yet begun)."""
        job.cancelled.set()

    def describe(self, dataset: str, timeout: float | None = None) -> DatasetInfo:
        """Load the dataset in this process and describe it."""
        return data.describe(data.load(dataset))

    def problem(self) -> None:
        """Threads always start."""

    def forget(self, dataset: str) -> None:
        """Nothing to do: threads read this process's uploads (`data.forget_upload` drops them)."""

    def close(self, timeout: float | None = None) -> bool:
        """Cancel queued and running jobs and wait for the threads."""
        with self._work:
            self._closed = True
            self._work.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)

    def _serve(self) -> None:
        while True:
            with self._work:
                self._work.wait_for(lambda: self._jobs or self._closed)
                if self._closed:
                    pending, self._jobs = list(self._jobs), deque()
                    for job in pending:
                        job.cancelled.set()
                        job.end(None)
                    return
                job = self._jobs.popleft()
            self._run(job)

    def _run(self, job: Job) -> None:
        error = None
        try:
            if not job.cancelled.is_set():
                self._consume(job)
        except data.DatasetUnavailable as exc:  # expected (an upload its session forgot): one line
            error = one_line(exc)
            log.warning("training %s not started: %s", job.settings.key(), error)
        except Exception as exc:
            log.warning("training %s raised", job.settings.key(), exc_info=True)
            error = one_line(exc)
        job.end(error)

    def _consume(self, job: Job) -> None:
        """Pass each record on as train yields it; stop at the first record after a cancel."""
        records = iter(self._train(job.settings, job.cancelled))
        try:
            for record in records:
                job.record(record)
                if job.cancelled.is_set():
                    break
        finally:
            getattr(records, "close", lambda: None)()  # a generator's cleanup now, not at garbage collection
