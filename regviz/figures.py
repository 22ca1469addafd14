"""Pure figure builders: settings and epoch records in, plotly figures and tables out."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from regviz import problems
from regviz.records import HIST_EDGES, SMALL_WEIGHT, EpochRecord, best_epoch, mean_records, spread
from regviz.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

RUN, BASELINE = "this run", "baseline"
# one colour per split on every chart (okabe-ito, so colour-blind viewers can tell them apart)
COLORS = {
    "train": "#0072B2", "validation": "#D55E00", "auc": "#009E73", "val_auc": "#009E73",
    "val_precision": "#9467BD", "val_recall": "#BCBD22", "val_top3": "#009E73",
}  # fmt: skip
METRIC_TITLES = {
    "binary": ("Accuracy and ROC AUC, precision, recall", "accuracy / AUC / precision / recall"),
    "multiclass": ("Accuracy and top-3 accuracy", "accuracy"),
    "regression": ("Mean absolute error", "MAE (the target's unit)"),
}
LAYER_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
# pinned runs: their validation curves only, dotted, each in a colour of its own (okabe-ito's others)
PIN_COLORS = ("#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B", "#7F7F7F")
# the run is what the teacher changes, so it is solid; the reference it is measured against is dashed
DASH = {RUN: "solid", BASELINE: "dash"}
BEST_SYMBOL = {RUN: "star", BASELINE: "star-open"}
HOVER = "%{fullData.name}<br>epoch %{x}<br>%{y:.4f}<extra></extra>"
BEST_HOVER = "lowest validation loss: early stopping would stop here<br>epoch %{x}<br>%{y:.4f}<extra></extra>"
TITLE_LINE_PX, TITLE_PAD_PX = 22, 10  # a title line at 1.2 times the font, and the space above it
SUBTITLE_LINE_PX = 20  # a <sup> line under it


def top(title: str, height: int, lines: int = 1) -> dict:
    """The title at the chart's top and the legend in rows across the chart under it: plotly grows the
    top margin to fit the legend, so it never meets the x-axis title (below the plot the two collide)
    and never squeezes the plot sideways (beside it, it takes half a narrow chart's width)."""
    # plotly anchors a title of several lines by its first line: the smaller lines hang below it
    first = TITLE_PAD_PX + TITLE_LINE_PX
    below = first + (lines - 1) * SUBTITLE_LINE_PX + 6
    return {
        "title": {"text": title, "yref": "container", "y": 1 - first / height, "yanchor": "bottom"},
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "yref": "container",
                   "y": 1 - below / height, "yanchor": "top"},
    }  # fmt: skip


# no plotly template in the figure (a template is 80 % of a figure's JSON, which every watching tab
# receives at every poll), and no Streamlit theme on the page either: applying it costs the browser a
# third of each redraw (measured in headless Chromium: 0.62 instead of 0.89 of a core for a tab that
# redraws its four charts twice a second). STYLE gives the charts the page's font and quiet grid lines.
TEMPLATE = "none"
STYLE = {
    "font": {"family": "Source Sans Pro, sans-serif", "size": 13, "color": "#31333F"},
    "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
    "margin": {"l": 56, "r": 24, "t": 64, "b": 40}, "hoverlabel": {"font": {"size": 13}},
}  # fmt: skip
AXIS = {"gridcolor": "#E6E9EF", "zerolinecolor": "#D5DAE5", "linecolor": "#D5DAE5"}
HIST_TITLE = (
    "First hidden layer weights<br><sup>L1 pushes weights to exactly zero; L2 only shrinks them</sup>"
)
OPTIONAL_COLUMNS = (
    "accuracy", "val_accuracy", "val_auc", "val_precision", "val_recall", "val_top3", "mae", "val_mae",
)  # fmt: skip
HIST_HOVER = "w ≈ %{x:.3f}<br>%{y:.2%} of weights<extra></extra>"
RECORD_COLUMNS = (
    "epoch", "data_loss", "val_data_loss", "penalty", "loss", "val_loss",
    "accuracy", "val_accuracy", "val_auc", "val_precision", "val_recall", "val_top3", "mae", "val_mae",
    "seconds",
)  # fmt: skip


