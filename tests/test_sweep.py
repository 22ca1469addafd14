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
    summary = sweep.summary_line(lines)["summary"]
    assert summary["best"]["cell"] == {"l2": 0.001} and summary["cells"] == 2 and summary["stored"] == 1
