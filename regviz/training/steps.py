"""The traced functions of a model: one epoch of training steps, and the evaluation after it.

Every layer but the first matmul, the penalty (`model.losses`) and the loss are the Keras model's own.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from regviz.model import hidden_layers
from regviz.records import HIST_EDGES, SMALL_WEIGHT
from regviz.training.batches import batch, batches_function
from regviz.training.optimizer_step import fused_step
from regviz.training.sparse import csr

COO_MAX_WIDTH = 16  # up to this width tf's COO matmul is 2x faster than CSR; from 32 on 3x slower
XLA_MIN_WIDTH = 64  # xla fuses keras's optimizer (4x on a 10000x512 kernel, 10 % faster than the fused
# kernels of optimizer_step); compiling costs 0.3 s, so narrower models take optimizer_step's kernels


def forward(model: keras.Sequential, x, x_t, training: bool):
    """The model's output for CSR input: first layer by the sparse kernel, the rest by Keras."""
    return after_first_matmul(model, _sparse_matmul(x, x_t, model.layers[0].kernel), training)[:, 0]


def after_first_matmul(model, a1, training):
    """The model's output ([rows, 1] probabilities) given a1 = x @ kernel of its first layer."""
    first = model.layers[0]
    h = first.activation(a1 + first.bias)
    for layer in model.layers[1:]:
        h = layer(h, training=training)
    return h  # unsliced: it carries the sigmoid's logits, which keras's cross-entropy uses


def _sparse_matmul(x, x_t, kernel):
    """x @ kernel for a CSR x, with the gradient x^T @ dy from the pre-transposed matrix."""

    @tf.custom_gradient
    def matmul(k):
        def grad(dy):
            return tf.raw_ops.SparseMatrixMatMul(a=x_t, b=dy)

        return tf.raw_ops.SparseMatrixMatMul(a=x, b=k), grad

    return matmul(tf.convert_to_tensor(kernel))


def _penalty(model) -> tf.Tensor:
    losses = model.losses
    return tf.add_n(losses) if losses else tf.constant(0.0)


def _data_loss(y, out):
    # per sample, from the sigmoid's logits as keras's fit and evaluate compute it: clipped
    # probabilities would lose the gradient (and the true loss) of confidently wrong predictions
    return keras.losses.binary_crossentropy(y[:, None], out)


def epoch_functions(model, optimizer, n_cols, batch_size):
    """The fused optimizer step (None: keras's apply), and run_epoch(batches, next order, rows) -> sums,
    next batches."""
    params = model.trainable_variables
    first = model.layers[0]
    # narrow models: one fused kernel per weight; wide ones: keras's update compiled by xla (faster)
    wide = first.units >= XLA_MIN_WIDTH
    fused = None if wide else fused_step(optimizer, params)

    def head(a1, yb):
        """Data loss, hits, and the gradients of everything after the first matmul (a1 = x @ kernel)."""
        with tf.GradientTape() as tape:
            tape.watch(a1)
            out = after_first_matmul(model, a1, training=True)
            data_loss = tf.reduce_mean(_data_loss(yb, out))
        p = out[:, 0]
        grads = tape.gradient(data_loss, [a1, *params[1:]])
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.cast(p > 0.5, tf.float32), yb), tf.float32))
        return data_loss, correct, grads

    def apply(grads):
        """Add the penalty's gradient and take the optimizer's step; returns the penalty before it."""
        with tf.GradientTape() as tape:
            penalty = _penalty(model)
        if model.losses:
            extra = tape.gradient(penalty, params)
            grads = [g if e is None else g + e for g, e in zip(grads, extra, strict=True)]
        if fused is not None:
            fused(grads)
        else:
            optimizer.apply(grads, params)
        return penalty

    if wide:
        apply = tf.function(apply, autograph=False, jit_compile=True)

    def first_matmul(coords, n_rows):
        """x @ kernel for the batch's ones at coords, and a function giving the kernel's gradient x^T @ dy."""
        if first.units <= COO_MAX_WIDTH:
            x = tf.SparseTensor(
                coords, tf.ones(tf.shape(coords)[:1]), tf.stack([tf.cast(n_rows, tf.int64), n_cols])
            )
            kernel_gradient = lambda dy: tf.sparse.sparse_dense_matmul(x, dy, adjoint_a=True)  # noqa: E731
            return tf.sparse.sparse_dense_matmul(x, first.kernel.value), kernel_gradient
        x = csr(coords, n_rows, n_cols)
        x_t = lambda: tf.raw_ops.SparseMatrixTranspose(input=x, type=tf.float32)  # noqa: E731
        kernel_gradient = lambda dy: tf.raw_ops.SparseMatrixMatMul(a=x_t(), b=dy)  # noqa: E731
        return tf.raw_ops.SparseMatrixMatMul(a=x, b=first.kernel.value), kernel_gradient

    def step(coords, y, i, sums):
        start = i * batch_size
        end = tf.minimum(start + batch_size, tf.size(y))
        a1, kernel_gradient = first_matmul(batch(coords, i), end - start)
        data_loss, correct, grads = head(a1, y[start:end])
        penalty = apply([kernel_gradient(grads[0]), *grads[1:]])
        nb = tf.cast(end - start, tf.float32)
        # weighted by batch size, as keras's loss trackers average
        return i + 1, sums + tf.stack([data_loss * nb, penalty * nb, correct, nb])

    order = tf.TensorSpec([None], tf.int32)
    ids, labels = tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.float32)
    coords = tf.TensorSpec([], tf.variant)  # a list of per-batch [n, 2] coordinate tensors

    @tf.function(autograph=False, input_signature=[coords, labels, order, ids, ids, labels])
    def run_epoch(coords, y, next_order, *rows):
        # the next epoch's batches depend on nothing in this one: the runtime builds them alongside
        count = tf.raw_ops.TensorListLength(input_handle=coords)
        loop = tf.while_loop(
            lambda i, _: i < count, lambda i, sums: step(coords, y, i, sums), [tf.constant(0), tf.zeros([4])]
        )
        return loop[1], prepare(next_order, *rows)

    prepare = batches_function(batch_size)
    return fused, run_epoch


def eval_function(model):
    first = model.layers[0]
    kernels = [layer.kernel for layer in hidden_layers(model)]
    lo, hi, bins = HIST_EDGES[0], HIST_EDGES[-1], len(HIST_EDGES) - 1

    @tf.function(
        autograph=False,
        input_signature=[tf.TensorSpec([None, first.units], tf.float32), tf.TensorSpec([None], tf.float32)],
    )
    def evaluate(a1, y):
        out = after_first_matmul(model, a1, training=False)
        p = out[:, 0]
        norms = tf.stack([tf.norm(k) for k in kernels])
        small = tf.stack([tf.reduce_mean(tf.cast(tf.abs(k) < SMALL_WEIGHT, tf.float32)) for k in kernels])
        hist = tf.histogram_fixed_width(tf.reshape(kernels[0], [-1]), [lo, hi], nbins=bins)
        return p, tf.reduce_mean(_data_loss(y, out)), _penalty(model), norms, small, hist

    return evaluate
