"""What a tab draws of a run and its baseline, built once per change and shared by every tab.

Ten tabs watching one run poll it every half second; building its four figures costs the server tens
of milliseconds, so each (run, baseline, loss kind) is built once per new epoch, not once per poll
of every tab.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

import plotly.graph_objects as go

from regviz import data, figures, pins, problems, reading
from regviz.settings import Settings

KEEP = 64  # views held: a few per run being watched, and the runs a class just looked at
MAX_NAME = 120  # characters of a CSV's file name; past that its pins are counted, not named


@dataclass(frozen=True)
class RunView:
    """The charts, CSV and reading of a run beside its baseline, at one version of each."""

    loss: go.Figure
    metrics: go.Figure
    hist: go.Figure
    norms: go.Figure
    reading: tuple[str, ...]
    epochs: int  # records of the run drawn
    table: tuple[dict, ...] = ()  # the comparison's rows (pins.Row as dicts) when runs are pinned
    # (the run's records, the baseline's or None, the pinned runs' (label, records)), which the CSV holds
    curves: tuple = ((), None, ())
    csv_name: str = "regviz.csv"  # the download's file name: the dataset and what differs

    @functools.cached_property
    def csv(self) -> str:
        """The curves as CSV, made when a download button first asks (once the runs have finished), not
        at every epoch's view: that also keeps pandas out of a fresh server's first page. The pinned
        runs' rows follow, their `run` named as in the legends ("pin 1: L2 0.01")."""
        run, baseline, pinned = self.curves
        if not any(records for _, records in pinned):
            return figures.curves_csv(run, baseline)
        import pandas as pd  # here, as in figures.curves_csv: only once a CSV is asked for

        named = [("baseline", baseline), ("run", run)]
        named += [(f"pin {i}: {label}", records) for i, (label, records) in enumerate(pinned, 1)]
        frames = [figures.records_frame(records, name) for name, records in named if records]
        return pd.concat(frames, ignore_index=True).to_csv(index=False)

    @functools.cached_property
    def figures_json(self) -> tuple[str, ...]:
        """The four figures as JSON, as the page's chart component receives them: made once per view and
        shared by every tab that draws it, not once per poll of each tab."""
        return figures.as_json((self.loss, self.metrics, self.hist, self.norms))


class ViewCache:
    """RunViews by (run, run version, baseline, baseline version, loss kind, pinned runs and their
    versions); thread-safe, bounded."""

    def __init__(self, keep: int = KEEP):
        self._views: OrderedDict[tuple, RunView] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self.built = 0  # how many views were built (the rest were shared)

    def view(self, run, base, settings: Settings, keras_loss: bool, pinned=()) -> RunView:
        """The view of run over base (and the pinned runs, a sequence of manager Runs) now: built if any
        of them changed since it was last asked for."""
        version, records = run.snapshot()
        base_version, baseline = (version, records) if base is run else base.snapshot()
        shots = [p.snapshot() for p in pinned]
        pins_key = tuple((p.key, v) for p, (v, _) in zip(pinned, shots, strict=True))
        key = (run.key, version, base.key, base_version, keras_loss, pins_key)
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
        reference = settings.baseline()
        records_of = [r for _, r in shots]
        names = [pins.label(p.settings, reference) for p in pinned]
        labelled = tuple(zip(names, records_of, strict=True))
        folds = (_folds_of(run), None if base is run else _folds_of(base))
        made = build(records, None if base is run else baseline, settings, keras_loss, labelled, folds)
        if pinned:
            table = [pins.row("this run", settings, reference, records, run.state)]
            if base is not run:
                table.append(pins.row("baseline", reference, reference, baseline, base.state))
            for i, (p, r) in enumerate(zip(pinned, records_of, strict=True)):
                table.append(pins.row(f"pin {i + 1}", p.settings, reference, r, p.state))
            made = dataclasses.replace(made, table=tuple(row.as_dict() for row in table))
        with self._lock:
            self.built += 1
            self._views[key] = made
            while len(self._views) > self._keep:
                self._views.popitem(last=False)
        return made


def _folds_of(run):
    # a K-fold run (runs.group.FoldGroup) also has each fold's records; a hold-out run has none
    return run.fold_records() if hasattr(run, "fold_records") else None


