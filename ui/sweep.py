"""The sweep page: one or two settings varied over chosen values, every other one from the sidebar; a
heatmap (two) or a validation curve (one) fills in as the cells' runs finish; a click opens a cell's run."""

from __future__ import annotations

import streamlit as st

from regviz import sweep, sweep_figures
from regviz.runs import group
from regviz.runs.manager import SWEEP
from regviz.settings import Settings, SettingsError
from ui.common import (
    POLL_SECONDS,
    choose,
    current_settings,
    ensure_dataset,
    keep,
    notices,
    problem_line,
    seed_from_link,
    service,
    session_token,
    sidebar,
    sweep_watcher,
    waiting_for_data,
)

CELL_STATES = {"queued": "queued", "running": "training", "failed": "failed", "cancelled": "cancelled"}


def seed_sweep_from_link(base: Settings) -> None:
    """On the page's first visit in a session, the link's `vary` and `metric` start that sweep; a bad
    one is noted in one line and the page opens without a sweep."""
    if "sweep_seeded" in st.session_state:
        return
    st.session_state.sweep_seeded = True
    vary, metric = st.query_params.get_all("vary"), st.query_params.get("metric")
    if not vary and metric is None:
        return
    try:
        grid, metric = sweep.read_link(base, vary, metric)
    except (SettingsError, sweep.GridError) as e:
        st.session_state.sweep_notice = f"The link's sweep was not started: {e}."
        return
    start(grid, metric)


def start(grid: dict, metric: str) -> None:
    """Make this the tab's sweep: its controls show it, its cells are watched from the next run on."""
    st.session_state.sweep = grid
    st.session_state.sweep_metric = metric
    st.session_state.sweep_vary = list(grid)
    for name, values in grid.items():
        st.session_state[f"sweep_values_{name}"] = list(values)


def chooser(base: Settings) -> None:
    """Which settings vary over which values (the sliders' stops), and the Run button."""
    for key, value in st.session_state.get("sweep_kept", {}).items():
        if key not in st.session_state:  # streamlit dropped it while another page was shown
            st.session_state[key] = value
    # each widget's default is what it holds now (as the sidebar's controls do, ui/common.py): a browser
    # that re-creates a widget whose state it dropped then sends that, not an empty choice
    metrics = list(sweep.METRICS)
    with st.container(border=True):
        left, right = st.columns([2, 3])
        names = left.multiselect(
            "Settings to vary (one or two)", list(sweep.MENUS), key="sweep_vary",
            default=st.session_state.get("sweep_vary"), max_selections=sweep.MAX_VARIED,
            format_func=sweep_figures.label, help="Every other setting comes from the sidebar.",
        )  # fmt: skip
        left.selectbox(
            "Read off each run", metrics, key="sweep_metric",
            index=metrics.index(st.session_state.get("sweep_metric", metrics[0])),
            format_func=lambda m: sweep.METRICS[m].label,
        )  # fmt: skip
        grid = {}
        for name in names:
            key = f"sweep_values_{name}"
            if key not in st.session_state:
                st.session_state[key] = list(sweep.PICKED[name])
            grid[name] = right.multiselect(
                f"{sweep_figures.label(name)}: values", list(sweep.MENUS[name]), key=key,
                default=st.session_state[key], format_func=lambda v, n=name: sweep_figures.shown(n, v),
            )  # fmt: skip
        kept = ("sweep_vary", "sweep_metric", *(f"sweep_values_{n}" for n in names))
        st.session_state.sweep_kept = {k: st.session_state[k] for k in kept}
        problem = _problem(base, grid)
        st.button("Run this sweep", key="sweep_run", type="primary", disabled=bool(problem),
                  help=problem, on_click=_run, args=(base, grid))  # fmt: skip
        if problem and names:
            st.caption(problem)


def _problem(base: Settings, grid: dict) -> str | None:
    if not grid:
        return "Choose one or two settings to vary."
    if any(len(values) < 2 for values in grid.values()):
        return "Choose at least two values for each varied setting."
    try:
        sweep.read_link(base, sweep.encode({n: sorted(v, key=_order) for n, v in grid.items()}), None)
    except (SettingsError, sweep.GridError) as e:
        return f"{e}."
    return None


def _order(value):
    return (str(type(value)), value)


def _run(base: Settings, grid: dict) -> None:
    ordered = {name: sorted(values, key=_order) for name, values in grid.items()}
    start(ordered, st.session_state.sweep_metric)


