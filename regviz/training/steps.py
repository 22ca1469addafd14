"""The traced functions of a model: a range of an epoch's training steps, and the evaluation after it.

Every layer but the first matmul (`sparse.first_matmul`), the penalty (`model.losses`) and the loss are
the Keras model's own.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from regviz.model import hidden_layers
from regviz.problems import BINARY, MULTICLASS, REGRESSION
from regviz.records import HIST_EDGES, SMALL_WEIGHT
from regviz.training.batches import COO_SPEC, CSR_SPEC, coo_batch, csr_batch
from regviz.training.optimizer_step import fused_step
from regviz.training.sparse import coo, first_matmul, uses_csr

XLA_MIN_WIDTH = 128  # xla fuses keras's optimizer (4x on a 10000x512 kernel, 10 % faster than the fused
# kernels of optimizer_step at 128 units); compiling costs 0.3-0.8 s, which at 64 units (the book's
# Reuters network) the fused kernels never lose in 20 epochs, so narrower models take optimizer_step's


def forward(model: keras.Sequential, x, training: bool, x_t=None):
    """The model's output ([rows, 1]) for multi-hot rows x: `first_matmul`, then the Keras layers (x_t:
    x's transpose, made beforehand, for the gradient)."""
    return after_first_matmul(model, first_matmul(x, model.layers[0].kernel, x_t), training)


def after_first_matmul(model, a1, training):
    """The model's output ([rows, 1] probabilities) given a1 = x @ kernel of its first layer."""
    first = model.layers[0]
    h = first.activation(a1 + first.bias)
    for layer in model.layers[1:]:
        h = layer(h, training=training)
    return h  # unsliced: it carries the sigmoid's logits, which keras's cross-entropy uses


def _penalty(model) -> tf.Tensor:
    losses = model.losses
    return tf.add_n(losses) if losses else tf.constant(0.0)


def data_loss(kind: str):
    """The problem's loss per sample, as keras's fit and evaluate compute it; labels are floats (a
    class's index for multiclass)."""
    if kind == BINARY:
        # from the sigmoid's logits: clipped probabilities would lose the gradient (and the true
        # loss) of confidently wrong predictions
        return lambda y, out: keras.losses.binary_crossentropy(y[:, None], out)
    if kind == MULTICLASS:  # from the softmax's logits, for the same reason
        return lambda y, out: keras.losses.sparse_categorical_crossentropy(tf.cast(y, tf.int32), out)
    if kind == REGRESSION:
        return lambda y, out: tf.square(out[:, 0] - y)
    raise ValueError(f"unknown problem type {kind!r}")


def hits(kind: str):
    """Per batch: correct predictions (classification) or the sum of absolute errors (regression)."""

    def count(same):
        return tf.reduce_sum(tf.cast(same, tf.float32))

    if kind == BINARY:
        return lambda y, out: count(tf.equal(tf.cast(out[:, 0] > 0.5, tf.float32), y))
    if kind == MULTICLASS:
        return lambda y, out: count(tf.equal(tf.argmax(out, 1, output_type=tf.int32), tf.cast(y, tf.int32)))
    return lambda y, out: tf.reduce_sum(tf.abs(out[:, 0] - y))


def _step_function(model, optimizer, fused):
    """apply(grads): add the penalty's gradient and take the optimizer's step (the fused kernels when
    given, else keras's apply); returns the penalty before the step."""
    params = model.trainable_variables

    def apply(grads):
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

    return apply


