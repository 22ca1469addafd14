"""A sweep: one or two settings varied over a grid of values, every other setting fixed; a cell per run.

The grid is read from strings (`l2="0,0.0001,0.001"`), each value checked as the setting itself is,
so a bad grid is one clear message (SettingsError) before anything trains. No tensorflow here.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from regviz.records import EpochRecord, best_epoch
from regviz.settings import Settings, SettingsError

MAX_CELLS = 36
MAX_VARIED = 2


class GridError(ValueError):
    """The grid as a whole is not allowed (too many cells or varied settings, or none varied)."""


def read_grid(given: dict[str, str]) -> tuple[Settings, dict[str, list[Any]]]:
    """The fixed settings and the varied ones' values from option strings: a value with commas (or a
    list) is varied, a single value is fixed. Raises SettingsError for an unknown setting, a value out
    of range or a repeated value, GridError for more than MAX_VARIED varied settings, more than
    MAX_CELLS cells, or none varied."""
    fixed, varied = {}, {}
    for name, raw in given.items():
        values = [v.strip() for v in str(raw).split(",")]
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            varied[name] = values
    base = Settings.from_params(fixed)
    grid: dict[str, list[Any]] = {}
    for name, values in varied.items():
        typed = [getattr(Settings.from_params({**fixed, name: v}), name) for v in values if v != ""]
        if len(typed) != len(values):
            raise SettingsError(name, ",".join(values), "comma-separated values, none empty")
        if len(set(typed)) != len(typed):
            raise SettingsError(name, ",".join(values), "each value once")
        grid[name] = typed
    if not grid:
        raise GridError("no setting varies: give one or two as comma-separated values, e.g. --l2 0,0.001")
    if len(grid) > MAX_VARIED:
        raise GridError(f"{len(grid)} settings vary ({', '.join(grid)}); at most {MAX_VARIED} at once")
    cells = math.prod(len(v) for v in grid.values())
    if cells > MAX_CELLS:
        sizes = " x ".join(f"{len(v)} {name} values" for name, v in grid.items())
        raise GridError(f"the grid has {cells} cells ({sizes}); at most {MAX_CELLS}")
    return base, grid


def cells(base: Settings, grid: dict[str, list[Any]]) -> list[Settings]:
    """Every combination of the varied values over the fixed settings, the last setting varying fastest."""
    names = list(grid)
    return [
        base.replace(**dict(zip(names, combo, strict=True))) for combo in itertools.product(*grid.values())
    ]


def cell_line(
    settings: Settings, grid: dict[str, list[Any]], records: list[EpochRecord], stored: bool
) -> dict:
    """One cell's result: its varied values, best epoch, minimum validation data loss, whether stored."""
    best = best_epoch(records)
    return {
        "cell": {name: getattr(settings, name) for name in grid},
        "best_epoch": best,
        "min_val_data_loss": records[best - 1].val_data_loss if best else None,
        "stored": stored,
        "key": settings.key(),
    }


def summary_line(lines: list[dict]) -> dict:
    """The sweep's summary: the cell with the lowest minimum validation data loss."""
    scored = [line for line in lines if line["min_val_data_loss"] is not None]
    best = min(scored, key=lambda line: line["min_val_data_loss"]) if scored else None
    return {"summary": {"cells": len(lines), "stored": sum(line["stored"] for line in lines), "best": best}}