def sync_link(base: Settings) -> None:
    """The page's link: the sidebar's settings, the sweep's grid and its metric."""
    params: dict[str, str | list[str]] = dict(base.to_params())
    if st.session_state.get("sweep"):
        params["vary"] = sweep.encode(st.session_state.sweep)
        params["metric"] = st.session_state.sweep_metric
    in_url = {name: st.query_params.get_all(name) for name in st.query_params}
    if in_url != {k: v if isinstance(v, list) else [v] for k, v in params.items()}:
        st.query_params.from_dict(params)


def cells_view(grid: dict, runs, poll: bool) -> None:
    """The chart (clicking a cell opens its run) and a table of the cells, best first; polled."""
    metric = st.session_state.sweep_metric
    values = [sweep.METRICS[metric].read(r.records()) if r.state == "done" else None for r in runs]
    # a K-fold cell (runs.group.FoldGroup) reads its folds' mean; its spread is over the folds
    spread = [sweep.fold_spread(metric, r.fold_records()) if hasattr(r, "fold_records") and v is not None
              else None for r, v in zip(runs, values, strict=True)]  # fmt: skip
    states = [_state(r) for r in runs]
    done = sum(r.state == "done" for r in runs)
    st.progress(done / len(runs), text=f"{done} of {len(runs)} cells done")
    # with "gap", each cell's lowest validation loss tells an underfitting cell from a good one
    losses = [sweep.METRICS["min_val_loss"].read(r.records()) if v is not None else None
              for r, v in zip(runs, values, strict=True)] if metric == "gap" else None  # fmt: skip
    if len(grid) == 2:
        fig = sweep_figures.heatmap(grid, values, states, metric, val_losses=losses)
    else:
        ((name, xs),) = grid.items()
        fig = sweep_figures.validation_curve(name, xs, values, metric, spread, val_losses=losses)
    # a new key after each click: back on this page, the chart comes without the old selection
    key = f"sweep_chart_{st.session_state.get('sweep_clicks', 0)}"
    event = st.plotly_chart(fig, key=key, theme=None, on_select="rerun", selection_mode="points")
    picked = [p.get("customdata") for p in (event.selection.points if event else [])]
    if picked and isinstance(picked[0], int) and 0 <= picked[0] < len(runs):
        st.session_state.sweep_clicks = st.session_state.get("sweep_clicks", 0) + 1
        open_cell(runs[picked[0]].settings)
    st.dataframe(_table(grid, runs, values, states, metric), hide_index=True, key="sweep_table")
    if poll and all(r.finished for r in runs):
        st.rerun()


def _state(run) -> str:
    if run.state == "running":
        return f"{len(run.records())}/{run.total_epochs}"
    return CELL_STATES.get(run.state, run.state)


def _table(grid, runs, values, states, metric) -> list[dict]:
    label = sweep.METRICS[metric].label
    rows = [
        {**{sweep_figures.label(n): sweep_figures.shown(n, getattr(r.settings, n)) for n in grid},
         label: v, "run": "done" if v is not None else s}
        for r, v, s in zip(runs, values, states, strict=True)
    ]  # fmt: skip
    sign = 1 if sweep.METRICS[metric].lower_is_better else -1
    return sorted(rows, key=lambda row: (row[label] is None, sign * (row[label] or 0)))


def open_cell(settings: Settings) -> None:
    """The main page, showing this cell's run (its link is that run's)."""
    choose(settings.as_dict())
    st.switch_page("ui/explore.py", query_params=settings.to_params())


def sweep_page() -> None:
    """Sidebar settings, the grid chooser, then the sweep's cells."""
    seed_from_link("sweep")
    info = ensure_dataset()
    sidebar()
    base = current_settings()
    keep(base)
    seed_sweep_from_link(base)
    st.title("Sweep: which value is best?")
    st.caption(
        "Vary one or two settings over a grid; every other setting is the sidebar's. Each cell is a run, "
        "trained on the same workers as everyone's runs but after any visitor's, and kept in the store: "
        "cells trained before appear at once. Click a cell to open its run."
    )
    notices()
    if st.session_state.get("sweep_notice"):
        st.warning(st.session_state.sweep_notice)
    problem_line()
    chooser(base)
    grid = st.session_state.get("sweep")
    manager, token = service().manager, session_token()
    watcher, cells = sweep_watcher(token), sweep.cells(base, grid) if grid else []
    manager.unwatch(token)  # the other pages' runs: this one does not show them
    manager.unwatch(watcher, keep=group.kept(cells))  # an earlier grid's cells nobody else waits for stop
    sync_link(base)
    if not grid:
        return
    if info is None:
        st.fragment(waiting_for_data, run_every=POLL_SECONDS)(base.dataset)
        return
    runs = [group.watch(manager, cell, watcher, SWEEP) for cell in cells]
    poll = not all(r.finished for r in runs)
    st.fragment(cells_view, run_every=POLL_SECONDS if poll else None)(grid, runs, poll)


sweep_page()