def loss_figure(
    run: list[EpochRecord],
    baseline: list[EpochRecord] | None,
    settings: Settings,
    keras_loss: bool = False,
    total_epochs: int | None = None,
    pinned: tuple[tuple[str, list[EpochRecord]], ...] = (),
    folds=(None, None),
) -> go.Figure:
    """Training and validation loss per epoch, run solid over a dashed baseline, best epochs starred;
    each pinned (label, records) as a dotted validation curve of its own colour. K-fold runs (folds:
    each fold's records of the run and of the baseline) are their means, each fold's validation
    curve drawn faint and a band of one standard deviation around the mean validation curve."""
    train_key, val_key = ("loss", "val_loss") if keras_loss else ("data_loss", "val_data_loss")
    total = _total(total_epochs or settings.epochs, pinned)
    series = _series(run, baseline, settings)
    title = "Loss per epoch" + _best_line(series)
    fig = _frame(title, _loss_title(keras_loss, settings), total, log_y=_is_regression(settings), lines=2)
    run_folds, base_folds = folds
    for label, fold_runs in ((BASELINE, base_folds), (RUN, run_folds)):
        if fold_runs and (label == RUN or baseline is not run):
            _add_folds(fig, fold_runs, val_key, label)
    if run and not run_folds:
        fig.add_trace(_gap_band(run, train_key, val_key))
    for label, records in series:
        fig.add_trace(_line(records, train_key, "train", label, "train"))
        fig.add_trace(_line(records, val_key, "validation", label, "validation"))
    for label, records in series:
        _mark_best(fig, records, val_key, label)
    _add_pins(fig, pinned, val_key, "validation")
    return _waiting(fig) if not series else _fit_log_axis(fig)


def metrics_figure(
    run: list[EpochRecord],
    baseline: list[EpochRecord] | None,
    settings: Settings,
    total_epochs: int | None = None,
    pinned: tuple[tuple[str, list[EpochRecord]], ...] = (),
) -> go.Figure:
    """The problem type's metrics (problems.py): its training-side one and its validation ones, run
    solid, baseline dashed (the baseline without the third and later ones, which would crowd the
    chart); each pinned (label, records) as a dotted curve of the main metric in its own colour."""
    problem, _ = problems.of_dataset(settings.dataset)
    title, axis = METRIC_TITLES[problem.kind]
    total = _total(total_epochs or settings.epochs, pinned)
    fig = _frame(title, axis, total, log_y=_is_regression(settings), height=METRICS_PX)
    series = _series(run, baseline, settings)
    train_label = "train " + problem.main.label.removeprefix("validation ")
    for label, records in series:
        fig.add_trace(_line(records, problem.train_metric, "train", label, train_label))
        shown = problem.metrics if label == RUN else problem.metrics[:2]
        for metric in shown:
            if any(getattr(r, metric.field) is not None for r in records):
                split = "validation" if metric is problem.main else metric.field
                line = _line(records, metric.field, split, label, _short(metric.label))
                # the main metric is what a class reads; the others are one click on their legend entry away
                line.visible = True if metric is problem.main else "legendonly"
                fig.add_trace(line)
    _add_pins(fig, pinned, problem.main.field, _short(problem.main.label))
    return _waiting(fig) if not series else _fit_log_axis(fig)


def _short(label: str) -> str:
    return label.replace("validation ROC AUC", "validation AUC")


def weights_histogram(run_last: EpochRecord | None, baseline_last: EpochRecord | None) -> go.Figure:
    """First hidden layer's weights as shares per bin: run as bars, baseline as a dashed step line."""
    fig = go.Figure(layout={
        **top(HIST_TITLE, PLOTLY_PX, lines=2), "template": TEMPLATE, "barmode": "overlay", **STYLE,
        "xaxis": {
            "title": "weight (outer bins: all beyond ±0.3)",
            "range": [HIST_EDGES[0], HIST_EDGES[-1]], **AXIS,
        },
        "yaxis": {"title": "share of weights", "tickformat": ".2~%", **AXIS},
    })  # fmt: skip
    if run_last is not None:
        fig.add_trace(_hist_bars(run_last))
    if baseline_last is not None and baseline_last != run_last:
        fig.add_trace(_hist_step(baseline_last))
    return fig


