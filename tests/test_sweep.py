"""Sweep grids (regviz/sweep.py): what varies, what is fixed, and every bad grid as one clear message."""

from __future__ import annotations

import dataclasses

import pytest

from regviz import sweep
from regviz.settings import Settings, SettingsError
from tests.test_runs import record


def test_comma_lists_vary_and_single_values_stay_fixed():
    base, grid = sweep.read_grid({"l2": "0,0.0001,0.001", "dropout": "0,0.5", "width": "64"})
    assert base == Settings(width=64)
    assert grid == {"l2": [0.0, 0.0001, 0.001], "dropout": [0.0, 0.5]}
    cells = sweep.cells(base, grid)
    assert len(cells) == 6 and len(set(cells)) == 6
    assert cells[0] == Settings(width=64) and cells[1] == Settings(width=64, dropout=0.5)  # dropout fastest
    assert all(c.width == 64 for c in cells)


@pytest.mark.parametrize(
    "given, error, words",
    [
        ({"l2": "0,5"}, SettingsError, "a number from 0.0 to 0.1"),
        ({"width": "4,x"}, SettingsError, "width"),
        ({"l2": "0.001,0.001"}, SettingsError, "each value once"),
        ({"l2": "0,,0.1"}, SettingsError, "none empty"),
        ({"l2": "0.001"}, sweep.GridError, "no setting varies"),
        ({"l2": "0,0.1", "l1": "0,0.1", "width": "4,8"}, sweep.GridError, "at most 2 at once"),
        (
            {"l2": "0,1e-5,1e-4,1e-3,1e-2,0.1", "dropout": "0,0.1,0.2,0.3,0.4,0.5,0.6"},
            sweep.GridError,
            "42 cells",
        ),
        ({"seed": "1,2", "epochs": "0"}, SettingsError, "epochs"),
    ],
)
def test_a_bad_grid_is_one_message(given, error, words):
    with pytest.raises(error, match=words):
        sweep.read_grid(given)


def test_thirty_six_cells_are_allowed():
    _, grid = sweep.read_grid({"l2": "0,1e-5,1e-4,1e-3,1e-2,0.1", "dropout": "0,0.1,0.2,0.3,0.4,0.5"})
    assert len(sweep.cells(Settings(), grid)) == sweep.MAX_CELLS


def test_cell_lines_and_the_summary_name_the_best_cell():
    grid = {"l2": [0.0, 0.001]}
    runs = [[dataclasses.replace(record(e), val_data_loss=v) for e, v in enumerate(vals, 1)] for vals in
            ([0.5, 0.4, 0.45], [0.5, 0.38, 0.39])]  # fmt: skip
    lines = [
        sweep.cell_line(Settings(l2=l2), grid, records, stored)
        for l2, records, stored in zip((0.0, 0.001), runs, (True, False), strict=True)
    ]
    assert lines[0]["cell"] == {"l2": 0.0} and lines[0]["best_epoch"] == 2 and lines[0]["stored"] is True
    assert lines[1]["min_val_data_loss"] == pytest.approx(0.38)
    assert Settings(**lines[1]["settings"]) == Settings(l2=0.001)  # the whole run, to train it again
    summary = sweep.summary_line(lines)["summary"]
    assert summary["best"]["cell"] == {"l2": 0.001} and summary["cells"] == 2 and summary["stored"] == 1


def run_of(val_losses: list[float], train_losses: list[float] | None = None, acc=None) -> list:
    """Records with these validation (and training) data losses and validation accuracies."""
    train_losses = train_losses or [0.1] * len(val_losses)
    acc = acc or [0.5] * len(val_losses)
    return [
        dataclasses.replace(record(i + 1), val_data_loss=v, data_loss=t, val_accuracy=a)
        for i, (v, t, a) in enumerate(zip(val_losses, train_losses, acc, strict=True))
    ]


def test_each_metric_reads_its_number_off_the_records():
    """Computed here by hand from the lists, not by the functions under test."""
    records = run_of([0.5, 0.3, 0.4], train_losses=[0.4, 0.2, 0.1], acc=[0.6, 0.9, 0.8])
    read = {name: m.read(records) for name, m in sweep.METRICS.items()}
    assert read["min_val_loss"] == 0.3 and read["last_val_loss"] == 0.4 and read["best_epoch"] == 2
    assert read["gap"] == pytest.approx(0.4 - 0.1) and read["val_accuracy"] == 0.9
    assert read["val_auc"] is None  # the hand-made records have no AUC
    assert all(m.read([]) is None for m in sweep.METRICS.values())


def test_the_best_cell_follows_the_metrics_direction_and_skips_unfinished_cells():
    assert sweep.best_cell([0.4, None, 0.2, 0.2], "min_val_loss") == 2  # the first of equals
    assert sweep.best_cell([0.4, None, 0.2], "val_accuracy") == 0
    assert sweep.best_cell([None, None], "gap") is None


def test_a_sweep_link_round_trips_and_keeps_the_base_settings():
    base = Settings(dataset="synthetic", width=64)
    grid = {"l2": [0.0, 0.0001, 0.001], "dropout": [0.0, 0.5]}
    assert sweep.encode(grid) == ["l2:0,0.0001,0.001", "dropout:0,0.5"]
    assert sweep.read_link(base, sweep.encode(grid), "gap") == (grid, "gap")
    assert sweep.read_link(base, ["width:4,16"], None) == ({"width": [4, 16]}, sweep.DEFAULT_METRIC)
    assert all(c.dataset == "synthetic" for c in sweep.cells(base, grid))


@pytest.mark.parametrize(
    "vary, metric, words",
    [
        (["l2"], None, "setting:value"),
        (["l2:0,0.001", "l2:0,0.01"], None, "each setting once"),
        (["l2:0.001"], None, "at least two values"),
        (["l2:0,0.001"], "loss", "metric='loss' is not one of"),
        (["nope:1,2"], None, "unknown setting"),
        (["width:1,2,4,8,16,32,64", "depth:1,2,3,4", "l2:0,0.1"], None, "at most 2"),
    ],
)
def test_a_bad_sweep_link_is_one_message(vary, metric, words):
    with pytest.raises((SettingsError, sweep.GridError)) as e:
        sweep.read_link(Settings(), vary, metric)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_every_menu_value_is_a_valid_setting_and_the_first_picks_are_on_the_menu():
    for name, values in sweep.MENUS.items():
        assert all(getattr(Settings().replace(**{name: v}), name) == v for v in values)
        assert set(sweep.PICKED[name]) <= set(values) and len(sweep.PICKED[name]) >= 2
