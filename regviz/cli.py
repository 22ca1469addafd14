"""Command line: `python -m regviz train --width 16 --l2 0.001` prints one JSON line per epoch;
`python -m regviz sweep --l2 0,0.001 --dropout 0,0.5` one JSON line per cell of a grid;
`python -m regviz train --csv houses.csv --target price` trains on your own file as the page does."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from regviz import problems
from regviz import settings as settings_mod
from regviz.records import mean_records, summary
from regviz.settings import Settings, SettingsError

if TYPE_CHECKING:
    from regviz.data.csvfile import Prepared, Table

BAD_INPUT = 2  # argparse's own exit code for bad arguments
FAILED = 1
SESSION = "command line"  # the service's session holding a --csv file while this command runs
SHOWN_COLUMNS = 30  # a file's columns named when --target is missing or unknown


class BadInput(ValueError):
    """Arguments that cannot be used; the message is one line."""


def parser() -> argparse.ArgumentParser:
    """Arguments derived from the settings table: one option per setting, same names as in the URL."""
    p = argparse.ArgumentParser(
        prog="python -m regviz", description="Train and inspect regularized networks."
    )
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="train one run (or read it from the store) and print its epochs as JSON"
    )
    _add_settings(train)
    train.add_argument(
        "--no-store", action="store_true", help="train even if the run is stored; store nothing"
    )
    _add_upload(train, keep=True)
    code = sub.add_parser("code", help="print the Keras code that builds the model of these settings")
    _add_settings(code)
    _add_upload(code, keep=False)
    sweep = sub.add_parser(
        "sweep",
        help="train a grid of runs: one or two settings given as comma-separated values "
        "(e.g. --l2 0,0.0001,0.001 --dropout 0,0.5), at most 36 cells; one JSON line per cell, then the best",
    )
    _add_settings(sweep, values="a comma-separated list varies it")
    sweep.add_argument(
        "--no-store", action="store_true", help="train every cell even if stored; store nothing"
    )
    sweep.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="train N cells at once, each in a worker process of its own (default 1: one at a time, in "
        "this process); with RAY_ADDRESS set, the cells go to that Ray cluster instead",
    )  # fmt: skip
    from regviz import prefetch  # the prefetch subcommand: its options live beside its code

    prefetch.add_parser(sub)
    return p


def _add_settings(p: argparse.ArgumentParser, values: str = "") -> None:
    for f in settings_mod.fields():
        option = "--" + f.name.replace("_", "-")
        extra = f"; {values}" if values else ""
        p.add_argument(
            option,
            dest=f.name,
            metavar=f.name.upper(),
            default=None,
            help=f"{f.metadata['help']}; {settings_mod.allowed(f)} (default {f.default}){extra}",
        )


def _add_upload(p: argparse.ArgumentParser, keep: bool) -> None:
    group = p.add_argument_group("your own data (as on the page's 'Your own data')")
    group.add_argument(
        "--csv", metavar="PATH",
        help="a CSV (or tab-, semicolon- or pipe-separated) file, read and typed as the page reads an "
        "upload, with the page's size limit; sets the dataset (so no --dataset with it)",
    )  # fmt: skip
    group.add_argument("--target", metavar="COLUMN", help="the column to predict (required with --csv)")
    group.add_argument(
        "--problem", choices=problems.PROBLEMS, help="the problem type, over the one inferred from the target"
    )
    if keep:
        group.add_argument(
            "--keep-results", action="store_true",
            help="store the runs' curves under a hash of the file (never the file, its rows or its column "
            "names); without it nothing trained on the file is stored",
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    args = parser().parse_args(argv)
    if args.command == "prefetch":
        from regviz import prefetch

        return prefetch.command(args)
    given = {k: v for k, v in vars(args).items() if k in _names() and v is not None}
    if args.command == "sweep":
        if args.workers < 1:
            print(f"error: --workers {args.workers}: give an integer >= 1", file=sys.stderr)
            return BAD_INPUT
        return _sweep(given, args.no_store, args.workers)
    try:
        upload = _upload(args, given) if _upload_given(args) else None
        settings = Settings.from_params({**given, **({"dataset": upload.name} if upload else {})})
    except (BadInput, SettingsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT
    if upload is not None:
        _notices(upload)
    if args.command == "code":
        from regviz.listing import keras_code

        print(keras_code(settings, upload=upload, path=args.csv), end="")
        return 0
    return _train(settings, args.no_store, upload, args.keep_results)


def _names() -> set[str]:
    return {f.name for f in settings_mod.fields()}


def _upload_given(args: argparse.Namespace) -> bool:
    """True when any option of your own data is given."""
    return any(
        getattr(args, name, None) not in (None, False)
        for name in ("csv", "target", "problem", "keep_results")
    )


def _upload(args: argparse.Namespace, given: dict[str, str]) -> Prepared:
    """The --csv file prepared for --target (and --problem) as the page prepares an upload; BadInput
    with one line if the options or the file cannot be used."""
    if args.csv is None:
        raise BadInput("--target, --problem and --keep-results go with --csv PATH")
    if "dataset" in given:
        raise BadInput("--csv sets the dataset: give --csv or --dataset, not both")
    from regviz.data import csvfile  # pandas: only when a file is given

    try:
        table = _read_csv(args.csv)
        if args.target not in table.frame.columns:
            raise BadInput(_no_target(table, args.target))
        return csvfile.prepare(table, args.target, args.problem)
    except csvfile.UploadError as e:
        raise BadInput(str(e)) from None
    except OSError as e:
        raise BadInput(f"cannot read {args.csv}: {e.strerror or e}") from None


def _read_csv(path: str) -> Table:
    """The file's table as read_table reads an upload, a file over the size limit refused unread."""
    from regviz.data import csvfile

    limit = csvfile.MAX_MB * 2**20
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise csvfile.too_large(path, size)
        content = f.read(int(limit) + 1)  # a pipe has no size: one byte over the limit is refused
    return csvfile.read_table(content, path)


