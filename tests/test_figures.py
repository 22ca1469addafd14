"""Figure builders: traces, styles and values read straight off hand-made epoch records."""

import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from regviz import figures
from regviz.records import HIST_EDGES, EpochRecord, LayerStats
from regviz.settings import Settings

BINS = len(HIST_EDGES) - 1
SETTINGS = Settings(l2=1e-3, epochs=10)


def record(epoch, val, train=None, penalty=0.01, auc=0.9, small=0.125, hist=None, norms=(3.0, 2.0)):
    """One epoch with the given validation data loss; the other fields follow from it so they differ."""
    train = val * 0.8 if train is None else train
    return EpochRecord(
        epoch=epoch, data_loss=train, val_data_loss=val, penalty=penalty, loss=train + penalty,
        val_loss=val + penalty, accuracy=1 - train / 2, val_accuracy=1 - val / 2, val_auc=auc,
        seconds=float(epoch), layers=tuple(LayerStats(n + epoch / 10, small) for n in norms),
        hist=hist if hist is not None else tuple([1] * BINS),
    )  # fmt: skip


def curve(vals, **kw):
    """Records for epochs 1..n with the given validation data losses."""
    return [record(i, v, **kw) for i, v in enumerate(vals, 1)]


@pytest.fixture
def run():
    return curve([0.50, 0.40, 0.35, 0.36, 0.38])


@pytest.fixture
def baseline():
    return curve([0.45, 0.33, 0.37, 0.45, 0.55])


def trace(fig, name):
    (found,) = [t for t in fig.data if t.name == name]
    return found


def test_loss_trace_names(run, baseline):
    """Run and baseline each get a train and a validation curve and a best-epoch marker, with clear names."""
    names = {t.name for t in figures.loss_figure(run, baseline, SETTINGS).data}
    for label in ("this run", "baseline"):
        assert {f"train ({label})", f"validation ({label})", f"best epoch ({label})"} <= names
    assert any(n.startswith("generalization gap (this run)") for n in names)


def test_baseline_dashed_run_solid(run, baseline):
    """Baseline lines are dashed and run lines solid, on the loss, metrics and weight-norm charts."""
    figs = [
        figures.loss_figure(run, baseline, SETTINGS),
        figures.metrics_figure(run, baseline, SETTINGS),
        figures.weight_norms_figure(run, baseline),
    ]
    lines = [t for fig in figs for t in fig.data if t.mode == "lines+markers"]
    assert lines
    for t in lines:
        assert t.line.dash == ("dash" if t.name.endswith("(baseline)") else "solid"), t.name


def test_split_colours_consistent(run, baseline):
    """Training is one colour and validation another, the same for run, baseline and both charts."""
    figs = [figures.loss_figure(run, baseline, SETTINGS), figures.metrics_figure(run, baseline, SETTINGS)]
    lines = [t for fig in figs for t in fig.data if t.mode == "lines+markers" and "AUC" not in t.name]
    train = {t.line.color for t in lines if t.name.startswith("train")}
    val = {t.line.color for t in lines if t.name.startswith("validation")}
    assert len(train) == 1 and len(val) == 1 and train != val


def test_loss_curves_plot_data_loss(run, baseline):
    """By default the loss curves are the data losses, without the penalty."""
    fig = figures.loss_figure(run, baseline, SETTINGS)
    assert list(trace(fig, "train (this run)").y) == [r.data_loss for r in run]
    assert list(trace(fig, "validation (baseline)").y) == [r.val_data_loss for r in baseline]
    assert list(trace(fig, "validation (this run)").x) == [1, 2, 3, 4, 5]
    assert "penalty" in fig.layout.yaxis.title.text and "left out" in fig.layout.yaxis.title.text


def test_keras_loss_toggle(run, baseline):
    """keras_loss=True plots loss/val_loss (penalty included) and the axis title says so."""
    fig = figures.loss_figure(run, baseline, SETTINGS, keras_loss=True)
    assert list(trace(fig, "train (this run)").y) == [r.loss for r in run]
    assert list(trace(fig, "validation (baseline)").y) == [r.val_loss for r in baseline]
    assert "+ penalty" in fig.layout.yaxis.title.text


