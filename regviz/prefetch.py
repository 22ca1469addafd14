"""Before class: `python -m regviz prefetch` trains the runs a class will ask for, into the store.

The neighbourhood: every book preset, every setting one slider stop away from a preset (the controls
a class moves: L2, L1, dropout, width, depth, training data), and the baseline of each, for the
datasets that can be loaded. Stored runs are skipped (it resumes where it stopped); a run is stored
in one transaction once all its epochs are in, so a run killed halfway leaves nothing behind.

The app does the same while nobody waits (`Around`): once a visitor's run is done, the runs one stop
from it go to the run manager at background priority, behind every visitor's run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from regviz import problems
from regviz import settings as settings_mod
from regviz.runs.manager import BACKGROUND
from regviz.settings import PRESETS, Settings, SettingsError

CONTROLS = ("l2", "l1", "dropout", "width", "depth", "train_fraction")  # what a class moves
DATASETS = ("imdb", "reuters", "boston")  # the book's; the chapter 4 presets go on the first one given
DROPOUT_STEP = 0.05  # the page's dropout slider (ui/common.py)
BAR = 30  # characters of the progress bar
log = logging.getLogger(__name__)


def neighbours(settings: Settings, name: str) -> list[Settings]:
    """The settings one stop of control `name` away, each way, as the page's slider offers them."""
    f = next(f for f in settings_mod.fields() if f.name == name)
    value, m = getattr(settings, name), f.metadata
    if m["steps"]:
        stops = sorted(set(m["steps"]) | {value})  # a preset between stops keeps its own value, as the page
        i = stops.index(value)
        values = [stops[j] for j in (i - 1, i + 1) if 0 <= j < len(stops)]
    elif m["kind"] is int:
        values = [v for v in (value - 1, value + 1) if m["lo"] <= v <= m["hi"]]
    else:  # rounded as the page's slider sends it: 0.45, not 0.45000000000000007
        values = [
            round(v, 2) for v in (value - DROPOUT_STEP, value + DROPOUT_STEP) if m["lo"] <= v <= m["hi"]
        ]
    return [settings.replace(**{name: v}) for v in values]


def presets(datasets: Iterable[str], names: Iterable[str] = PRESETS) -> list[Settings]:
    """The presets on these datasets: one that names a dataset goes on it (when given), the others on
    the first dataset given (the class's link)."""
    datasets = list(datasets)
    out = []
    for name in names:
        own = PRESETS[name].get("dataset")
        if own is None or own in datasets:
            out.append(Settings.for_dataset(datasets[0]).preset(name))
    return out


def neighbourhood(
    datasets: Iterable[str], names: Iterable[str] = PRESETS, epochs: int | None = None
) -> list[Settings]:
    """Every preset, every single-slider stop away from one, and their baselines, without repeats."""
    experiments: dict[Settings, None] = {}
    for preset in presets(datasets, names):
        preset = preset if epochs is None else preset.replace(epochs=epochs)
        for s in [preset, *(n for c in CONTROLS for n in neighbours(preset, c))]:
            experiments.setdefault(s)
            experiments.setdefault(s.baseline())
    return list(experiments)


def runs_of(experiments: Iterable[Settings]) -> list[Settings]:
    """What the store holds for them: one row per run, one per fold of a K-fold experiment."""
    return list(dict.fromkeys(fold for s in experiments for fold in s.fold_runs()))


def around(settings: Settings) -> list[Settings]:
    """Every setting one slider stop from these (the controls a class moves), each followed by its
    baseline where that differs; without repeats, and without these settings or their own baseline."""
    near = [n for c in CONTROLS for n in neighbours(settings, c)]
    out = dict.fromkeys(s for n in near for s in (n, n.baseline()))
    for own in (settings, settings.baseline()):
        out.pop(own, None)
    return list(out)


# ---- the app's background prefetch: the neighbourhood of what visitors look at ----------------------

WATCHER = "background/around"  # the name under which the app's manager holds these runs
MAX_UNFINISHED = 24  # background runs of neighbourhoods queued or training at once, app-wide
MAX_EPOCH_SECONDS = 0.5  # estimated seconds per epoch above which a neighbour is left to be asked for
REMEMBER = 512  # runs remembered as asked, and runs waiting to be submitted
CHECK_S = 1.0  # how often the thread looks whether a run it submitted has finished


