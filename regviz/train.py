"""Training a run: the Keras model its settings describe, one record per epoch, as each epoch ends.

Why not `model.fit`: the input is 98.7 % zeros, and fit pays per-step Python overhead and a dense
10000-wide matmul. Here the whole epoch is one `tf.function`, batches stay sparse (CSR), and only
the first layer's matmul is done by a sparse kernel; every other layer, the penalty
(`model.losses`), the loss and the optimizer step are the Keras model's own.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from regviz import data as datasets  # noqa: E402
from regviz.model import build_model, build_optimizer, hidden_layers  # noqa: E402
from regviz.records import HIST_EDGES, SMALL_WEIGHT, EpochRecord, LayerStats  # noqa: E402
from regviz.settings import Settings  # noqa: E402

_build_lock = threading.Lock()  # keras's seeding is global: build one model at a time


class Cancelled(Exception):
    """The run was cancelled before its last epoch."""


def train(settings: Settings, cancel: threading.Event | None = None, dataset=None) -> Iterator[EpochRecord]:
    """Train from scratch, yielding each epoch's record as soon as the epoch ends."""
    dataset = dataset or datasets.load(settings.dataset)
    x, y = dataset.training_rows(settings.train_fraction)
    yield from fit(settings, x, y, dataset.x_val, dataset.y_val, cancel)


def fit(settings, x_train, y_train, x_val, y_val, cancel=None) -> Iterator[EpochRecord]:
    """Train on the given sparse rows (the benchmark passes its own split), yielding per epoch."""
    start = time.perf_counter()
    model, optimizer = _fresh_model(settings, x_train.n_cols)
    epoch_fn = _epoch_function(model, optimizer, x_train, y_train, settings.batch_size)
    eval_fn = _eval_function(model, x_val)
    order = np.random.default_rng(settings.seed)
    for epoch in range(1, settings.epochs + 1):
        if cancel is not None and cancel.is_set():
            return
        sums = epoch_fn(tf.constant(order.permutation(len(y_train)), tf.int32))
        yield _record(epoch, sums, len(y_train), eval_fn(), y_val, time.perf_counter() - start)


def _fresh_model(settings: Settings, num_features: int):
    with _build_lock:
        keras.utils.set_random_seed(settings.seed)
        model = build_model(settings, num_features)
        optimizer = build_optimizer(settings)
        optimizer.build(model.trainable_variables)
    return model, optimizer


def _csr_constants(rows: datasets.SparseRows):
    return tf.constant(rows.indptr, tf.int64), tf.constant(rows.indices, tf.int64), rows.n_cols


def _to_csr(indptr, indices, ids, n_cols):
    """The rows `ids` as a CSR matrix and its transpose (the transpose serves the gradient)."""
    batch = tf.gather(tf.RaggedTensor.from_row_splits(indices, indptr, validate=False), ids)
    coords = tf.stack([batch.value_rowids(), batch.flat_values], axis=1)
    ones = tf.ones(tf.shape(coords)[:1], tf.float32)
    shape = tf.stack([tf.cast(tf.size(ids), tf.int64), tf.constant(n_cols, tf.int64)])
    x = tf.raw_ops.SparseTensorToCSRSparseMatrix(indices=coords, values=ones, dense_shape=shape)
    return x, tf.raw_ops.SparseMatrixTranspose(input=x, type=tf.float32)


def _sparse_matmul(x, x_t, kernel):
    """x @ kernel for a CSR x, with the gradient x^T @ dy from the pre-transposed matrix."""

    @tf.custom_gradient
    def matmul(k):
        def grad(dy):
            return tf.raw_ops.SparseMatrixMatMul(a=x_t, b=dy)

        return tf.raw_ops.SparseMatrixMatMul(a=x, b=k), grad

    return matmul(tf.convert_to_tensor(kernel))


def forward(model: keras.Sequential, x, x_t, training: bool):
    """The model's output for CSR input: first layer by the sparse kernel, the rest by Keras."""
    first = model.layers[0]
    h = first.activation(_sparse_matmul(x, x_t, first.kernel) + first.bias)
    for layer in model.layers[1:]:
        h = layer(h, training=training)
    return h[:, 0]