def build(records, baseline, settings: Settings, keras_loss: bool, pinned=(), folds=(None, None)) -> RunView:
    """The four figures, CSV and reading of records over baseline (None: the run is the baseline), with
    pinned (label, records) pairs on the loss and metric charts; for K-fold runs, folds holds each
    fold's records of the run and of the baseline, and records are their means."""
    shown = baseline if baseline is not None else records
    last = records[-1] if records else None
    base_last = shown[-1] if shown else None
    lines = reading.reading(records, shown, settings, folds)
    if folds[0]:
        lines = [*lines, *reading.folds(folds[0])]
    return RunView(
        loss=figures.loss_figure(records, shown, settings, keras_loss=keras_loss, pinned=pinned, folds=folds),
        metrics=figures.metrics_figure(records, shown, settings, pinned=pinned),
        hist=figures.weights_histogram(last, base_last),
        norms=figures.weight_norms_figure(records, shown, settings.epochs),
        curves=(
            tuple(records), None if baseline is None else tuple(baseline),
            tuple((label, tuple(r)) for label, r in pinned),
        ),
        csv_name=csv_name(settings, [label for label, _ in pinned]),
        reading=tuple(lines),
        epochs=len(records),
    )


def csv_name(settings: Settings, pinned=()) -> str:
    """The CSV's file name: the dataset, what run and baseline share apart from the dataset's defaults,
    what the run adds, and the pins' labels, e.g. `imdb_l2-0.001_vs_baseline.csv`, in safe characters."""
    shared = pins.differences(settings.baseline(), Settings.for_dataset(settings.dataset))
    added = pins.differences(settings, settings.baseline())
    against = ["vs", "baseline"] if added else ["baseline"]
    head = [_dataset_name(settings.dataset), *shared, *added, *against]
    name = "_".join(_slug(part) for part in [*head, *(["pins", *pinned] if pinned else [])])
    if len(name) > MAX_NAME:  # many pins: counted, not named
        name = "_".join(_slug(part) for part in [*head, f"and {len(pinned)} pins"])
    return f"{name[:MAX_NAME]}.csv"


def _dataset_name(dataset: str) -> str:
    # an uploaded file by its own name (a dataset name of an upload is a hash), while this process has it
    if not problems.is_upload(dataset):
        return dataset
    held = data.uploaded(dataset)
    if held is None:
        return "uploaded file"
    stem = held.filename.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]  # no folders, no .csv
    return f"{stem} {held.target}"


def _slug(text: str) -> str:
    """Lower-case letters, digits, dots and dashes only: safe in a file name on every system."""
    text = re.sub(r"[^a-z0-9.]+", "-", text.lower().replace("%", "pct"))
    return re.sub(r"\.{2,}", ".", text).strip("-.") or "x"


# ---- how often one tab redraws -------------------------------------------------------------------------

# while a run trains, a tab redraws its charts at most every MIN_GAP_S early in the run, then more
# seldom, up to MAX_GAP_S apart (a quarter of the time trained so far): a redraw of four charts costs
# a browser about 0.2 s of a core (headless Chromium, 2 cores), and on a small host the browser may
# share the cores with the training. Each poll still updates the progress lines, a full script run
# always draws the newest view, and so does the poll after the last epoch.
MIN_GAP_S, MAX_GAP_S = 0.5, 2.0
POLLS_PER_RUN = 10  # a tab polls about this often over a run's estimated time, MIN_GAP_S to MAX_GAP_S apart
_DRAWN = "regviz_drawn"  # a session's (run keys, view, monotonic time it was drawn)


def poll_seconds(estimates: Iterable[float | None]) -> float:
    """Seconds between a tab's polls while runs of these estimated durations (None: unknown) train:
    the book's 16-16 (1.5 s) every MIN_GAP_S, a 512-512 run (15 s) every 1.5 s, longer ones MAX_GAP_S."""
    known = list(estimates)
    if not known or any(e is None for e in known):
        return MIN_GAP_S
    return min(MAX_GAP_S, max(MIN_GAP_S, max(known) / POLLS_PER_RUN))


def redraw_gap(run, base, now: float | None = None) -> float:
    """Least seconds between two chart redraws of a tab while run or base trains (0 once both ended)."""
    started = [r.started_at for r in (run, base) if r.started_at is not None and not r.finished]
    if not started:
        return 0.0
    trained = (time.time() if now is None else now) - min(started)
    return min(MAX_GAP_S, max(MIN_GAP_S, trained / 4))


def to_draw(session: MutableMapping, view: RunView, run, base, now: float | None = None) -> RunView:
    """The view a poll of this session draws: the new one, or the one it drew last if that was less than
    redraw_gap ago (the same figures again: the browser keeps its charts as they are)."""
    now = time.monotonic() if now is None else now
    keys, kept = (run.key, base.key), session.get(_DRAWN)
    if kept and kept[0] == keys and (kept[1] is view or now - kept[2] < redraw_gap(run, base)):
        return kept[1]
    session[_DRAWN] = (keys, view, now)
    return view


def forget_drawn(session: MutableMapping) -> None:
    """Make the session's next poll draw the newest view (after a full script run has drawn it)."""
    session.pop(_DRAWN, None)