class Around:
    """The app's background prefetch: the neighbourhood of each settings asked for goes to the run manager
    at background priority (it trains only while no visitor's run waits or trains), from one daemon
    thread; the newest neighbourhood first, at most `limit` unfinished at once, skipping what is stored
    or costly, each run asked once (of the last `remember`)."""

    def __init__(
        self, manager, estimate: Callable[[Settings], float | None], stored: Callable[[Settings], bool],
        limit: int = MAX_UNFINISHED, remember: int = REMEMBER, check_s: float = CHECK_S,
    ):  # fmt: skip
        self._manager, self._estimate, self._stored = manager, estimate, stored
        self._limit, self._remember, self._check_s = limit, remember, check_s
        self._lock = threading.Condition()
        self._pending: list[Settings] = []  # to submit, newest neighbourhood first
        self._asked: OrderedDict[Settings, None] = OrderedDict()
        self._runs: list = []  # what this thread submitted and has not seen finish
        self._fresh = False  # a new neighbourhood came: runs of older ones not started step back
        self._thread: threading.Thread | None = None
        self._closed = False

    def ask(self, settings: Settings) -> int:
        """Queue the neighbourhood of these settings ahead of older ones; returns at once (the store and
        the manager are asked from the thread). How many runs were new."""
        if problems.is_upload(settings.dataset):
            return 0  # a session's own file: its runs are not kept for others
        with self._lock:
            if self._closed:
                return 0
            new = [s for s in runs_of(around(settings)) if s not in self._asked]
            for s in reversed(new):  # the front of the neighbourhood is remembered longest, as it waits
                self._asked[s] = None
            while len(self._asked) > self._remember:
                self._asked.popitem(last=False)
            if new:
                self._pending[:0] = new
                del self._pending[self._remember :]
                self._fresh = True
                self._start()
                self._lock.notify_all()
        return len(new)

    def pending(self) -> list[Settings]:
        """The runs waiting to be submitted, in the order they will be."""
        with self._lock:
            return list(self._pending)

    def close(self, timeout: float | None = None) -> bool:
        """Submit nothing more (what was submitted stays with the manager); True once the thread ended."""
        with self._lock:
            self._closed, self._pending = True, []
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, daemon=True, name="regviz-around")
            self._thread.start()

    def _serve(self) -> None:
        """Submit while there is room; the thread ends when nothing is pending or unfinished."""
        while True:
            with self._lock:
                fresh, self._fresh = self._fresh, False
            try:
                self._step(fresh)
            except RuntimeError:  # the manager was shut down: nothing more to do
                with self._lock:
                    self._pending.clear()
                self._runs = []
            except Exception:  # one bad step loses its run, not the thread
                log.warning("background prefetch failed a step", exc_info=True)
            with self._lock:
                if self._closed or not (self._pending or self._runs or self._fresh):
                    self._thread = None
                    return
                self._lock.wait_for(lambda: self._fresh or self._closed, self._check_s)

    def _step(self, fresh: bool) -> None:
        live = [r for r in self._runs if not r.finished]
        if fresh:
            live = self._step_back(live)
        while len(live) < self._limit and (settings := self._next()) is not None:
            if self._wanted(settings):
                run = self._manager.watch(settings, WATCHER, BACKGROUND)
                live += [] if run.finished else [run]
        self._runs = live

    def _step_back(self, live: list) -> list:
        """Runs of older neighbourhoods not started yet leave the manager's queue, to be submitted again
        after the newest neighbourhood: the manager serves background runs first come, first served."""
        queued = [r for r in live if r.state == "queued"]
        if not queued:
            return live
        live = [r for r in live if r not in queued]
        self._manager.unwatch(WATCHER, keep=[r.settings for r in live])
        with self._lock:
            self._pending += [r.settings for r in queued if r.settings not in self._pending]
            del self._pending[self._remember :]
        return live

    def _next(self) -> Settings | None:
        with self._lock:
            return self._pending.pop(0) if self._pending else None

    def _wanted(self, settings: Settings) -> bool:
        """Not stored, and cheap enough per epoch to train for nobody yet (an unknown cost is not)."""
        try:
            if self._stored(settings):
                return False
            seconds = self._estimate(settings)
        except Exception:
            log.warning("background prefetch: could not judge %s", settings.key(), exc_info=True)
            return False
        return seconds is not None and seconds / settings.epochs <= MAX_EPOCH_SECONDS