def weight_norms_figure(
    run: list[EpochRecord], baseline: list[EpochRecord] | None, total_epochs: int | None = None
) -> go.Figure:
    """Each hidden layer's kernel L2 norm per epoch, run solid, baseline dashed."""
    total = total_epochs or max((r.epoch for r in [*run, *(baseline or [])]), default=1)
    fig = _frame("Weight size per hidden layer", "kernel L2 norm √Σw²", total)
    series = _series(run, baseline)
    for label, records in series:
        for i in range(len(records[0].layers)):
            fig.add_trace(_norm_line(records, i, label))
    return _waiting(fig) if not series else fig


def remedy_figure(title: str, run: list[EpochRecord], baseline: list[EpochRecord], total: int) -> go.Figure:
    """A small multiple of the remedies page: training and validation data loss of a remedy (solid) over
    the common baseline (dashed), best epochs starred; no legend (the page explains the lines once)."""
    margin = {"l": 48, "r": 8, "t": 48, "b": 36}
    fig = _frame(title, "data loss", total, height=REMEDY_PX, showlegend=False, margin=margin)
    for label, records in ((BASELINE, baseline), (RUN, run)):
        if records:
            fig.add_trace(_line(records, "data_loss", "train", label, "train"))
            fig.add_trace(_line(records, "val_data_loss", "validation", label, "validation"))
    for label, records in ((BASELINE, baseline), (RUN, run)):
        if records:
            best = best_epoch(records)
            y = records[best - 1].val_data_loss
            fig.add_trace(go.Scatter(
                x=[best], y=[y], mode="markers", name=f"best epoch ({label})", hovertemplate=BEST_HOVER,
                marker={"symbol": BEST_SYMBOL[label], "size": 12, "color": COLORS["validation"]},
            ))  # fmt: skip
    return fig if run or baseline else _waiting(fig)


def as_json(figs) -> tuple[str, ...]:
    """Figures as the JSON the page's chart component receives (ui/live_charts.py)."""
    return tuple(f.to_json(validate=False) for f in figs)


def records_frame(records: list[EpochRecord], label: str) -> pd.DataFrame:
    """One row per epoch with flat columns (layers numbered from 1) and a `run` column holding label."""
    import pandas as pd  # here: a page that draws charts needs no pandas (0.3 s to import on a fresh server)

    rows = [_flat(r, label) for r in records]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run", *RECORD_COLUMNS])
    # a problem type's metrics only: another type's columns (MAE of a classifier...) are all empty
    empty = [c for c in OPTIONAL_COLUMNS if c in frame and rows and frame[c].isna().all()]
    return frame.drop(columns=empty)


def curves_csv(run: list[EpochRecord], baseline: list[EpochRecord] | None) -> str:
    """CSV of baseline rows (run="baseline") followed by run rows (run="run"), for a download button."""
    frames = [
        records_frame(records, name) for name, records in (("baseline", baseline), ("run", run)) if records
    ]
    import pandas as pd

    table = pd.concat(frames, ignore_index=True) if frames else records_frame([], "run")
    return table.to_csv(index=False)


def _frame(title: str, y_title: str, total: int, log_y: bool = False, lines: int = 1, **layout) -> go.Figure:
    """An empty chart over epochs 1..total; layout holds other layout properties (height, margin...).
    The layout is given whole: each update_layout or update_xaxes call costs plotly about 5 ms, and a
    view's four figures are built at every epoch of every run being watched."""
    # a fixed epoch axis, so the chart does not rescale while epochs stream in
    dtick = max(1, math.ceil(total / 10))
    return go.Figure(layout={
        **top(title, layout.get("height", PLOTLY_PX), lines), "template": TEMPLATE, **STYLE, **layout,
        # automargin: the last epoch's label ("300") may reach past the right margin on a narrow chart
        "xaxis": {"title": "epoch", "range": [0.5, total + 0.5], "tick0": 0, "dtick": dtick,
                  "automargin": True, **AXIS},
        "yaxis": {"title": y_title, **AXIS, **({"type": "log"} if log_y else {})},
    })  # fmt: skip


def _series(run, baseline, settings: Settings | None = None) -> list[tuple[str, list[EpochRecord]]]:
    # baseline first so the run is drawn on top; a run that is the baseline is drawn once
    same = baseline is None or baseline == run or (settings is not None and settings.is_baseline)
    pairs = [(RUN, run)] if same else [(BASELINE, baseline), (RUN, run)]
    return [(label, records) for label, records in pairs if records]


