"""Where settings meet data descriptions, training, costs and the store: what the app and the CLI call.

The app's service trains in worker processes (`runs/local.py`) or on Ray and never imports TensorFlow,
nor the training loop: the command line's in-process training is `runs/inprocess.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from regviz import data, problems
from regviz.data import DatasetInfo, DatasetUnavailable
from regviz.records import EpochRecord
from regviz.runs.costs import CostModel
from regviz.runs.manager import RunManager
from regviz.runs.seam import one_line
from regviz.settings import Settings
from regviz.store import RunStore, StoreError, open_store

if TYPE_CHECKING:
    from regviz.data.csvfile import Prepared
    from regviz.runs.pool import WorkerPool

log = logging.getLogger(__name__)
RETRY_DESCRIBE_S = 5.0  # after workers could not answer, ask again no sooner than this


def log_to_console(level: int = logging.INFO) -> None:
    """Show regviz's own log lines (runs started, cancelled, stored; workers; files moved aside) on stderr."""
    log = logging.getLogger("regviz")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(level)


class RunService:
    """Serves finished runs from the store, trains the others behind an executor, shares them by settings."""

    def __init__(
        self, store: RunStore | None = None, executor: WorkerPool | None = None, max_run_seconds=None
    ):
        self.store = store or open_store()
        if executor is None:
            from regviz.runs import ray_cluster  # reads the settings only: ray is imported when used

            if ray_cluster.configured():  # RAY_ADDRESS or REGVIZ_RAY: train on a Ray cluster
                executor = ray_cluster.RayWorkers()
            else:
                from regviz.runs.local import LocalWorkers  # worker processes: the app's executor

                executor = LocalWorkers()
        self.executor = executor
        self._infos: dict[str, DatasetInfo] = {}
        self._unavailable: dict[str, str] = {}
        self._asking: dict[str, float] = {}  # dataset -> when a background describe was started
        self._lock = threading.Lock()
        self._store_problem: str | None = None
        self._keep: dict[str, set[str]] = {}  # uploaded file -> sessions that want its results stored
        self.costs = CostModel(self.known_info, max_run_seconds)
        self.manager = RunManager(self.executor, self.lookup, self.save, self.costs)

    # datasets, described by whoever trains on them

    def dataset_info(self, name: str, wait: bool = True) -> DatasetInfo | None:
        """The dataset's description; raises DatasetUnavailable. With wait=False: None while being asked."""
        if problems.is_upload(name):  # held in this process, or not at all
            info = data.upload_info(name)
            if info is None:
                data.load(name)  # raises data.UploadMissing, the page's line
            return info
        known = self._known(name)
        if known is not None or not wait:
            if known is None:
                self._ask_in_background(name)
            return known
        return self._describe(name)

    def known_info(self, name: str) -> DatasetInfo | None:
        """The description if already known, else None (never waits, never raises)."""
        if problems.is_upload(name):
            return data.upload_info(name)
        with self._lock:
            return self._infos.get(name)

    def _known(self, name: str) -> DatasetInfo | None:
        with self._lock:
            if name in self._unavailable:
                raise DatasetUnavailable(self._unavailable[name])
            return self._infos.get(name)

    def _describe(self, name: str) -> DatasetInfo:
        try:
            info = self.executor.describe(name)
        except DatasetUnavailable as e:
            with self._lock:
                self._unavailable[name] = str(e)
            raise
        with self._lock:
            self._infos[name] = info
        return info

    def _ask_in_background(self, name: str) -> None:
        with self._lock:
            if time.monotonic() - self._asking.get(name, -RETRY_DESCRIBE_S) < RETRY_DESCRIBE_S:
                return
            self._asking[name] = time.monotonic()
        threading.Thread(target=self._ask, args=(name,), daemon=True, name="regviz-describe").start()

    def _ask(self, name: str) -> None:
        try:
            self._describe(name)
        except DatasetUnavailable:
            pass  # kept: the page shows it and switches to an offline dataset
        except Exception as e:  # workers not up: the page shows the executor's problem line
            log.warning("could not describe dataset %s: %s", name, one_line(e))
        with self._lock:
            if name in self._infos or name in self._unavailable:
                self._asking.pop(name, None)

    # uploaded files: held in memory while a session that uploaded them is open, never stored

    def add_upload(self, prepared: Prepared, session: str) -> None:
        """Hold a session's uploaded file: its runs can train (the workers are sent it with them)."""
        data.add_upload(prepared, holder=session)

    def keep_results(self, name: str, session: str, keep: bool) -> None:
        """Whether the runs of this session's uploaded file go to the store (their curves, never data)."""
        with self._lock:
            chosen = self._keep.setdefault(name, set())
            chosen.add(session) if keep else chosen.discard(session)

    def keeps(self, name: str) -> bool:
        """True when a session holding this uploaded file asked for its results to be kept."""
        with self._lock:
            return bool(self._keep.get(name))

    def drop_uploads(self, session: str) -> list[str]:
        """The session ended: the files only it held are forgotten here and by the workers."""
        gone = data.release_uploads(session)
        with self._lock:
            for chosen in self._keep.values():
                chosen.discard(session)
        for name in gone:
            self.executor.forget(name)
            log.info("uploaded data %s forgotten: its session ended", name)
        return gone

    # the store, keyed by the data's version

    def lookup(self, settings: Settings) -> list[EpochRecord] | None:
        """All records of a finished run with these settings on this data, or None."""
        if problems.is_upload(settings.dataset) and data.upload_info(settings.dataset) is None:
            return None  # a file no session holds any more: its training ends with the page's one line
        version = self._version(settings.dataset)
        return self._through_store(lambda: self.store.get(settings, version))

    def _version(self, name: str) -> str:
        """The data's version: known, or a book file's digest (a fresh server's first page need not
        wait for a worker to import TensorFlow and load the data), else asked of the workers."""
        known = self.known_info(name)
        version = known.version if known is not None else data.version_of(name)
        return version if version is not None else self.dataset_info(name).version

    def save(self, settings: Settings, records: list[EpochRecord]) -> None:
        """Keep a finished run for every later session (an uploaded file's only when asked to)."""
        if problems.is_upload(settings.dataset) and not self.keeps(settings.dataset):
            return
        version = self.dataset_info(settings.dataset).version
        self._through_store(lambda: self.store.put(settings, version, records))

    def store_problem(self) -> str | None:
        """The store's one-line error while its last use failed (a database gone away), else None."""
        with self._lock:
            return self._store_problem

    def _through_store(self, work):
        try:
            result = work()
        except StoreError as e:
            with self._lock:
                first, self._store_problem = self._store_problem is None, str(e)
            if first:  # info, not a warning: the page and the command line show the line themselves
                log.info("run store unavailable: %s", e)
            raise
        with self._lock:
            if self._store_problem is not None:
                log.info("run store available again")
            self._store_problem = None
        return result

    def close(self, timeout: float | None = None) -> bool:
        """Cancel every run and stop the executor."""
        return self.manager.shutdown(timeout)