def test_best_epoch_marker(run, baseline):
    """The best-epoch marker sits at the lowest validation data loss of each curve."""
    fig = figures.loss_figure(run, baseline, SETTINGS)
    ours, theirs = trace(fig, "best epoch (this run)"), trace(fig, "best epoch (baseline)")
    assert (list(ours.x), list(ours.y)) == ([3], [0.35])
    assert (list(theirs.x), list(theirs.y)) == ([2], [0.33])
    # written once in the title's second line, not as labels on the curves
    assert not fig.layout.annotations
    assert "lowest validation loss at epoch 3 (this run), 2 (baseline)" in fig.layout.title.text


def test_best_epoch_follows_data_loss_with_keras_loss():
    """With the Keras loss shown the marker stays at the best data-loss epoch, on the Keras curve."""
    # the penalty falls fast enough that val_loss keeps falling after the data loss turned up
    run = [record(1, 0.40, penalty=0.30), record(2, 0.30, penalty=0.20), record(3, 0.32, penalty=0.05)]
    marker = trace(figures.loss_figure(run, None, SETTINGS, keras_loss=True), "best epoch (this run)")
    assert list(marker.x) == [2] and list(marker.y) == [pytest.approx(0.50)]


def test_gap_band_names_last_gap(run):
    """The shaded generalization gap is named with val minus train at the run's last epoch."""
    fig = figures.loss_figure(run, None, SETTINGS)
    (band,) = [t for t in fig.data if t.fill == "toself"]
    gap = run[-1].val_data_loss - run[-1].data_loss
    assert band.name == f"generalization gap (this run): {gap:.3f} at epoch 5"
    assert len(band.x) == 2 * len(run)


def test_hover_shows_epoch_and_four_decimals(run):
    """Hovering a curve shows the epoch and the value to 4 decimals."""
    t = trace(figures.loss_figure(run, None, SETTINGS), "validation (this run)")
    assert "epoch %{x}" in t.hovertemplate and "%{y:.4f}" in t.hovertemplate


def test_epoch_axis_fixed(run):
    """The x-axis spans all planned epochs even when only a few have arrived."""
    for build in (figures.loss_figure, figures.metrics_figure):
        fig = build(run[:2], None, SETTINGS)
        assert tuple(fig.layout.xaxis.range) == (0.5, 10.5)
    assert tuple(figures.loss_figure(run, None, SETTINGS, total_epochs=30).layout.xaxis.range) == (0.5, 30.5)


def test_run_that_is_baseline_drawn_once(run):
    """When the run is the baseline its curves appear once, not again as a dashed copy."""
    for fig in (figures.loss_figure(run, run, Settings()), figures.metrics_figure(run, run, Settings())):
        assert not [t for t in fig.data if "baseline" in t.name]
    assert not [t for t in figures.loss_figure(run, curve([0.9]), Settings()).data if "baseline" in t.name]


def test_empty_inputs_give_valid_figures():
    """No epochs yet (empty lists, None) gives figures without traces that still serialise."""
    built = [
        figures.loss_figure([], None, SETTINGS),
        figures.loss_figure([], [], SETTINGS, keras_loss=True),
        figures.metrics_figure([], None, SETTINGS),
        figures.weights_histogram(None, None),
        figures.weight_norms_figure([], None),
    ]
    for fig in built:
        assert isinstance(fig, go.Figure) and len(fig.data) == 0
        fig.to_json()


def test_metrics_traces_and_auc(run, baseline):
    """Accuracy curves equal the records; the AUC curve appears only when AUC was recorded."""
    fig = figures.metrics_figure(run, baseline, SETTINGS)
    assert list(trace(fig, "validation accuracy (this run)").y) == [r.val_accuracy for r in run]
    assert list(trace(fig, "train accuracy (baseline)").y) == [r.accuracy for r in baseline]
    assert list(trace(fig, "validation AUC (this run)").y) == [0.9] * 5
    no_auc = figures.metrics_figure(curve([0.5, 0.4], auc=None), None, SETTINGS)
    assert [t.name for t in no_auc.data] == ["train accuracy (this run)", "validation accuracy (this run)"]


