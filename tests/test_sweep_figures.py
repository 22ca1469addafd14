"""The sweep's figures (regviz/sweep_figures.py): cells where their values say, coloured by the metric,
the best marked, unfinished cells named by what their run does, a click target per cell."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regviz import sweep_figures

GRID = {"l2": [0.0, 0.001], "dropout": [0.0, 0.5]}


def test_the_heatmap_puts_each_cell_at_its_values_coloured_by_its_metric():
    values = [0.30, None, 0.25, 0.28]
    fig = sweep_figures.heatmap(GRID, values, ["done", "3/20", "done", "done"], "min_val_loss")
    (cells,) = fig.data
    assert list(cells.x) == ["0", "0", "0.001", "0.001"] and list(cells.y) == ["0", "0.5", "0", "0.5"]
    colors = list(cells.marker.color)
    assert colors[0] == 0.30 and math.isnan(colors[1]) and colors[2:] == [0.25, 0.28]
    assert list(cells.text) == ["0.300", "3/20", "0.250", "0.280"]
    assert list(cells.customdata) == [0, 1, 2, 3]  # what a click reports: the cell's index
    assert [w == 3 for w in cells.marker.line.width] == [False, False, True, False]  # 0.25 is best
    assert cells.marker.reversescale is True  # lower is better: the best cell is the bright one
    assert "L2 penalty = 0.001" in cells.hovertemplate[2] and "Dropout rate = 0" in cells.hovertemplate[2]


def test_a_metric_where_higher_is_better_marks_the_highest():
    fig = sweep_figures.heatmap(GRID, [0.8, 0.9, 0.7, 0.85], ["done"] * 4, "val_accuracy")
    assert [w == 3 for w in fig.data[0].marker.line.width] == [False, True, False, False]
    assert fig.data[0].marker.reversescale is False


def test_the_best_epoch_is_written_as_a_whole_number():
    fig = sweep_figures.heatmap(GRID, [3.0, 5.0, 4.0, 7.0], ["done"] * 4, "best_epoch")
    assert list(fig.data[0].text) == ["3", "5", "4", "7"]


def test_the_validation_curve_of_a_penalty_is_on_a_log_axis_with_zero_a_decade_below():
    xs = [0.0, 1e-4, 1e-3, 1e-2]
    fig = sweep_figures.validation_curve("l2", xs, [0.30, 0.28, None, 0.33], "min_val_loss")
    line, best = fig.data
    assert fig.layout.xaxis.type == "log"
    assert list(line.x) == pytest.approx([1e-5, 1e-4, 1e-2]) and list(line.y) == [0.30, 0.28, 0.33]
    assert list(line.customdata) == [0, 1, 3]  # the unfinished cell is left out until it is done
    assert list(fig.layout.xaxis.ticktext) == ["0", "0.0001", "0.001", "0.01"]
    assert list(best.x) == [1e-4] and best.name == "best: 0.0001" and best.marker.symbol == "star"
    assert "(3 of 4 cells done)" in fig.layout.title.text


def test_a_validation_curve_of_dropout_is_linear_and_has_no_star_before_any_cell_is_done():
    fig = sweep_figures.validation_curve("dropout", [0.0, 0.5], [None, None], "gap")
    assert fig.layout.xaxis.type is None and len(fig.data) == 1 and list(fig.data[0].x) == []


def test_k_fold_cells_get_a_band_of_one_standard_deviation_over_their_folds():
    """The issue's 'mean ± band': each K-fold cell's spread over its folds around its (mean) value."""
    from regviz import sweep

    fold_records = [[_rec(0.30)], [_rec(0.34)], [_rec(0.32)]]
    sd = sweep.fold_spread("min_val_loss", fold_records)
    assert sd == pytest.approx(float(np.std([0.30, 0.34, 0.32])))
    fig = sweep_figures.validation_curve("l2", [0.0, 1e-3], [0.32, 0.30], "min_val_loss", [sd, 0.01])
    band = fig.data[0]
    assert band.fill == "toself" and list(band.y) == pytest.approx([0.32 + sd, 0.31, 0.29, 0.32 - sd])
    assert sweep.fold_spread("min_val_loss", [[_rec(0.3)]]) is None  # one fold: no spread


def _rec(val_loss):
    import dataclasses

    from tests.test_runs import record

    return dataclasses.replace(record(1), val_data_loss=val_loss)


def test_the_heatmap_says_how_far_apart_its_values_are():
    """A 2 % spread coloured over the whole scale is named as such in the title."""
    fig = sweep_figures.heatmap(GRID, [0.300, 0.303, 0.306, 0.301], ["done"] * 4, "min_val_loss")
    assert "colours span 0.3 to 0.306: 2.0% apart" in fig.layout.title.text


def test_with_the_gap_metric_an_underfitting_cell_is_marked_and_never_best():
    """The smallest gap belongs to a cell whose validation loss is far above the best: not outlined."""
    gaps, val = [0.01, 0.10, 0.05, 0.20], [0.60, 0.30, 0.31, 0.29]
    fig = sweep_figures.heatmap(GRID, gaps, ["done"] * 4, "gap", val_losses=val)
    (cells,) = fig.data
    assert [w == 3 for w in cells.marker.line.width] == [False, False, True, False]
    assert cells.text[0].endswith(sweep_figures.UNDERFIT_MARK) and "underfits" in fig.layout.title.text
    plain = sweep_figures.heatmap(GRID, gaps, ["done"] * 4, "gap")
    assert plain.data[0].marker.line.width[0] == 3  # without validation losses nothing can be said
