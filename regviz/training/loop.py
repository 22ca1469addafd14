"""The epoch loop: the Keras model a run's settings describe, trained, one record per epoch as it ends.

Why not `model.fit`: the input is 98.7 % zeros, and fit pays per-step Python overhead and a dense
10000-wide matmul. Here an epoch is one call of a `tf.function` (or, when it would take longer than
`trainers.CALL_SECONDS`, a few calls, with the cancel event checked between them), batches stay
sparse, and only the first layer's matmul is done by a sparse kernel (`sparse.first_matmul`); every
other layer, the penalty (`model.losses`) and the loss are the Keras model's own. The optimizer's step
is Keras's `apply` (compiled by XLA from 128 units on) or, for narrower RMSprop and Adam models, the
same update as one TF kernel per weight (`optimizer_step.py`). Trainers are pooled across runs
(`trainers.py`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from regviz import data as datasets
from regviz import words
from regviz.noise import noisy_labels
from regviz.problems import BINARY, REGRESSION
from regviz.records import EpochRecord, LayerStats
from regviz.settings import Settings
from regviz.splits import HOLDOUT, ITERATED
from regviz.training.batches import coo_epoch, csr_batches_for
from regviz.training.metrics import validation_metrics
from regviz.training.sparse import tensors, uses_csr
from regviz.training.tf_private import regviz_graph_options
from regviz.training.trainers import pool


class Cancelled(Exception):
    """The run was cancelled before its last epoch."""


def train(settings: Settings, cancel: threading.Event | None = None, dataset=None) -> Iterator[EpochRecord]:
    """Train from scratch, yielding each epoch's record as soon as the epoch ends."""
    dataset = dataset or datasets.load(settings.dataset)
    x, y, x_val, y_val = rows_of(settings, dataset)
    if not isinstance(x, datasets.DenseRows):
        yield from fit(settings, x, y, x_val, y_val, cancel)
        return
    x, x_val = dataset.transform(x, x_val)  # standardised (and encoded) with the training part's statistics
    scale = target_scale(y) if dataset.scale_target else 1.0
    for record in fit_dense(settings, x, y / scale, x_val, y_val / scale, cancel):
        yield record.in_target_units(scale)


def target_scale(y: np.ndarray) -> float:
    """The training part's standard deviation of a regression target: an uploaded file's prices in
    dollars would otherwise start the network a million squared dollars away and take ages to learn."""
    spread = float(np.std(y))
    return spread if spread > 0 and np.isfinite(spread) else 1.0


def rows_of(settings: Settings, dataset):
    """(x_train, y_train, x_val, y_val) of a hold-out run, of one fold of a K-fold run, or of the
    final run (every training row; the test split, used by nothing else, in the validation's place),
    with label_noise of the training labels replaced (noise.py); the others are never touched."""
    x, y, x_val, y_val = _split(settings, dataset)
    s = settings
    return x, noisy_labels(y, s.label_noise, s.seed, dataset.problem, dataset.classes), x_val, y_val


def _split(settings: Settings, dataset):
    if settings.final:
        x, y = dataset.whole_training_split()
        return x, y, dataset.x_test, dataset.y_test
    if settings.validation == HOLDOUT:
        x, y = dataset.training_rows(settings.train_fraction)
        return x, y, dataset.x_val, dataset.y_val
    if settings.fold < 0:
        raise ValueError("a K-fold experiment trains as its fold runs (Settings.fold_runs)")
    shuffle = settings.validation == ITERATED
    s = settings
    return dataset.fold(s.folds, s.fold, s.repeat, s.seed, shuffle, s.train_fraction)


def fit_dense(settings, x_train, y_train, x_val, y_val, cancel=None) -> Iterator[EpochRecord]:
    """Train on dense (already standardised) rows, yielding per epoch: one traced call an epoch (a
    tabular epoch takes milliseconds, so a cancel is seen between epochs)."""
    start = time.perf_counter()
    orders = batch_orders(settings.seed, len(y_train))
    with regviz_graph_options():
        x, y = tf.constant(x_train.values), tf.constant(y_train, tf.float32)
        val = (tf.constant(x_val.values), tf.constant(y_val, tf.float32))
    with pool.lease(settings, x_train.n_cols) as trainer:
        for epoch in range(1, settings.epochs + 1):
            if _is_set(cancel):
                return
            with regviz_graph_options():
                sums = trainer.run_epoch(x, y, tf.constant(next(orders), tf.int32))
                evaluated = trainer.evaluate(*val)
            seconds = time.perf_counter() - start
            yield _record(epoch, sums, len(y_train), evaluated, y_val, seconds, trainer.kind)


def fit(settings, x_train, y_train, x_val, y_val, cancel=None) -> Iterator[EpochRecord]:
    """Train on the given sparse rows (the benchmark passes its own split), yielding per epoch."""
    start = time.perf_counter()
    orders = batch_orders(settings.seed, len(y_train))
    with regviz_graph_options():
        val = (tensors(x_val).csr(), tf.constant(y_val, tf.float32))
    batches_of = _batches_maker(settings, x_train, y_train)
    # epoch 1's batches are built on the other core while a trainer is leased and reset (python work)
    first_batches = _background.submit(batches_of, next(orders))
    with pool.lease(settings, x_train.n_cols) as trainer:
        batches = first_batches.result()
        for epoch in range(1, settings.epochs + 1):
            if _is_set(cancel):
                return
            # the next epoch's order is drawn now, so that its batches are built alongside this epoch
            upcoming = next(orders) if epoch < settings.epochs else None
            with regviz_graph_options():
                sums, batches = _epoch(trainer, batches, batches_of, upcoming, cancel)
                if sums is None or _is_set(cancel):  # no partial epoch, and no validation nobody will see
                    return
                evaluated = trainer.evaluate(*val)
            seconds = time.perf_counter() - start
            record = _record(epoch, sums, len(y_train), evaluated, y_val, seconds, trainer.kind)
            yield _with_inputs(record, trainer) if epoch == settings.epochs else record


