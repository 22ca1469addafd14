"""A sweep: one or two settings varied over a grid of values, every other setting fixed; a cell per run.

The grid is read from strings (`l2="0,0.0001,0.001"`), each value checked as the setting itself is,
so a bad grid is one clear message (SettingsError) before anything trains. No tensorflow here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from regviz import settings as settings_mod
from regviz.records import EpochRecord, best_epoch
from regviz.settings import Settings, SettingsError

MAX_CELLS = 36
MAX_VARIED = 2


def menus(of: type = Settings) -> dict[str, tuple]:
    """What a sweep may vary, in its menu's order, and the values offered for each (the settings table's)."""
    return {f.name: settings_mod.sweep_values(f) for f in settings_mod.sweepable(of)}


def picks(of: type = Settings) -> dict[str, tuple]:
    """The values picked when a setting is first chosen to vary."""
    return {f.name: f.metadata["sweep"].picked for f in settings_mod.sweepable(of)}


def log_axes(of: type = Settings) -> frozenset[str]:
    """The settings spread over decades, which a sweep's curve draws on a log axis."""
    return frozenset(f.name for f in settings_mod.sweepable(of) if f.metadata["axis"] == "log")


MENUS = menus()
PICKED = picks()
LOG_SETTINGS = log_axes()


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
    """One cell's result: its varied values, all its settings, best epoch, minimum validation data loss,
    whether it came from the store, its key."""
    best = best_epoch(records)
    return {
        "cell": {name: getattr(settings, name) for name in grid},
        "settings": settings.as_dict(),
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


# ---- what a cell shows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One number read off a run's records, and which way is better."""

    label: str
    read: Callable[[list[EpochRecord]], float | None]
    lower_is_better: bool = True
    integer: bool = False


def _min_val_loss(records: list[EpochRecord]) -> float | None:
    best = best_epoch(records)
    return records[best - 1].val_data_loss if best else None


def _highest(key: str) -> Callable[[list[EpochRecord]], float | None]:
    def read(records: list[EpochRecord]) -> float | None:
        values = [getattr(r, key) for r in records if getattr(r, key) is not None]
        return max(values) if values else None

    return read


def _lowest(key: str) -> Callable[[list[EpochRecord]], float | None]:
    def read(records: list[EpochRecord]) -> float | None:
        values = [getattr(r, key) for r in records if getattr(r, key) is not None]
        return min(values) if values else None

    return read


METRICS = {
    "min_val_loss": Metric("lowest validation loss", _min_val_loss),
    "last_val_loss": Metric("validation loss, last epoch", lambda rs: rs[-1].val_data_loss if rs else None),
    "best_epoch": Metric("best epoch (lowest validation loss)", best_epoch, integer=True),
    "gap": Metric(
        "generalization gap at the last epoch (validation minus training loss)",
        lambda rs: rs[-1].val_data_loss - rs[-1].data_loss if rs else None,
    ),
    "val_accuracy": Metric("highest validation accuracy", _highest("val_accuracy"), lower_is_better=False),
    "val_auc": Metric("highest validation ROC AUC", _highest("val_auc"), lower_is_better=False),
    "val_top3": Metric("highest validation top-3 accuracy", _highest("val_top3"), lower_is_better=False),
    "val_mae": Metric("lowest validation MAE", _lowest("val_mae")),
}
DEFAULT_METRIC = "min_val_loss"


def fold_spread(metric: str, fold_records) -> float | None:
    """For a K-fold cell: the standard deviation over its folds of the metric read off each fold."""
    values = [METRICS[metric].read(records) for records in fold_records]
    if len(values) < 2 or any(v is None for v in values):
        return None
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def best_cell(values: list[float | None], metric: str) -> int | None:
    """Index of the best value (None values skipped; the first of equals), None when no value is known."""
    known = [(v, i) for i, v in enumerate(values) if v is not None]
    if not known:
        return None
    sign = 1 if METRICS[metric].lower_is_better else -1
    return min(known, key=lambda vi: (sign * vi[0], vi[1]))[1]


# ---- a sweep as a link: ?vary=l2:0,0.001&vary=dropout:0,0.5&metric=gap -----------------------------


def encode(grid: dict[str, list[Any]]) -> list[str]:
    """The link's `vary` values of a grid, one per varied setting."""
    return [f"{name}:{','.join(_text(v) for v in values)}" for name, values in grid.items()]


def read_link(base: Settings, vary: list[str], metric: str | None) -> tuple[dict[str, list[Any]], str]:
    """The grid and metric a link asks for over the base settings. Raises SettingsError or GridError
    with one line for a bad `vary` (unknown setting, bad value, too many cells) or metric."""
    given: dict[str, str] = {}
    for item in vary:
        name, sep, values = item.partition(":")
        if not sep or not name or name in given:
            raise GridError(f"vary={item[:60]!r}: expected setting:value,value,... with each setting once")
        if "," not in values:
            raise GridError(f"vary={item[:60]!r}: give at least two values, separated by commas")
        given[name.strip()] = values
    if metric is not None and metric not in METRICS:
        raise GridError(f"metric={metric[:40]!r} is not one of {', '.join(METRICS)}")
    fixed = {k: v for k, v in base.to_params().items() if k not in given}
    _, grid = read_grid({**fixed, **given})
    return grid, metric or DEFAULT_METRIC


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