# ---- training: here, or in worker processes ---------------------------------------------------------


def _trainer():
    # the one place that names the in-process trainer (the command line's): repoint it here
    from regviz.runs.inprocess import train_here

    return train_here


_stores: dict = {}


def _store(where: str | None):
    from regviz.store import open_store

    if where not in _stores:
        _stores[where] = open_store(where)
    return _stores[where]


def train_one(params: dict, version: str, where: str | None, deadline: float) -> tuple[str, float]:
    """Train one run unless it is stored, and store it once complete: ('stored' | 'trained' | 'cut',
    seconds). Training is cancelled at `deadline` (time.time()); a cut run is not stored."""
    settings = Settings(**params)
    store = _store(where)
    if store.has(settings, version):
        return "stored", 0.0
    cancel, start = threading.Event(), time.monotonic()
    timer = threading.Timer(max(0.0, deadline - time.time()), cancel.set)
    timer.daemon = True
    timer.start()
    try:
        records = list(_trainer()(settings, cancel))
    finally:
        timer.cancel()
    seconds = time.monotonic() - start
    if len(records) < settings.epochs:
        return "cut", seconds
    store.put(settings, version, records)  # one transaction: all epochs or none
    return "trained", seconds


@dataclass
class Progress:
    """Counts so far, and the estimate of what is left, shown as a bar on stderr."""

    total: int
    workers: int = 1
    counts: dict = field(default_factory=lambda: {"stored": 0, "trained": 0, "cut": 0, "failed": 0})
    trained_s: float = 0.0

    def add(self, outcome: str, seconds: float) -> None:
        self.counts[outcome] += 1
        self.trained_s += seconds if outcome == "trained" else 0.0

    @property
    def done(self) -> int:
        return self.counts["stored"] + self.counts["trained"]

    def estimate_s(self) -> float | None:
        """Seconds left at the mean time of the runs trained so far, spread over the workers."""
        if not self.counts["trained"]:
            return None
        left = self.total - self.done - self.counts["cut"] - self.counts["failed"]
        return self.trained_s / self.counts["trained"] * left / self.workers

    def line(self) -> str:
        filled = BAR * self.done // max(1, self.total)
        left = self.estimate_s()
        eta = "estimating" if left is None else f"about {_duration(left)} left"
        stored = f", {self.counts['stored']} already stored" if self.counts["stored"] else ""
        return f"prefetch [{'#' * filled}{'.' * (BAR - filled)}] {self.done}/{self.total} runs{stored}; {eta}"


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def available(datasets: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({dataset: data version} of those that load, {dataset: why not} of the others)."""
    from regviz import data

    versions, missing = {}, {}
    for name in datasets:
        try:
            versions[name] = data.describe(data.load(name)).version
        except data.DatasetUnavailable as e:
            missing[name] = str(e)
    return versions, missing


def prefetch(
    runs: list[Settings],
    versions: dict[str, str],
    where=None,
    workers: int = 1,
    budget_s: float | None = None,
    show=print,
) -> Progress:
    """Train every run not stored yet, `workers` at a time, none started after the budget and every one
    cut at its end; show(line) after each."""
    deadline = time.time() + (budget_s if budget_s is not None else 10 * 365 * 86400)
    progress = Progress(len(runs), workers)
    show(progress.line())
    jobs = ((r.as_dict(), versions[r.dataset], where, deadline) for r in runs)
    if workers == 1:
        for job in jobs:
            if time.time() >= deadline:
                break
            _count(lambda job=job: train_one(*job), progress, show)
        return progress
    spawn = multiprocessing.get_context("spawn")  # tensorflow's threads do not survive a fork
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        running: set = set()
        for job in jobs:
            if time.time() >= deadline:
                break
            running.add(pool.submit(train_one, *job))
            if len(running) >= workers:
                running = _collect(running, progress, show)
        while running:
            running = _collect(running, progress, show)
    return progress


def _collect(running: set, progress: Progress, show) -> set:
    done, rest = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
    for future in done:
        _count(future.result, progress, show)
    return rest


def _count(outcome, progress: Progress, show) -> None:
    try:
        progress.add(*outcome())
    except Exception as e:  # one run that failed does not stop the others
        if type(e).__name__ == "StoreError":
            raise  # every other run would fail the same way
        progress.add("failed", 0.0)
        show(f"prefetch: a run failed: {' '.join(str(e).split())[:200]}")
    show(progress.line())


# ---- the command line -------------------------------------------------------------------------------


def add_parser(sub) -> None:
    """The `prefetch` subcommand's options."""
    p = sub.add_parser(
        "prefetch",
        help="train the runs a class will ask for into the store (every preset, every stop one slider "
        "away from a preset, their baselines); stored runs are skipped, so it resumes",
    )
    p.add_argument(
        "--dataset", default=",".join(DATASETS),
        help=f"comma-separated datasets (default {','.join(DATASETS)}; one that cannot be loaded is "
        "skipped with a line); the chapter 4 presets go on the first",
    )  # fmt: skip
    p.add_argument("--preset", help="comma-separated preset names (default: all of them)")
    p.add_argument("--epochs", type=int, help="train every run for this many epochs (default: the presets')")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="train N runs at once, in processes")
    p.add_argument(
        "--budget-minutes", type=float, metavar="M",
        help="start nothing after M minutes, and cut (store nothing of) a run still training then",
    )  # fmt: skip