def epoch_functions(model, optimizer, n_cols, batch_size, kind: str = BINARY):
    """The fused optimizer step (None: keras's apply), and the traced run_steps (see its docstring)."""
    params = model.trainable_variables
    loss_of, hits_of = data_loss(kind), hits(kind)
    first = model.layers[0]
    # narrow models: one fused kernel per weight; wide ones: keras's update compiled by xla (faster)
    wide, as_csr = first.units >= XLA_MIN_WIDTH, uses_csr(first.units)
    fused = None if wide else fused_step(optimizer, params)

    def gradients(x, x_t, yb):
        """Data loss, hits, and the data loss's gradient of every weight, for the batch's rows x."""
        with tf.GradientTape() as tape:
            out = forward(model, x, training=True, x_t=x_t)
            loss = tf.reduce_mean(loss_of(yb, out))
        grads = tape.gradient(loss, params)
        return loss, hits_of(yb, out), grads

    apply = _step_function(model, optimizer, fused)
    if wide:
        apply = tf.function(apply, autograph=False, jit_compile=True)

    def step(parts, y, i, sums):
        start = i * batch_size
        end = tf.minimum(start + batch_size, tf.size(y))
        if as_csr:  # the batch's CSR matrix and its transpose, made with the epoch's batches
            x, x_t = csr_batch(parts, i)
        else:
            x, x_t = coo(coo_batch(parts, i), end - start, n_cols), None
        data_loss, correct, grads = gradients(x, x_t, y[start:end])
        penalty = apply(grads)
        nb = tf.cast(end - start, tf.float32)
        # weighted by batch size, as keras's loss trackers average
        return i + 1, sums + tf.stack([data_loss * nb, penalty * nb, correct, nb])

    index, sums = tf.TensorSpec([], tf.int32), tf.TensorSpec([4])
    signature = [CSR_SPEC if as_csr else COO_SPEC, tf.TensorSpec([None], tf.float32), index, index, sums]

    @tf.function(autograph=False, input_signature=signature)
    def run_steps(parts, y, start, stop, sums):
        """Steps start..stop-1 of an epoch (its batches' parts and labels) added to sums (data loss,
        penalty, hits, rows). One function for a whole epoch and for a chunk of one, so that neither
        needs a trace of its own, and chunks add up exactly as one call does."""
        return tf.while_loop(lambda i, _: i < stop, lambda i, s: step(parts, y, i, s), [start, sums])[1]

    return fused, run_steps


def dense_epoch_function(model, optimizer, batch_size, kind: str):
    """run_epoch(x, y, order) for dense rows (tabular data, a handful of columns): one traced call per
    epoch, the batches gathered in order; returns (data loss, penalty, hits, rows) summed. The first
    layer is an ordinary matmul here: the sparse product only pays on multi-hot rows."""
    params = model.trainable_variables
    loss_of, hits_of = data_loss(kind), hits(kind)

    apply = _step_function(model, optimizer, None)

    def step(x, y, order, i, sums):
        start = i * batch_size
        idx = order[start : tf.minimum(start + batch_size, tf.size(order))]
        xb, yb = tf.gather(x, idx), tf.gather(y, idx)
        with tf.GradientTape() as tape:
            out = after_first_matmul(model, tf.matmul(xb, model.layers[0].kernel), training=True)
            loss = tf.reduce_mean(loss_of(yb, out))
        grads = tape.gradient(loss, params)
        penalty = apply(grads)
        nb = tf.cast(tf.size(idx), tf.float32)
        return i + 1, sums + tf.stack([loss * nb, penalty * nb, hits_of(yb, out), nb])

    spec = [tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.float32)]
    spec.append(tf.TensorSpec([None], tf.int32))

    @tf.function(autograph=False, input_signature=spec)
    def run_epoch(x, y, order):
        count = (tf.size(order) + batch_size - 1) // batch_size
        loop = tf.while_loop(lambda i, _: i < count, lambda i, s: step(x, y, order, i, s), [0, tf.zeros([4])])
        return loop[1]

    return run_epoch


def eval_function(model, kind: str = BINARY):
    """evaluate(a1, y) for a1 = the validation rows' first_matmul: predictions, losses, weight statistics."""
    first = model.layers[0]
    loss_of = data_loss(kind)
    kernels = [layer.kernel for layer in hidden_layers(model)]
    lo, hi, bins = HIST_EDGES[0], HIST_EDGES[-1], len(HIST_EDGES) - 1

    @tf.function(
        autograph=False,
        input_signature=[tf.TensorSpec([None, first.units], tf.float32), tf.TensorSpec([None], tf.float32)],
    )
    def evaluate(a1, y):
        out = after_first_matmul(model, a1, training=False)
        norms = tf.stack([tf.norm(k) for k in kernels])
        small = tf.stack([tf.reduce_mean(tf.cast(tf.abs(k) < SMALL_WEIGHT, tf.float32)) for k in kernels])
        hist = tf.histogram_fixed_width(tf.reshape(kernels[0], [-1]), [lo, hi], nbins=bins)
        return out, tf.reduce_mean(loss_of(y, out)), _penalty(model), norms, small, hist

    return evaluate