def _penalty(model) -> tf.Tensor:
    losses = model.losses
    return tf.add_n(losses) if losses else tf.constant(0.0)


def _data_loss(y, p):
    return keras.losses.binary_crossentropy(y[:, None], p[:, None])  # per sample, keras's clipping


def _epoch_function(model, optimizer, x_rows, y, batch_size):
    indptr, indices, n_cols = _csr_constants(x_rows)
    labels = tf.constant(y, tf.float32)
    params = model.trainable_variables

    # xla fuses the optimizer's elementwise passes: 4x faster on a 10000x512 kernel, but its
    # compile time (0.25 s) costs more than it saves on small layers
    @tf.function(jit_compile=model.layers[0].units >= 64)
    def apply(grads):
        optimizer.apply(grads, params)

    @tf.function
    def run_epoch(order):
        n = tf.size(order)
        sums = tf.zeros([4])  # data loss, penalty, correct, weighted by batch size as keras's trackers
        for start in tf.range(0, n, batch_size):
            ids = order[start : tf.minimum(start + batch_size, n)]
            x, x_t = _to_csr(indptr, indices, ids, n_cols)
            yb = tf.gather(labels, ids)
            with tf.GradientTape() as tape:
                p = forward(model, x, x_t, training=True)
                data_loss = tf.reduce_mean(_data_loss(yb, p))
                penalty = _penalty(model)
                loss = data_loss + penalty
            apply(tape.gradient(loss, params))
            nb = tf.cast(tf.size(ids), tf.float32)
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.cast(p > 0.5, tf.float32), yb), tf.float32))
            sums += tf.stack([data_loss * nb, penalty * nb, correct, nb])
        return sums

    return run_epoch


def _eval_function(model, x_rows):
    indptr, indices, n_cols = _csr_constants(x_rows)
    ids = tf.range(len(x_rows), dtype=tf.int32)
    kernels = [layer.kernel for layer in hidden_layers(model)]
    lo, hi, bins = HIST_EDGES[0], HIST_EDGES[-1], len(HIST_EDGES) - 1

    @tf.function
    def evaluate():
        x, x_t = _to_csr(indptr, indices, ids, n_cols)
        p = forward(model, x, x_t, training=False)
        norms = tf.stack([tf.norm(k) for k in kernels])
        small = tf.stack([tf.reduce_mean(tf.cast(tf.abs(k) < SMALL_WEIGHT, tf.float32)) for k in kernels])
        hist = tf.histogram_fixed_width(tf.reshape(kernels[0], [-1]), [lo, hi], nbins=bins)
        return p, _penalty(model), norms, small, hist

    return evaluate


def _record(epoch, sums, n_train, evaluated, y_val, seconds) -> EpochRecord:
    data_sum, penalty_sum, correct, _ = (float(v) for v in sums.numpy())
    p, penalty, norms, small, hist = (t.numpy() for t in evaluated)
    val_data_loss = float(np.mean(_data_loss(tf.constant(y_val), tf.constant(p)).numpy()))
    return EpochRecord(
        epoch=epoch,
        data_loss=data_sum / n_train,
        val_data_loss=val_data_loss,
        penalty=float(penalty),
        loss=(data_sum + penalty_sum) / n_train,
        val_loss=val_data_loss + float(penalty),
        accuracy=correct / n_train,
        val_accuracy=float(np.mean((p > 0.5) == (y_val > 0.5))),
        val_auc=roc_auc(y_val, p),
        seconds=seconds,
        layers=tuple(LayerStats(float(a), float(b)) for a, b in zip(norms, small)),
        hist=tuple(int(c) for c in hist),
    )


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Exact ROC AUC (Mann-Whitney U with tied ranks averaged); None when only one class is present."""
    y = np.asarray(y_true) > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = np.asarray(score)[order]
    # average ranks over ties so equal scores count half
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