def _no_target(table: Table, target: str | None) -> str:
    """The one line for a missing or unknown --target: the file's columns, the first few of a wide one."""
    from regviz.data.csvfile import cell

    columns = [cell(c) for c in table.frame.columns]
    more = len(columns) - SHOWN_COLUMNS
    shown = ", ".join(columns[:SHOWN_COLUMNS]) + (f" and {more:,} more" if more > 0 else "")
    start = (
        f"{table.filename} has no column {cell(target)}"
        if target
        else "--target COLUMN is required with --csv"
    )
    return f"{start}; the columns of {table.filename}: {shown}"


def _notices(upload: Prepared) -> None:
    """What the page shows before training, on stderr, one line each: dropped, imputed, the type."""
    from regviz.data.csvfile import cell

    for line in upload.lines():
        print(f"regviz: {line}", file=sys.stderr)
    rows = f"{len(upload.y):,} rows, {upload.features:,} features"
    print(
        f"regviz: {upload.filename}: target {cell(upload.target)}, {upload.inferred}; {rows}; "
        f"dataset {upload.name}",
        file=sys.stderr,
    )


def _train(settings: Settings, no_store: bool, upload: Prepared | None = None, keep: bool = False) -> int:
    # heavy imports only once the arguments are known to be good: --help stays instant
    from regviz import data
    from regviz.runs.inprocess import HereService, train_here
    from regviz.runs.threads import ThreadExecutor
    from regviz.store import StoreError

    service = None
    try:
        # training in this process, through the same code as the app's workers
        service = HereService(executor=ThreadExecutor(train_here))
        if upload is not None:  # held while this command runs; its runs stored only when asked to
            service.add_upload(upload, SESSION)
            service.keep_results(upload.name, SESSION, keep)
        folds, all_stored = _train_folds(service, settings, no_store)
    except (data.DatasetUnavailable, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return FAILED
    finally:
        if service is not None:
            service.drop_uploads(SESSION)  # the command's session ends: its file is forgotten
    records = folds[0] if len(folds) == 1 else mean_records(folds)
    result = {"summary": _summary(settings, records, all_stored), "settings": settings.as_dict()}
    print(json.dumps({**result, "key": settings.key()}))
    return 0


def _train_folds(service, settings: Settings, no_store: bool) -> tuple[list[list], bool]:
    """Each fold's records (the run's own for hold-out), one JSON line per epoch; True if all stored."""
    folds, all_stored = [], True
    for fold in settings.fold_runs():
        stored = None if no_store else service.lookup(fold)
        stream = stored if stored is not None else service.fresh(fold, save=not no_store)
        folds.append([_emit(r, fold if fold is not settings else None) for r in stream])
        all_stored = all_stored and stored is not None
    return folds, all_stored


def _summary(settings: Settings, records, stored: bool) -> dict:
    """The run's summary (of the folds' mean curve for K-fold), with the problem type's main metric at
    the best epoch."""
    out = summary(records, stored)
    metric = problems.of_dataset(settings.dataset)[0].main.field
    best = out["best_epoch"]
    out[metric + "_at_best"] = getattr(records[best - 1], metric) if best else None
    if settings.validation != "holdout":
        out["folds"] = len(settings.fold_runs())
    return out


def _sweep(given: dict[str, str], no_store: bool, workers: int) -> int:
    from regviz import sweep

    try:
        base, grid = sweep.read_grid(given)
    except (SettingsError, sweep.GridError) as e:
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT
    from regviz import data
    from regviz.runs.pool import WorkersUnavailable
    from regviz.service import RunService
    from regviz.store import StoreError

    service = None
    try:
        service = RunService(executor=_sweep_executor(workers, base.dataset))
        lines = _train_cells(service, sweep.cells(base, grid), grid, no_store)
    except (data.DatasetUnavailable, StoreError, WorkersUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return FAILED
    finally:
        if service is not None:
            service.close(timeout=10)
    print(json.dumps(sweep.summary_line([line for line in lines if "error" not in line])))
    return FAILED if any("error" in line for line in lines) else 0


def _sweep_executor(workers: int, dataset: str):
    """Where the cells train: in this process one at a time, else worker processes (or Ray)."""
    from regviz.runs import ray_cluster

    if ray_cluster.configured():
        return ray_cluster.RayWorkers(warm_dataset=dataset)
    if workers == 1:
        from regviz.runs.inprocess import train_here
        from regviz.runs.threads import ThreadExecutor

        return ThreadExecutor(train_here)
    from regviz.runs.local import LocalWorkers

    return LocalWorkers(workers=workers, per_worker=1, warm_dataset=dataset)


def _train_cells(service, cells, grid, no_store: bool) -> list[dict]:
    """Every cell through a run manager (stored ones at once), one JSON line each as it finishes."""
    from regviz import sweep
    from regviz.runs import group
    from regviz.runs.manager import SWEEP, RunManager

    service.dataset_info(cells[0].dataset)  # a missing dataset fails here, once, before anything trains
    lookup = (lambda settings: None) if no_store else service.lookup
    save = (lambda settings, records: None) if no_store else service.save
    manager = RunManager(service.executor, lookup, save)
    runs, lines = [group.watch(manager, cell, "command line", SWEEP) for cell in cells], []
    pending = list(runs)
    while pending:
        pending[0].wait(0.2)
        for run in [r for r in pending if r.finished]:
            pending.remove(run)
            if run.state == "done":
                line = sweep.cell_line(run.settings, grid, run.records(), run.from_store)
            else:
                line = {"cell": {n: getattr(run.settings, n) for n in grid}, "error": run.error or run.state}
            lines.append(line)
            print(json.dumps(line), flush=True)
    return lines


def _emit(record, fold: Settings | None = None):
    where = {} if fold is None else {"fold": fold.fold + 1, "repeat": fold.repeat + 1}
    print(json.dumps({**where, **record.to_dict()}), flush=True)
    return record
