"""What the "Your data" page shows of an uploaded file before anything trains: its size, the chosen
problem type, the class balance or the target's histogram. Pure: a prepared file in, rows or a figure
out; the page draws them."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from regviz.data.csvfile import Prepared, Table
from regviz.figures import AXIS, STYLE, TEMPLATE
from regviz.problems import REGRESSION

SMALL_FILE = 1000  # rows: below this a hold-out split is too noisy, and the page suggests K-fold


def summary(table: Table, prepared: Prepared) -> list[tuple[str, str]]:
    """(label, value) pairs: rows, columns, features after encoding, problem type."""
    kept = len(prepared.y)
    rows = f"{kept:,}" if kept == len(table.frame) else f"{kept:,} of {len(table.frame):,}"
    return [
        ("rows", rows),
        ("columns", f"{table.frame.shape[1]:,}"),
        ("network inputs", f"{prepared.features:,}"),
        ("problem type", prepared.kind),
    ]


def balance(prepared: Prepared) -> list[tuple[str, int, float]]:
    """(class label, rows, share) for a classification target, most common first."""
    counts = np.bincount(prepared.y.astype(int), minlength=len(prepared.labels))
    total = max(1, int(counts.sum()))
    order = np.argsort(-counts, kind="stable")
    return [(prepared.labels[i], int(counts[i]), counts[i] / total) for i in order]


def target_figure(prepared: Prepared) -> go.Figure:
    """The class balance as bars, or a regression target's histogram."""
    if prepared.kind == REGRESSION:
        trace = go.Histogram(x=prepared.y, nbinsx=40, marker_color="#1f77b4", name=prepared.target)
        title, x_title, y_title = f"target {prepared.target!r}: distribution", prepared.target, "rows"
    else:
        shown = balance(prepared)[:50]
        trace = go.Bar(
            x=[label for label, _, _ in shown], y=[n for _, n, _ in shown], marker_color="#1f77b4",
            text=[f"{share:.0%}" for _, _, share in shown], textposition="outside", name=prepared.target,
        )  # fmt: skip
        title, x_title, y_title = f"target {prepared.target!r}: class balance", "class", "rows"
    fig = go.Figure(trace)
    fig.update_layout(
        **{**STYLE, "margin": {"l": 56, "r": 16, "t": 48, "b": 40}}, template=TEMPLATE, title=title,
        height=300, showlegend=False,
        xaxis=dict(AXIS, title=x_title, type="linear" if prepared.kind == REGRESSION else "category"),
        yaxis=dict(AXIS, title=y_title),
    )  # fmt: skip
    return fig
