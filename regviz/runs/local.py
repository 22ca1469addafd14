"""Training in long-lived worker processes on this machine: the app's executor.

Why processes: Streamlit serves every tab from one interpreter and, after each script run (every
0.5 s poll of every tab), calls `keras.backend.clear_session()` and `gc.collect(2)`. With training
in a thread beside it, the book's 16-16 run took 24-32 s instead of 1.7 s. Here the server process
never imports TensorFlow: each worker (`worker.py`) imports it once, loads the data once, warms up
in the background, and pumps epochs of up to REGVIZ_RUNS_PER_WORKER jobs at once.

This file is only the transport: a pipe to each process, one JSON line per command and per event.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import weakref
from collections import deque
from pathlib import Path

from regviz.runs.pool import CANCEL_GRACE_S, STUCK_S, Reporter, WorkerPool, WorkersUnavailable, thread
from regviz.runs.seam import shorten

__all__ = ["LocalWorkers", "WorkersUnavailable"]
log = logging.getLogger(__name__)

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # where `import regviz` finds this checkout
STDERR_DRAIN_S = 10.0  # a dead worker's last stderr lines are awaited this long (its pipe closed: at once)
_all: weakref.WeakSet[LocalWorkers] = weakref.WeakSet()


class _Pipe:
    """A worker process and its pipes: commands go to its stdin, events come from its stdout."""

    def __init__(self, index: int, command: list[str], env: dict[str, str], reports: Reporter):
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        self.pid, self.index, self._reports = self.proc.pid, index, reports
        self.tail: deque[str] = deque(maxlen=20)  # its last stderr lines, for a failed start
        self.up = False  # it said it is ready
        self._write = threading.Lock()
        log.info("training worker %d starting (pid %d)", index, self.pid)
        thread(self._read, f"regviz-worker-{index}")
        self._errors = thread(self._read_errors, f"regviz-worker-{index}-stderr")

    def send(self, command: dict) -> None:
        """Write one command line (a worker gone meanwhile is reported by the reader)."""
        try:
            with self._write:
                self.proc.stdin.write(json.dumps(command) + "\n")
                self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def kill(self) -> None:
        """Stop the process at once (SIGKILL); its reader sees the end."""
        try:
            self.proc.kill()
        except OSError:
            pass

    def stop(self, timeout: float | None) -> bool:
        """Close its stdin (the worker exits when it does); kill it at the deadline."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        return True

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("worker %d wrote a line that is not an event: %r", self.index, line[:200])
                continue
            if event.get("ev") == "ready":
                self.up, event["where"] = True, f"pid {self.pid}"
            self._reports.event(event)
        how = _exit_text(self.proc.wait())
        if not self.up:  # its last error line may still be in the pipe: read it before saying why
            self._errors.join(STDERR_DRAIN_S)
        self._reports.ended(how if self.up else self._start_error(how))

    def _read_errors(self) -> None:
        for line in self.proc.stderr:
            self.tail.append(line.rstrip("\n"))
            sys.stderr.write(line)  # the worker's log lines belong in the server's log

    def _start_error(self, how: str) -> str:
        """Why a worker that never came up failed: its last error line, and how it ended."""
        lines = [line for line in self.tail if line.strip()]
        last = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
        return shorten(f"{last} ({how})" if last else how, 300)


class LocalWorkers(WorkerPool):
    """`workers` worker processes, each training up to `per_worker` jobs, restarted when one dies."""

    def __init__(
        self, workers: int | None = None, per_worker: int | None = None, warm_dataset: str = "imdb",
        env=None, grace: float = CANCEL_GRACE_S, stuck: float = STUCK_S,
    ):  # fmt: skip
        super().__init__(workers, per_worker, ("workers", "per_worker"), grace, stuck)
        self._env = _worker_env(len(self._places), warm_dataset, env)
        self._spawn_all()
        _all.add(self)

    def _open(self, index: int, reports: Reporter) -> _Pipe:
        return _Pipe(index, [sys.executable, "-m", "regviz.runs.worker"], self._env, reports)

    def pids(self) -> list[int]:
        """Process ids of the workers now running."""
        with self._lock:
            return [p.link.pid for p in self._places if p.link is not None and p.link.proc.poll() is None]


def _worker_env(workers: int, warm_dataset: str, extra) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["REGVIZ_WORKER_WARM_DATASET"] = warm_dataset
    env.setdefault("REGVIZ_WORKER_NICE", "10")  # training yields to the page server (worker.py)
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