def test_weights_histogram_shares():
    """Bars are each bin's share of the weights; the baseline is a dashed step line; |w|<1e-3 is named."""
    counts = np.arange(BINS)
    ours, theirs = record(5, 0.3, hist=tuple(counts), small=0.125), record(5, 0.4, small=0.0)
    fig = figures.weights_histogram(ours, theirs)
    bars, step = fig.data
    np.testing.assert_allclose(bars.y, counts / counts.sum())
    np.testing.assert_allclose(bars.x, (np.array(HIST_EDGES[:-1]) + np.array(HIST_EDGES[1:])) / 2)
    np.testing.assert_allclose(step.y, np.full(BINS, 1 / BINS))
    assert step.line.dash == "dash"
    assert "12.5% of |w| < 0.001" in bars.name and "0.0% of |w| < 0.001" in step.name


def test_weights_histogram_one_side_only():
    """A missing baseline, or a baseline that is the run's own record, draws the run alone."""
    ours = record(1, 0.3)
    assert len(figures.weights_histogram(ours, None).data) == 1
    assert len(figures.weights_histogram(ours, ours).data) == 1
    assert len(figures.weights_histogram(None, ours).data) == 1


def test_weight_norms(run, baseline):
    """One curve per hidden layer and side, with the layer's kernel norm per epoch."""
    fig = figures.weight_norms_figure(run, baseline)
    assert len(fig.data) == 4
    assert list(trace(fig, "layer 2 (this run)").y) == [r.layers[1].l2_norm for r in run]
    assert trace(fig, "layer 1 (baseline)").line.dash == "dash"


def test_records_frame_columns(run):
    """One row per epoch with flat per-layer columns and the given label."""
    frame = figures.records_frame(run, "run")
    assert list(frame.columns) == [
        "run", "epoch", "data_loss", "val_data_loss", "penalty", "loss", "val_loss", "accuracy",
        "val_accuracy", "val_auc", "seconds",  # the hand-made records carry no precision, recall, ...
        "layer1_l2_norm", "layer1_small_fraction", "layer2_l2_norm", "layer2_small_fraction",
    ]  # fmt: skip
    assert len(frame) == 5 and set(frame["run"]) == {"run"}
    assert list(frame["layer2_l2_norm"]) == [r.layers[1].l2_norm for r in run]


def test_curves_csv(run, baseline):
    """The CSV holds baseline rows then run rows, labelled, with every record's values."""
    table = pd.read_csv(io.StringIO(figures.curves_csv(run[:3], baseline)))
    assert list(table["run"]) == ["baseline"] * 5 + ["run"] * 3
    assert list(table["val_data_loss"]) == [r.val_data_loss for r in baseline + run[:3]]
    assert "layer1_small_fraction" in table.columns


def test_curves_csv_empty():
    """With no epochs at all the CSV is a header row only."""
    text = figures.curves_csv([], None)
    assert text.strip().startswith("run,epoch,data_loss") and len(text.strip().splitlines()) == 1


def test_figures_carry_no_plotly_template():
    """Streamlit's theme styles the charts; a template would be most of the JSON every tab receives."""
    import json

    run = [record(e, 0.5 + 0.1 * e) for e in (1, 2, 3)]
    settings = Settings(l2=0.001, epochs=3)
    figs = (
        figures.loss_figure(run, run[:2], settings), figures.metrics_figure(run, run[:2], settings),
        figures.weights_histogram(run[-1], run[0]), figures.weight_norms_figure(run, run[:2], 3),
    )  # fmt: skip
    for fig in figs:
        template = json.dumps(fig.to_plotly_json()["layout"].get("template", {}), default=str)
        assert len(template) < 100  # plotly_white's is about 6,500 characters