def _line(records, key: str, split: str, label: str, what: str) -> go.Scatter:
    return go.Scatter(
        x=[r.epoch for r in records], y=[getattr(r, key) for r in records], mode="lines+markers",
        name=f"{what} ({label})", line={"color": COLORS[split], "dash": DASH[label]}, marker={"size": 4},
        legendgroup=label, hovertemplate=HOVER,
    )  # fmt: skip


def _total(epochs: int, pinned) -> int:
    """The epoch axis: the run's epochs, or a pinned run's if it has trained longer."""
    return max([epochs, *(r.epoch for _, records in pinned for r in records)])


PLOTLY_PX = 450  # plotly's default height
PIN_ROW_PX = 30  # a pinned run's legend row: the chart grows by it, so the plot keeps its height
REMEDY_PX = 320  # one of the remedies page's small multiples
METRICS_PX = 510  # the accuracy chart's legend takes a row per curve: 60 px more than plotly's 450


def _add_pins(fig: go.Figure, pinned, key: str, what: str) -> None:
    if pinned:  # plotly's default height is 450
        fig.layout.height = (fig.layout.height or 450) + PIN_ROW_PX * len(pinned)
    for i, (label, records) in enumerate(pinned):
        if not records:
            continue
        fig.add_trace(go.Scatter(
            x=[r.epoch for r in records], y=[getattr(r, key) for r in records], mode="lines+markers",
            name=f"{what} (pin {i + 1}: {label})", legendgroup=f"pin-{i + 1}", hovertemplate=HOVER,
            line={"color": PIN_COLORS[i % len(PIN_COLORS)], "dash": "dot"}, marker={"size": 4},
        ))  # fmt: skip


FOLD_LINE = {"width": 1, "color": COLORS["validation"]}


def _add_folds(fig: go.Figure, fold_runs, key: str, label: str) -> None:
    """One standard deviation around the folds' mean validation curve, and (for the run) each fold faint."""
    mean = mean_records(fold_runs)
    if not mean:
        return
    epochs, centre, sd = [r.epoch for r in mean], [getattr(r, key) for r in mean], spread(fold_runs, key)
    upper = [c + d for c, d in zip(centre, sd, strict=True)]
    lower = [c - d for c, d in zip(centre, sd, strict=True)]
    fig.add_trace(go.Scatter(
        x=epochs + epochs[::-1], y=upper + lower[::-1], fill="toself", mode="none", hoverinfo="skip",
        fillcolor="rgba(213, 94, 0, 0.12)" if label == RUN else "rgba(213, 94, 0, 0.06)",
        name=f"validation ± 1 sd of {len(fold_runs)} folds ({label})", legendgroup=label,
    ))  # fmt: skip
    if label != RUN:
        return
    for i, records in enumerate(fold_runs, 1):
        fig.add_trace(go.Scatter(
            x=[r.epoch for r in records], y=[getattr(r, key) for r in records], mode="lines", opacity=0.35,
            line=FOLD_LINE, name="validation, each fold", legendgroup="folds", showlegend=i == 1,
            hovertemplate=f"fold {i}<br>epoch %{{x}}<br>%{{y:.4f}}<extra></extra>",
        ))  # fmt: skip


def _loss_title(keras_loss: bool, settings: Settings | None = None) -> str:
    kind = problems.of_dataset(settings.dataset)[0].kind if settings is not None else problems.BINARY
    what = "squared error" if kind == problems.REGRESSION else "cross-entropy"
    if keras_loss:
        return f"{what} + penalty, as Keras reports it"
    return f"{what}, penalty left out"


def _is_regression(settings: Settings) -> bool:
    # a regression's squared error falls by orders of magnitude in the first epochs: on a log axis the
    # later epochs, where overfitting shows, are not a flat line at the bottom
    return problems.of_dataset(settings.dataset)[0].kind == problems.REGRESSION


def _gap_band(run, train_key: str, val_key: str) -> go.Scatter:
    xs = [r.epoch for r in run]
    train, val = [getattr(r, train_key) for r in run], [getattr(r, val_key) for r in run]
    gap = val[-1] - train[-1]
    return go.Scatter(
        x=xs + xs[::-1], y=train + val[::-1], mode="lines", fill="toself", fillcolor="rgba(213, 94, 0, 0.12)",
        line={"width": 0}, hoverinfo="skip", name=f"generalization gap ({RUN}): {gap:.3f} at epoch {xs[-1]}",
    )  # fmt: skip


