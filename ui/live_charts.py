"""The live page's four charts, drawn by one Streamlit component: a document of their own (an iframe)
with plotly.js's basic bundle, served from ui/live_charts/.

Why not four st.plotly_chart calls, measured in headless Chromium on 2 cores:
- a redraw of the four figures costs the browser about 290 ms of a core through st.plotly_chart
  (Plotly's layout work runs against the whole app's page) and 125 ms in the component's document;
  ten tabs watching a run on a small host share the cores with the training;
- st.plotly_chart loads the full plotly.js (4.7 MB, every trace type): goto -> four charts drawn took
  1.35-1.77 s in a plain page with it, 0.58-0.69 s with the basic bundle (1.2 MB: scatter and bar,
  all these charts use; TRACE_TYPES).
The component also redraws only the figures whose JSON changed, and draws a burst of updates once, at
the newest (ui/live_charts/index.html). If its files are missing (a broken checkout), the charts fall
back to st.plotly_chart.
The component's script also says so in the progress lines when the tab loses its server (a stale
"about 3 s left" otherwise stays for good); on the st.plotly_chart fallback the lines stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components

from regviz import figures as regviz_figures

FILES = Path(__file__).with_name("live_charts")
BUNDLE = "plotly-basic.min.js"  # plotly.js 4.1.1 (what plotly 7.1 ships), npm plotly.js-basic-dist-min
TRACE_TYPES = frozenset({"scatter", "bar"})  # what the basic bundle draws
NAME = "live_charts"


def available() -> bool:
    """Whether the component's files are there."""
    return (FILES / "index.html").is_file() and (FILES / BUNDLE).is_file()


def draw(figures: Sequence[go.Figure], key: str, as_json: Sequence[str] | None = None) -> None:
    """The figures two to a row (one on a narrow screen); as_json, if given, is figures.as_json(figures)
    (views.RunView.figures_json: made once per view, not once per tab)."""
    if not available():
        for i in range(0, len(figures), 2):
            for col, (j, fig) in zip(st.columns(2), enumerate(figures[i : i + 2], i), strict=False):
                col.plotly_chart(fig, key=f"{key}-{j}", theme=None)
        return
    # declared in every script run: it registers with the running server (AppTest makes one per test)
    component = components.declare_component(NAME, path=str(FILES))
    sent = as_json if as_json is not None else regviz_figures.as_json(figures)
    component(figures=list(sent), key=key, default=None)