def test_pinned_runs_are_dotted_validation_curves_each_in_its_own_colour(run, baseline):
    pinned = (("L2 0.001", curve([0.6, 0.5])), ("dropout 0.5", curve([0.55, 0.45, 0.4])))
    loss = figures.loss_figure(run, baseline, SETTINGS, pinned=pinned)
    metrics = figures.metrics_figure(run, baseline, SETTINGS, pinned=pinned)
    first, second = (
        trace(loss, "validation (pin 1: L2 0.001)"),
        trace(loss, "validation (pin 2: dropout 0.5)"),
    )
    assert list(first.y) == [0.6, 0.5] and list(second.x) == [1, 2, 3]
    assert first.line.dash == second.line.dash == "dot"
    colours = {first.line.color, second.line.color}
    assert len(colours) == 2 and not colours & set(figures.COLORS.values())
    assert list(trace(metrics, "validation accuracy (pin 2: dropout 0.5)").y) == [
        1 - 0.55 / 2,
        1 - 0.45 / 2,
        0.8,
    ]
    # the run's and baseline's own traces are unchanged by pins
    without = figures.loss_figure(run, baseline, SETTINGS)
    assert len(loss.data) == len(without.data) + 2


def test_the_epoch_axis_reaches_a_longer_pinned_run(run, baseline):
    pinned = (("epochs 30", curve([0.5] * 30)),)
    loss = figures.loss_figure(run, baseline, SETTINGS, pinned=pinned)
    assert list(loss.layout.xaxis.range) == [0.5, 30.5]


def test_a_regressions_loss_and_mae_are_on_a_log_axis_and_a_classifiers_are_not():
    houses, imdb = Settings(dataset="houses"), Settings()
    assert figures.loss_figure([], None, houses).layout.yaxis.type == "log"
    assert figures.metrics_figure([], None, houses).layout.yaxis.type == "log"
    assert figures.loss_figure([], None, imdb).layout.yaxis.type is None
    assert figures.metrics_figure([], None, imdb).layout.height == figures.METRICS_PX


def _regression_curve(vals):
    """Boston-like records: squared errors falling by orders of magnitude, and an MAE."""
    import dataclasses

    return [dataclasses.replace(r, mae=r.data_loss**0.5, val_mae=r.val_data_loss**0.5) for r in curve(vals)]


def test_a_log_axis_range_fits_the_data_bands_and_stars_in_log10_units():
    """Boston's loss chart on its log axis: the range is the figure's own values' (folds, band, stars),
    a few percent of a decade beyond, in plotly's log10 units; not autorange (it ran to 10^13)."""
    boston = Settings(dataset="boston", l2=1e-3, epochs=6)
    folds = [_regression_curve([508 * s, 80 * s, 20 * s, 12 * s, 11 * s, 14 * s]) for s in (0.8, 1.0, 1.2)]
    from regviz.records import mean_records

    fig = figures.loss_figure(mean_records(folds), None, boston, folds=(folds, None))
    values = [y for t in fig.data for y in t.y if y is not None and y > 0]
    low, high = fig.layout.yaxis.range
    assert np.log10(min(values)) - 0.2 < low < np.log10(min(values))
    assert np.log10(max(values)) < high < np.log10(max(values)) + 0.2
    assert high < np.log10(508 * 1.2) + 0.2  # about 10^2.8, not 10^13
    mae = figures.metrics_figure(folds[0], None, boston)
    assert mae.layout.yaxis.range[1] == pytest.approx(np.log10(max(r.mae for r in folds[0])), abs=0.2)
    imdb = figures.loss_figure(curve([0.5, 0.4]), None, SETTINGS)
    assert imdb.layout.yaxis.range is None  # a linear axis keeps plotly's autorange


def test_the_accuracy_chart_shows_the_main_metric_and_the_others_are_one_click_away(run, baseline):
    """Training and validation accuracy are drawn; AUC and the other metrics wait in the legend."""
    fig = figures.metrics_figure(run, baseline, SETTINGS)
    shown = {t.name for t in fig.data if t.visible is not False and t.visible != "legendonly"}
    assert shown == {f"{what} ({side})" for what in ("train accuracy", "validation accuracy")
                     for side in ("this run", "baseline")}  # fmt: skip
    assert trace(fig, "validation AUC (this run)").visible == "legendonly"


def test_the_legend_is_above_the_plot_under_the_title(run, baseline):
    """Title, then the legend in rows, then the plot: the legend never meets the x-axis title."""
    for fig in (figures.loss_figure(run, baseline, SETTINGS), figures.weights_histogram(run[-1], None)):
        assert fig.layout.legend.orientation == "h" and fig.layout.legend.yanchor == "top"
        assert fig.layout.title.y > fig.layout.legend.y > 0.5