def _mark_best(fig: go.Figure, records, val_key: str, label: str) -> None:
    # best is where early stopping on validation data loss would stop, whichever loss is plotted
    best = best_epoch(records)
    y = getattr(next(r for r in records if r.epoch == best), val_key)
    # a star and its hover, no text label: labels sat on the curves and on each other; the epochs are
    # written in the title's second line (_best_line)
    fig.add_trace(go.Scatter(
        x=[best], y=[y], mode="markers", name=f"best epoch ({label})", legendgroup=label, showlegend=False,
        marker={"symbol": BEST_SYMBOL[label], "size": 14, "color": COLORS["validation"]},
        hovertemplate=BEST_HOVER,
    ))  # fmt: skip


def _best_line(series) -> str:
    """The title's second line: where each side's validation loss was lowest (its star)."""
    if not series:
        return ""
    best = ", ".join(f"{best_epoch(records)} ({label})" for label, records in reversed(series))
    return f"<br><sup>★ lowest validation loss at epoch {best}</sup>"


def _fit_log_axis(fig: go.Figure) -> go.Figure:
    """A log y axis's range set from the figure's own values (curves, bands, stars), in plotly's log10
    units: its autorange also counts what it cannot draw and ran to 10^13 for values below 600."""
    if fig.layout.yaxis.type != "log":
        return fig
    ys = [y for t in fig.data if t.visible != "legendonly" for y in (t.y or ()) if y is not None and y > 0]
    if ys:
        low, high = math.log10(min(ys)), math.log10(max(ys))
        pad = max(0.05 * (high - low), 0.02)  # the markers' size, and a flat curve is not a hairline
        fig.layout.yaxis.range = [low - pad, high + pad]
        # a label per decade over wide ranges: plotly's 2..9 labels between decades collide on a small chart
        fig.layout.yaxis.dtick = 1 if high - low >= 1.5 else "D2"
    return fig


def _waiting(fig: go.Figure) -> go.Figure:
    fig.add_annotation(
        text="waiting for the first epoch", xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False
    )
    return fig


def _centers() -> list[float]:
    return [round((a + b) / 2, 4) for a, b in itertools.pairwise(HIST_EDGES)]


def _shares(hist) -> list[float]:
    total = sum(hist)
    return [c / total if total else 0.0 for c in hist]


def _hist_bars(record: EpochRecord) -> go.Bar:
    return go.Bar(
        x=_centers(), y=_shares(record.hist), width=HIST_EDGES[1] - HIST_EDGES[0], opacity=0.6,
        marker_color=COLORS["train"], name=_hist_name(record, RUN), hovertemplate=HIST_HOVER,
    )  # fmt: skip


def _hist_step(record: EpochRecord) -> go.Scatter:
    # a step line keeps the baseline visible through the run's bars and keeps its dashed look
    return go.Scatter(
        x=_centers(), y=_shares(record.hist), mode="lines", line_shape="hvh", hovertemplate=HIST_HOVER,
        line={"color": "#555555", "dash": DASH[BASELINE]}, name=_hist_name(record, BASELINE),
    )  # fmt: skip


def _hist_name(record: EpochRecord, label: str) -> str:
    small = record.layers[0].small_fraction if record.layers else None
    note = f"{small:.1%} of |w| < {SMALL_WEIGHT:g}" if small is not None else "no layer stats"
    return f"{label}, epoch {record.epoch} ({note})"


def _norm_line(records, i: int, label: str) -> go.Scatter:
    return go.Scatter(
        x=[r.epoch for r in records], y=[r.layers[i].l2_norm for r in records], mode="lines+markers",
        name=f"layer {i + 1} ({label})", marker={"size": 4}, legendgroup=label, hovertemplate=HOVER,
        line={"color": LAYER_COLORS[i % len(LAYER_COLORS)], "dash": DASH[label]},
    )  # fmt: skip


def _flat(r: EpochRecord, label: str) -> dict:
    row = {"run": label, **{c: getattr(r, c) for c in RECORD_COLUMNS}}
    for i, layer in enumerate(r.layers, 1):
        row[f"layer{i}_l2_norm"] = layer.l2_norm
        row[f"layer{i}_small_fraction"] = layer.small_fraction
    return row
