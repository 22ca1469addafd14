"""Before class: `python -m regviz prefetch` trains the runs a class will ask for, into the store.

The neighbourhood: every book preset, every setting one slider stop away from a preset (the controls
a class moves: L2, L1, dropout, width, depth, training data), and the baseline of each, for the
datasets that can be loaded. Stored runs are skipped (it resumes where it stopped); a run is stored
in one transaction once all its epochs are in, so a run killed halfway leaves nothing behind.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from regviz import settings as settings_mod
from regviz.settings import PRESETS, Settings, SettingsError

CONTROLS = ("l2", "l1", "dropout", "width", "depth", "train_fraction")  # what a class moves
DATASETS = ("imdb", "reuters", "boston")  # the book's; the chapter 4 presets go on the first one given
DROPOUT_STEP = 0.05  # the page's dropout slider (ui/common.py)
BAR = 30  # characters of the progress bar


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