def command(args: argparse.Namespace) -> int:
    """Run `prefetch`: one progress line per run on stderr, a JSON summary on stdout; 2 on bad input."""
    try:
        datasets, names = _choices(args)
        experiments = neighbourhood(datasets, names, args.epochs)
    except (ValueError, SettingsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from regviz.store import StoreError

    start = time.monotonic()
    versions, missing = available(dict.fromkeys(s.dataset for s in experiments))
    for name, why in missing.items():
        print(f"prefetch: skipping {name}: {why}", file=sys.stderr)
    experiments = [s for s in experiments if s.dataset in versions]
    runs = runs_of(experiments)
    budget = None if args.budget_minutes is None else args.budget_minutes * 60 - (time.monotonic() - start)
    try:
        done = prefetch(runs, versions, None, args.workers, budget, _stderr_line())
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # what is stored stays; a run cut halfway was never written
        print("\nprefetch: stopped; run the same command again to go on", file=sys.stderr)
        return 130
    if sys.stderr.isatty():
        print(file=sys.stderr)  # the bar's line ends
    summary = {
        "experiments": len(experiments), "runs": len(runs), "already_stored": done.counts["stored"],
        "trained": done.counts["trained"], "cut_by_budget": done.counts["cut"],
        "failed": done.counts["failed"],
        "left": len(runs) - done.done, "seconds": round(time.monotonic() - start, 1),
        "datasets": sorted(versions), "skipped_datasets": sorted(missing),
    }  # fmt: skip
    print(json.dumps(summary))
    return 1 if done.counts["failed"] else 0


def _choices(args) -> tuple[list[str], list[str]]:
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: give an integer >= 1")
    if args.budget_minutes is not None and args.budget_minutes < 0:
        raise ValueError(f"--budget-minutes {args.budget_minutes:g}: give a number >= 0")
    if args.epochs is not None:
        Settings(epochs=args.epochs)  # its range, in the settings' own words
    datasets = [d.strip().lower() for d in args.dataset.split(",") if d.strip()]
    for d in datasets:
        Settings(dataset=d)
    if not datasets:
        raise ValueError("--dataset: give at least one dataset")
    names = list(PRESETS) if args.preset is None else [n.strip() for n in args.preset.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names:
        raise ValueError(f"--preset {', '.join(unknown) or '(none)'}: choose from {', '.join(PRESETS)}")
    return datasets, names


def _stderr_line():
    """show(line): the bar redrawn in place on a terminal, one line each otherwise (a log)."""
    tty = sys.stderr.isatty()

    def show(line: str) -> None:
        end = "" if tty and line.startswith("prefetch [") else "\n"
        print(("\r" if tty else "") + line, end=end, file=sys.stderr, flush=True)

    return show
