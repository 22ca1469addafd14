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
from regviz.figures import AXIS, STYLE, top

PENDING_COLOR = "#D5DAE5"
BEST_LINE = "#000000"
CURVE_COLOR = "#D55E00"
HEATMAP_PX = 520
Spread = list[float | None] | None  # per cell: the standard deviation over its folds (K-fold cells)
CURVE_PX = 440
UNDERFIT = 1.2  # "gap": a cell whose lowest validation loss is this many times the best's underfits
UNDERFIT_MARK = " ▲"


def underfits(metric: str, val_losses: list[float | None] | None) -> list[bool]:
    """With the "gap" metric, the cells whose lowest validation loss is UNDERFIT times the best cell's or
    more: a small gap there means the model learnt little, not that it generalises."""
    known = [v for v in val_losses or [] if v is not None]
    if metric != "gap" or not known:
        return [False] * len(val_losses or [])
    return [v is not None and v >= UNDERFIT * min(known) for v in val_losses]


def _best(values: list[float | None], metric: str, under: list[bool]) -> int | None:
    """The best cell among those that do not underfit."""
    kept = [None if u else v for v, u in zip(values, under or [False] * len(values), strict=True)]
    return sweep.best_cell(kept, metric)


def spread_line(values: list[float | None]) -> str:
    """How far apart the finished cells are, so that colours spread over a 2 % range read as such."""
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    lo, hi = min(known), max(known)
    apart = f": {(hi - lo) / abs(lo):.1%} apart" if lo else ""
    return f"colours span {lo:.3g} to {hi:.3g}{apart}"


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
    grid: dict[str, list[Any]],
    values: list[float | None],
    states: list[str],
    metric: str,
    val_losses: list[float | None] | None = None,
) -> go.Figure:
    """Two settings: one square per cell, coloured by the metric, its value written in it (best outlined;
    with "gap", cells that underfit (val_losses: each cell's lowest validation loss) are marked and
    never best); the title says how far apart the values are; hover says the values."""
    (a, xs), (b, ys) = grid.items()
    m = sweep.METRICS[metric]
    under = underfits(metric, val_losses) or [False] * len(values)
    best = _best(values, metric, under)
    cells = [(x, y) for x in xs for y in ys]
    # small enough for a phone: four cells and the colour bar in 390 px
    size = max(18, min(64, int(220 / max(len(xs), len(ys)))))
    known = [v for v in values if v is not None]
    fig = go.Figure(
        go.Scatter(
            x=[shown(a, x) for x, _ in cells],
            y=[shown(b, y) for _, y in cells],
            mode="markers+text",
            text=[
                cell_text(v, metric, s) + (UNDERFIT_MARK if u else "")
                for v, s, u in zip(values, states, under, strict=True)
            ],
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
                "colorbar": {"thickness": 12},  # the title names the metric: the plot keeps the width
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
    notes = [f"by {label(a)} and {label(b)}", spread_line(values), _underfit_note(under)]
    fig.update_layout(
        **top(_title(m.label, notes), HEATMAP_PX, lines=1 + sum(map(bool, notes))),
        height=HEATMAP_PX, clickmode="event+select", dragmode=False, **STYLE,
    )  # fmt: skip
    fig.update_xaxes(title=label(a), type="category", categoryorder="array",
                     categoryarray=[shown(a, x) for x in xs], **AXIS)  # fmt: skip
    fig.update_yaxes(title=label(b), type="category", categoryorder="array",
                     categoryarray=[shown(b, y) for y in ys], **AXIS)  # fmt: skip
    return fig


def validation_curve(
    name: str,
    xs: list[Any],
    values: list[float | None],
    metric: str,
    spread: Spread = None,
    val_losses: list[float | None] | None = None,
) -> go.Figure:
    """One setting: the metric against the setting (log axis for penalties and rates), the best starred,
    in the manner of scikit-learn's ValidationCurveDisplay; with K-fold cells (spread: each cell's
    standard deviation over its folds), the mean with a band of one standard deviation. Unfinished
    cells are left out until done."""
    m = sweep.METRICS[metric]
    log = name in sweep.LOG_SETTINGS  # the settings table's log-axis ones
    at = _positions(xs, log)
    done = [i for i, v in enumerate(values) if v is not None]
    under = underfits(metric, val_losses) or [False] * len(values)
    best = _best(values, metric, under)
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
            x=[at[i] for i in done],
            y=[values[i] for i in done],
            customdata=done,
            mode="lines+markers",
            line={"color": CURVE_COLOR},
            marker={"size": 10},
            name=m.label,
            showlegend=False,  # the y axis names it
            hovertemplate=[_hover(name, xs[i], None, None, values[i], m.label) for i in done],
        )  # fmt: skip
    )
    if best is not None:
        fig.add_trace(
            go.Scatter(
                x=[at[best]],
                y=[values[best]],
                customdata=[best],
                mode="markers",
                marker={"symbol": "star", "size": 18, "color": BEST_LINE},
                name=f"best: {shown(name, xs[best])}",
                hovertemplate=_hover(name, xs[best], None, None, values[best], "best " + m.label),
            )  # fmt: skip
        )
    if any(under):
        fig.add_trace(go.Scatter(
            x=[at[i] for i in done if under[i]], y=[values[i] for i in done if under[i]], mode="markers",
            marker={"symbol": "triangle-up", "size": 12, "color": PENDING_COLOR, "line": {"width": 1}},
            name="underfits: not best", hoverinfo="skip",
        ))  # fmt: skip
    notes = [f"by {label(name)} ({len(done)} of {len(xs)} cells done)", _underfit_note(under)]
    fig.update_layout(
        **top(_title(m.label, notes), CURVE_PX, lines=1 + sum(map(bool, notes))),
        height=CURVE_PX, clickmode="event+select", dragmode=False, **STYLE,
    )  # fmt: skip
    axis = {"type": "log"} if log else {}
    fig.update_xaxes(title=label(name), tickvals=at, ticktext=[shown(name, x) for x in xs], **axis, **AXIS)
    fig.update_yaxes(title=m.label, **AXIS)
    return fig


def _title(what: str, notes: list[str]) -> str:
    """The metric on the first line, then a smaller line per note (narrow charts clip one long line)."""
    return what.capitalize() + "".join(f"<br><sup>{n}</sup>" for n in notes if n)


def _underfit_note(under: list[bool]) -> str:
    if not any(under):
        return ""
    above = f"{UNDERFIT - 1:.0%}"
    return f"{UNDERFIT_MARK.strip()} underfits (lowest validation loss {above}+ above the best): not best"


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
