"""What a tab draws of a run and its baseline, built once per change and shared by every tab.

Ten tabs watching one run poll it every half second; building its four figures costs the server tens
of milliseconds, so each (run, baseline, loss kind) is built once per new epoch, not once per poll
of every tab.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import plotly.graph_objects as go

from regviz import figures, reading
from regviz.settings import Settings

KEEP = 64  # views held: a few per run being watched, and the runs a class just looked at


@dataclass(frozen=True)
class RunView:
    """The charts, CSV and reading of a run beside its baseline, at one version of each."""

    loss: go.Figure
    metrics: go.Figure
    hist: go.Figure
    norms: go.Figure
    csv: str
    reading: tuple[str, ...]
    epochs: int  # records of the run drawn


class ViewCache:
    """RunViews by (run, run version, baseline, baseline version, loss kind); thread-safe, bounded."""

    def __init__(self, keep: int = KEEP):
        self._views: OrderedDict[tuple, RunView] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self.built = 0  # how many views were built (the rest were shared)

    def view(self, run, base, settings: Settings, keras_loss: bool) -> RunView:
        """The view of run over base now: built if either changed since it was last asked for."""
        version, records = run.snapshot()
        base_version, baseline = (version, records) if base is run else base.snapshot()
        key = (run.key, version, base.key, base_version, keras_loss)
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
        made = build(records, None if base is run else baseline, settings, keras_loss)
        with self._lock:
            self.built += 1
            self._views[key] = made
            while len(self._views) > self._keep:
                self._views.popitem(last=False)
        return made


def build(records, baseline, settings: Settings, keras_loss: bool) -> RunView:
    """The four figures, CSV and reading of records over baseline (None: the run is the baseline)."""
    shown = baseline if baseline is not None else records
    last = records[-1] if records else None
    base_last = shown[-1] if shown else None
    return RunView(
        loss=figures.loss_figure(records, shown, settings, keras_loss=keras_loss),
        metrics=figures.metrics_figure(records, shown, settings),
        hist=figures.weights_histogram(last, base_last),
        norms=figures.weight_norms_figure(records, shown, settings.epochs),
        csv=figures.curves_csv(records, baseline),
        reading=tuple(reading.reading(records, shown, settings)),
        epochs=len(records),
    )


# ---- how often one tab redraws its charts --------------------------------------------------------------

# A redraw of four charts costs a browser about 0.2 s of a core (headless Chromium, 2 cores), and on a
# small host the browser may share the cores with the training. While runs train, a tab's progress
# lines poll every 0.5 s, but its charts redraw about CHART_REDRAWS times over the longest run's
# estimate, from MIN_CHART_S to MAX_CHART_S apart; the full script run at a run's start and at its
# end draws the charts at once whatever the interval.
CHART_REDRAWS = 10
MIN_CHART_S, MAX_CHART_S = 0.5, 2.0


def chart_seconds(estimates: Iterable[float | None]) -> float:
    """Seconds between chart redraws while runs with these estimated durations train (None: unknown)."""
    known = list(estimates)
    if not known or any(e is None for e in known):
        return MIN_CHART_S
    return min(MAX_CHART_S, max(MIN_CHART_S, max(known) / CHART_REDRAWS))
