"""Pure Plotly builders of a sweep: a heatmap of two varied settings, a validation curve of one.

Both are drawn from markers, not plotly's Heatmap trace: Streamlit reports clicks (point selections)
on marker traces only, and a click on a cell opens its run. Cells come in `sweep.cells` order (the
last setting varies fastest); a value is None while its run is not finished.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from regviz import settings as settings_mod
from regviz import sweep
from regviz.figures import AXIS, STYLE

PENDING_COLOR = "#D5DAE5"
BEST_LINE = "#000000"
CURVE_COLOR = "#D55E00"
HEATMAP_PX = 520
Spread = list[float | None] | None  # per cell: the standard deviation over its folds (K-fold cells)
CURVE_PX = 440


def label(name: str) -> str:
    """The setting's label, as its control shows it."""
    return {f.name: f.metadata["label"] for f in settings_mod.fields()}[name]


def shown(name: str, value: Any) -> str:
    """A setting's value as the controls write it."""
    if settings_mod.named(name).metadata["percent"]:
        return f"{value:.0%}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def cell_text(value: float | None, metric: str, state: str) -> str:
    """What a cell says: its value when finished, else what its run is doing."""
    if value is None:
        return state
    return f"{value:.0f}" if sweep.METRICS[metric].integer else f"{value:.3f}"


def heatmap(
    grid: dict[str, list[Any]], values: list[float | None], states: list[str], metric: str
) -> go.Figure:
    """Two settings: one square per cell, coloured by the metric (best outlined); hover says the values."""
    (a, xs), (b, ys) = grid.items()
    m = sweep.METRICS[metric]
    best = sweep.best_cell(values, metric)
    cells = [(x, y) for x in xs for y in ys]
    size = max(18, min(80, int(360 / max(len(xs), len(ys)))))
    known = [v for v in values if v is not None]
    fig = go.Figure(
        go.Scatter(
            x=[shown(a, x) for x, _ in cells],
            y=[shown(b, y) for _, y in cells],
            mode="markers+text",
            text=[cell_text(v, metric, s) for v, s in zip(values, states, strict=True)],
            textfont={"size": 12, "color": _text_colors(values, m.lower_is_better)},
            customdata=list(range(len(cells))),
            marker={
                "symbol": "square",
                "size": size,
                "color": [v if v is not None else math.nan for v in values],
                "colorscale": "Viridis",
                "reversescale": m.lower_is_better,  # the best cells bright, whichever way is better
                "cmin": min(known) if known else 0,
                "cmax": max(known) if known else 1,
                "showscale": bool(known),
                "colorbar": {"title": {"text": m.label, "side": "right"}, "thickness": 12},
                "line": {
                    "color": [BEST_LINE if i == best else PENDING_COLOR for i in range(len(cells))],
                    "width": [3 if i == best else 1 for i in range(len(cells))],
                },
            },
            hovertemplate=[_hover(a, x, b, y, v, m.label) for (x, y), v in zip(cells, values, strict=True)],
            name="cells",
            showlegend=False,
        )
    )
    fig.update_layout(
        title=f"{m.label.capitalize()}, by {label(a)} and {label(b)}",
        height=HEATMAP_PX, clickmode="event+select", dragmode=False, **STYLE,
    )  # fmt: skip
    fig.update_xaxes(title=label(a), type="category", categoryorder="array",
                     categoryarray=[shown(a, x) for x in xs], **AXIS)  # fmt: skip
    fig.update_yaxes(title=label(b), type="category", categoryorder="array",
                     categoryarray=[shown(b, y) for y in ys], **AXIS)  # fmt: skip
    return fig


def validation_curve(
    name: str, xs: list[Any], values: list[float | None], metric: str, spread: Spread = None
) -> go.Figure:
    """One setting: the metric against the setting (log axis for penalties and rates), the best starred,
    in the manner of scikit-learn's ValidationCurveDisplay; with K-fold cells (spread: each cell's
    standard deviation over its folds), the mean with a band of one standard deviation. Unfinished
    cells are left out until done."""
    m = sweep.METRICS[metric]
    log = name in sweep.LOG_SETTINGS  # the settings table's log-axis ones
    at = _positions(xs, log)
    done = [i for i, v in enumerate(values) if v is not None]
    best = sweep.best_cell(values, metric)
    fig = go.Figure()
    banded = [i for i in done if spread and spread[i] is not None]
    if banded:
        upper = [values[i] + spread[i] for i in banded]
        lower = [values[i] - spread[i] for i in banded]
        fig.add_trace(go.Scatter(
            x=[at[i] for i in banded] + [at[i] for i in banded][::-1], y=upper + lower[::-1], fill="toself",
            mode="none", fillcolor="rgba(213, 94, 0, 0.15)", hoverinfo="skip", name="± 1 sd over the folds",
        ))  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[at[i] for i in done], y=[values[i] for i in done], customdata=done,
            mode="lines+markers", line={"color": CURVE_COLOR}, marker={"size": 10},
            name=m.label, hovertemplate=[_hover(name, xs[i], None, None, values[i], m.label) for i in done],
        )  # fmt: skip
    )
    if best is not None:
        fig.add_trace(
            go.Scatter(
                x=[at[best]], y=[values[best]], customdata=[best], mode="markers",
                marker={"symbol": "star", "size": 18, "color": BEST_LINE},
                name=f"best: {shown(name, xs[best])}",
                hovertemplate=_hover(name, xs[best], None, None, values[best], "best " + m.label),
            )  # fmt: skip
        )
    fig.update_layout(
        title=f"{m.label.capitalize()}, by {label(name)} ({len(done)} of {len(xs)} cells done)",
        height=CURVE_PX, clickmode="event+select", dragmode=False, **STYLE,
    )  # fmt: skip
    axis = {"type": "log"} if log else {}
    fig.update_xaxes(title=label(name), tickvals=at, ticktext=[shown(name, x) for x in xs], **axis, **AXIS)
    fig.update_yaxes(title=m.label, **AXIS)
    return fig


def _text_colors(values: list[float | None], reverse: bool) -> list[str]:
    """White on the dark end of Viridis, black on the bright end and on pending cells."""
    known = [v for v in values if v is not None]
    lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    colors = []
    for v in values:
        t = 0.5 if v is None or hi == lo else (v - lo) / (hi - lo)
        t = 1 - t if reverse else t
        colors.append("#FFFFFF" if v is not None and t < 0.55 else "#000000")
    return colors


def _positions(xs: list[Any], log: bool) -> list[float]:
    """Where each value sits on the x axis; on a log axis a 0 sits one decade below the smallest value."""
    if not log or all(x > 0 for x in xs):
        return [float(x) for x in xs]
    smallest = min((x for x in xs if x > 0), default=1.0)
    return [float(x) if x > 0 else smallest / 10 for x in xs]


def _hover(a: str, x: Any, b: str | None, y: Any, value: float | None, what: str) -> str:
    lines = [f"{label(a)} = {shown(a, x)}"] + ([f"{label(b)} = {shown(b, y)}"] if b else [])
    lines.append(f"{what}: {value:.4g}" if value is not None else f"{what}: not finished yet")
    return "<br>".join(lines) + "<br>click to open this run<extra></extra>"