def _batches_maker(settings: Settings, x_train: datasets.SparseRows, y_train: np.ndarray):
    """order -> (the epoch's batch parts, its labels in order), in the form the first layer's width takes."""
    if not uses_csr(settings.widths()[0]):
        return lambda order: coo_epoch(x_train, y_train, order, settings.batch_size)
    with regviz_graph_options():
        rows = (*tensors(x_train).ragged(), tf.constant(y_train, tf.float32))
    build = csr_batches_for(settings.batch_size, x_train.n_cols)
    return lambda order: _call_graph(build, tf.constant(order, tf.int32), *rows)


def _with_inputs(record: EpochRecord, trainer) -> EpochRecord:
    """The last record with the words the first layer keeps (words.py): read once, at the run's end."""
    top, zeroed = words.first_layer_inputs(trainer.model.layers[0].kernel.numpy())
    return dataclasses.replace(record, top_inputs=top, zeroed_inputs=zeroed)


_background = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="regviz-batches")


def _epoch(trainer, batches, batches_of, order, cancel):
    """The epoch's summed losses and the next epoch's batches (those of order, None without one),
    (None, None) if cancel came mid-epoch.

    The next batches are built in another thread meanwhile. One call when the trainer expects the epoch
    to fit in one; else calls of about CALL_SECONDS each with the event checked between them, so that a
    cancel waits for one call at most.
    """
    parts, y = batches
    steps = -(-int(y.shape[0]) // trainer.batch_size)
    pending = None if order is None else _background.submit(batches_of, order)
    if trainer.pace.fits(steps):
        sums = _timed(trainer, steps, parts, y, 0, steps, tf.zeros([4]))
        return sums, pending and pending.result()
    done, sums = 0, tf.zeros([4])
    while done < steps:
        if done and _is_set(cancel):
            if pending is not None:
                pending.cancel()
            return None, None
        n = trainer.pace.chunk(steps - done)
        sums = _timed(trainer, n, parts, y, done, done + n, sums)
        done += n
    return sums, pending and pending.result()


def _timed(trainer, steps, *args):
    """trainer.run_steps(*args), its time per step remembered by the trainer's pace."""
    started = time.perf_counter()
    out = trainer.run_steps(*args)
    trainer.pace.measured(steps, time.perf_counter() - started)
    return out


def _is_set(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def _call_graph(function, *args):
    """function(*args) in this thread with the options regviz's functions run under."""
    with regviz_graph_options():
        return function(*args)


def warm_rows(x_train: datasets.SparseRows, x_val: datasets.SparseRows) -> None:
    """Make the tensors fit reads for these rows now, once per row set, so that no run waits for them."""
    tensors(x_train).ragged()
    tensors(x_val).csr()


def warm_batches(x: datasets.SparseRows, y: np.ndarray, batch_size: int) -> None:
    """Trace the CSR batches function (first layers wider than COO_MAX_WIDTH) for this batch size on a
    few rows: it depends on no architecture, so a start-up makes it once and no wide run waits for it.
    Narrower layers' batches are NumPy's: nothing to trace."""
    n = min(len(y), 2 * batch_size)
    few = x.take(n)  # not through tensors(): its cache holds the datasets' row sets
    labels = tf.constant(y[:n], tf.float32)
    rows = (tf.constant(few.indptr, tf.int64), tf.constant(few.indices, tf.int64), labels)
    _call_graph(csr_batches_for(batch_size, x.n_cols), tf.range(n, dtype=tf.int32), *rows)


def batch_orders(seed: int, n_rows: int) -> Iterator[np.ndarray]:
    """Each epoch's order of the training rows, epoch 1 first: a new permutation every epoch."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n_rows)


def _record(epoch, sums, n_train, evaluated, y_val, seconds, kind=BINARY) -> EpochRecord:
    data_sum, penalty_sum, hit_sum, _ = (float(v) for v in sums.numpy())
    out, val_data_loss, penalty, norms, small, hist = (t.numpy() for t in evaluated)
    share = hit_sum / n_train  # hits: an accuracy, or for regression an absolute error
    train_side = {"mae": share, "accuracy": None} if kind == REGRESSION else {"accuracy": share}
    return EpochRecord(
        epoch=epoch,
        data_loss=data_sum / n_train,
        val_data_loss=float(val_data_loss),
        penalty=float(penalty),
        loss=(data_sum + penalty_sum) / n_train,
        val_loss=float(val_data_loss) + float(penalty),
        **train_side,
        **validation_metrics(kind, y_val, out),
        seconds=seconds,
        layers=tuple(LayerStats(float(a), float(b)) for a, b in zip(norms, small, strict=True)),
        hist=tuple(int(c) for c in hist),
    )
