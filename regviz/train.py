"""Training a run: the Keras model its settings describe, one record per epoch, as each epoch ends.

Why not `model.fit`: the input is 98.7 % zeros, and fit pays per-step Python overhead and a dense
10000-wide matmul. Here the whole epoch is one `tf.function`, batches stay sparse, and only the first
layer's matmul is done by a sparse kernel; every other layer, the penalty (`model.losses`) and the
loss are the Keras model's own. The optimizer's step is Keras's `apply` (compiled by XLA from 64 units
on) or, for narrower RMSprop and Adam models, the same update as one TF kernel per weight
(`optimizer_step.py`).

Why a pool of trainers: tracing those functions costs more than an epoch of the default model. A
finished run leaves its model, optimizer and traced functions behind, and the next run of the same
architecture takes them over with every variable (weights, dropout seed state, optimizer slots,
learning rate) copied from a newly built model, so it starts exactly where a brand-new model would.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

from regviz import data as datasets
from regviz.model import build_model, build_optimizer, hidden_layers
from regviz.optimizer_step import fused_step
from regviz.records import HIST_EDGES, SMALL_WEIGHT, EpochRecord, LayerStats
from regviz.settings import Settings

COO_MAX_WIDTH = 16  # up to this width tf's COO matmul is 2x faster than CSR; from 32 on 3x slower
XLA_MIN_WIDTH = 64  # xla fuses keras's optimizer (4x on a 10000x512 kernel, 10 % faster than the fused
# kernels of optimizer_step); compiling costs 0.3 s, so narrower models take optimizer_step's kernels
POOL_SIZE = 4  # idle trainers kept for reuse; a 512-wide one holds about 70 MB
PREPARED_ROWS = 4  # row sets kept as tensors: a dataset's training and validation rows, and a spare pair

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
    orders = (tf.constant(order, tf.int32) for order in batch_orders(settings.seed, len(y_train)))
    with _regviz_graph_options():
        rows = (*_tensors(x_train).ragged(), tf.constant(y_train, tf.float32))
        val = (_tensors(x_val).csr(), tf.constant(y_val, tf.float32))
    # epoch 1's batches are built on the other core while a trainer is leased and reset (python work)
    batches_of = _batches_function(settings.batch_size)
    first_batches = _background.submit(_call_graph, batches_of, next(orders), *rows)
    with _pool.lease(settings, x_train.n_cols) as trainer:
        batches = first_batches.result()
        for epoch in range(1, settings.epochs + 1):
            if cancel is not None and cancel.is_set():
                return
            with _regviz_graph_options():
                # the next epoch's order is drawn now, so that its batches are built alongside this epoch
                sums, batches = trainer.run_epoch(*batches, next(orders), *rows)
                evaluated = trainer.evaluate(*val)
            yield _record(epoch, sums, len(y_train), evaluated, y_val, time.perf_counter() - start)


_background = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="regviz-batches")


def _call_graph(function, *args):
    """function(*args) in this thread with the options regviz's functions run under."""
    with _regviz_graph_options():
        return function(*args)


def warm_rows(x_train: datasets.SparseRows, x_val: datasets.SparseRows) -> None:
    """Make the tensors fit reads for these rows now, once per row set, so that no run waits for them."""
    _tensors(x_train).ragged()
    _tensors(x_val).csr()


def batch_orders(seed: int, n_rows: int) -> Iterator[np.ndarray]:
    """Each epoch's order of the training rows, epoch 1 first: a new permutation every epoch."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n_rows)


def forward(model: keras.Sequential, x, x_t, training: bool):
    """The model's output for CSR input: first layer by the sparse kernel, the rest by Keras."""
    return _after_first_matmul(model, _sparse_matmul(x, x_t, model.layers[0].kernel), training)[:, 0]


def _after_first_matmul(model, a1, training):
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


# ---- sparse rows as tensors, made once per row set -----------------------------------------------


def _csr(coords, n_rows, n_cols):
    """A CSR matrix of ones at coords ([n, 2] int64, row-major order)."""
    ones = tf.ones(tf.shape(coords)[:1], tf.float32)
    shape = tf.stack([tf.cast(n_rows, tf.int64), tf.cast(n_cols, tf.int64)])
    return tf.raw_ops.SparseTensorToCSRSparseMatrix(indices=coords, values=ones, dense_shape=shape)


class _Tensors:
    """One row set as tensors, each made at first use: ragged (row starts, columns), or one CSR matrix."""

    def __init__(self, rows: datasets.SparseRows):
        self.rows = rows  # held, so that the memory its cache key points at is not reused
        self._ragged = self._csr = None

    def ragged(self):
        """Row starts and column indices (int64), for training batches."""
        if self._ragged is None:
            self._ragged = tf.constant(self.rows.indptr, tf.int64), tf.constant(self.rows.indices, tf.int64)
        return self._ragged

    def csr(self):
        """All rows as one CSR matrix, for validation every epoch."""
        if self._csr is None:
            indptr, indices = self.ragged()
            row_ids = tf.raw_ops.RaggedTensorToSparse(rt_nested_splits=[indptr], rt_dense_values=indices)
            coords = tf.stack([row_ids.sparse_indices[:, 0], indices], axis=1)
            self._csr = _csr(coords, len(self.rows), self.rows.n_cols)
        return self._csr


_tensors_cache: OrderedDict[tuple, _Tensors] = OrderedDict()
_tensors_lock = threading.Lock()


def _tensors(rows: datasets.SparseRows) -> _Tensors:
    """The row set's tensors, shared by every run on the same arrays (a dataset's splits and prefixes)."""
    key = (rows.indptr.ctypes.data, rows.indices.ctypes.data, len(rows), rows.nnz, rows.n_cols)
    with _tensors_lock:
        if key in _tensors_cache:
            _tensors_cache.move_to_end(key)
            return _tensors_cache[key]
    made = _Tensors(rows)
    with _tensors_lock:
        _tensors_cache[key] = made
        while len(_tensors_cache) > PREPARED_ROWS:
            _tensors_cache.popitem(last=False)
    return made


# ---- graph options for regviz's own functions ----------------------------------------------------


@contextlib.contextmanager
def _regviz_graph_options():
    """Grappler off for the functions this thread calls until the block ends.

    Its rewrites do not make these loops faster, and optimising them costs a new model 0.1 s before
    its first epoch. What changes is the calling thread's function-call options (what a `tf.function`
    call hands to the runtime); the process-wide settings, and with them any other code such as a
    plain `model.fit`, are untouched.
    """
    try:
        from tensorflow.python.eager import context
    except ImportError:  # pragma: no cover - a tensorflow without it keeps grappler on
        yield
        return
    ctx = context.context()
    old = ctx.function_call_options
    config = tf.compat.v1.ConfigProto.FromString(old.config_proto_serialized)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    ctx.function_call_options = context.FunctionCallOptions(old.executor_type, config)
    try:
        yield
    finally:
        ctx.function_call_options = old


# ---- trainers: a model, its optimizer and their traced functions, reused across runs -------------


class _Trainer:
    """A Keras model, its optimizer and the traced functions that train and evaluate it."""

    def __init__(self, settings: Settings, n_cols: int):
        self.n_cols = n_cols
        self.model, self.optimizer = _fresh_model(settings, n_cols)
        self.fresh = True
        # traced at their first call, which fit makes under _regviz_graph_options like every other
        functions = _epoch_functions(self.model, self.optimizer, n_cols, settings.batch_size)
        self.step, self.run_epoch = functions
        self._evaluate = _eval_function(self.model)

    def reset(self, settings: Settings) -> None:
        """Every variable as a newly built model and optimizer for these settings have it."""
        if self.fresh:  # built for this run
            self.fresh = False
            return
        model, optimizer = _fresh_model(settings, self.n_cols)
        mine, new = self.model.variables + self.optimizer.variables, model.variables + optimizer.variables
        for variable, value in zip(mine, new, strict=True):
            variable.assign(value)
        if self.step is not None:
            self.step.reset()

    def evaluate(self, x_csr, y):
        """Validation predictions and data loss, penalty and weight statistics of the current weights."""
        a1 = tf.raw_ops.SparseMatrixMatMul(a=x_csr, b=self.model.layers[0].kernel.value)
        return self._evaluate(a1, y)


def _architecture(settings: Settings, n_cols: int) -> tuple:
    """What the traced functions depend on; not the seed, epochs, data or learning rate (a variable)."""
    s = settings
    return (n_cols, s.depth, s.width, s.l1, s.l2, s.dropout, s.optimizer, s.batch_size)


class _Pool:
    """Idle trainers by architecture, the least recently used dropped first; safe for many threads."""

    def __init__(self, size: int):
        self.size = size
        self._idle: OrderedDict[tuple, list[_Trainer]] = OrderedDict()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lease(self, settings: Settings, n_cols: int):
        """A trainer for these settings, reset to fresh weights, for the duration of one run."""
        key = _architecture(settings, n_cols)
        with self._lock:
            trainer = self._idle[key].pop() if self._idle.get(key) else None
        trainer = trainer or _Trainer(settings, n_cols)
        trainer.reset(settings)
        try:
            yield trainer
        finally:
            self._give_back(key, trainer)

    def _give_back(self, key, trainer):
        with self._lock:
            self._idle.setdefault(key, []).append(trainer)
            self._idle.move_to_end(key)
            while sum(len(t) for t in self._idle.values()) > self.size:
                oldest = next(iter(self._idle))
                self._idle[oldest].pop(0)
                if not self._idle[oldest]:
                    del self._idle[oldest]


_pool = _Pool(POOL_SIZE)


def _fresh_model(settings: Settings, num_features: int):
    with _build_lock:
        seed_keras(settings.seed)
        model = build_model(settings, num_features)
        optimizer = build_optimizer(settings)
        optimizer.build(model.trainable_variables)
    return model, optimizer


def seed_keras(seed: int) -> None:
    """keras.utils.set_random_seed(seed) for everything a Keras model draws, but TensorFlow's global seed.

    Setting that seed clears TensorFlow's kernel caches, which made the next epoch of every pooled
    trainer 45 ms slower; nothing regviz runs draws from it (initial weights and dropout take their
    seeds from Python's `random`, and batch orders come from NumPy). Keras's global seed state is
    reset as set_random_seed resets it; tests check both give the same model.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    except ImportError:  # pragma: no cover - another keras: the public way, slower
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


# ---- the traced functions ------------------------------------------------------------------------


def _epoch_functions(model, optimizer, n_cols, batch_size):
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
            out = _after_first_matmul(model, a1, training=True)
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
        x = _csr(coords, n_rows, n_cols)
        x_t = lambda: tf.raw_ops.SparseMatrixTranspose(input=x, type=tf.float32)  # noqa: E731
        kernel_gradient = lambda dy: tf.raw_ops.SparseMatrixMatMul(a=x_t(), b=dy)  # noqa: E731
        return tf.raw_ops.SparseMatrixMatMul(a=x, b=first.kernel.value), kernel_gradient

    def step(coords, y, i, sums):
        start = i * batch_size
        end = tf.minimum(start + batch_size, tf.size(y))
        a1, kernel_gradient = first_matmul(_batch(coords, i), end - start)
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

    prepare = _batches_function(batch_size)
    return fused, run_epoch


COORDS_SHAPE = [-1, 2]  # a batch's (row within the batch, column) pairs
_batches_functions: dict[int, tf.types.experimental.PolymorphicFunction] = {}


def _batches_function(batch_size: int):
    """batches(order, indptr, indices, labels): one function per batch size, shared by every trainer."""

    def batches(order, indptr, indices, labels):
        """The rows in this order, batch by batch: (row within the batch, column) of each one; labels."""
        rows = tf.gather(tf.RaggedTensor.from_row_splits(indices, indptr, validate=False), order)
        splits, columns, n = rows.row_splits, rows.values, tf.size(order)

        def one(i, coords):
            start, end = i * batch_size, tf.minimum((i + 1) * batch_size, n)
            lo, hi = splits[start], splits[end]
            ids = tf.raw_ops.RaggedTensorToSparse(
                rt_nested_splits=[splits[start : end + 1] - lo], rt_dense_values=columns[lo:hi]
            ).sparse_indices[:, 0]
            batch = tf.stack([ids, columns[lo:hi]], axis=1)
            return i + 1, tf.raw_ops.TensorListSetItem(input_handle=coords, index=i, item=batch)

        count = (n + batch_size - 1) // batch_size
        # a list of per-batch tensors: a step takes its batch without copying it out of the epoch's
        coords = tf.raw_ops.TensorListReserve(
            element_shape=COORDS_SHAPE, num_elements=count, element_dtype=tf.int64
        )
        return tf.while_loop(lambda i, _: i < count, one, [0, coords])[1], tf.gather(labels, order)

    if batch_size not in _batches_functions:
        ids, labels = tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.float32)
        spec = [tf.TensorSpec([None], tf.int32), ids, ids, labels]
        # two threads may both get here: the first function stored is the one everybody uses
        _batches_functions.setdefault(batch_size, tf.function(batches, autograph=False, input_signature=spec))
    return _batches_functions[batch_size]


def _batch(coords, i):
    """Batch i's coordinates from the epoch's list."""
    return tf.raw_ops.TensorListGetItem(
        input_handle=coords, index=i, element_shape=COORDS_SHAPE, element_dtype=tf.int64
    )


def _eval_function(model):
    first = model.layers[0]
    kernels = [layer.kernel for layer in hidden_layers(model)]
    lo, hi, bins = HIST_EDGES[0], HIST_EDGES[-1], len(HIST_EDGES) - 1

    @tf.function(
        autograph=False,
        input_signature=[tf.TensorSpec([None, first.units], tf.float32), tf.TensorSpec([None], tf.float32)],
    )
    def evaluate(a1, y):
        out = _after_first_matmul(model, a1, training=False)
        p = out[:, 0]
        norms = tf.stack([tf.norm(k) for k in kernels])
        small = tf.stack([tf.reduce_mean(tf.cast(tf.abs(k) < SMALL_WEIGHT, tf.float32)) for k in kernels])
        hist = tf.histogram_fixed_width(tf.reshape(kernels[0], [-1]), [lo, hi], nbins=bins)
        return p, tf.reduce_mean(_data_loss(y, out)), _penalty(model), norms, small, hist

    return evaluate


def _record(epoch, sums, n_train, evaluated, y_val, seconds) -> EpochRecord:
    data_sum, penalty_sum, correct, _ = (float(v) for v in sums.numpy())
    p, val_data_loss, penalty, norms, small, hist = (t.numpy() for t in evaluated)
    return EpochRecord(
        epoch=epoch,
        data_loss=data_sum / n_train,
        val_data_loss=float(val_data_loss),
        penalty=float(penalty),
        loss=(data_sum + penalty_sum) / n_train,
        val_loss=float(val_data_loss) + float(penalty),
        accuracy=correct / n_train,
        val_accuracy=float(np.mean((p > 0.5) == (y_val > 0.5))),
        val_auc=roc_auc(y_val, p),
        seconds=seconds,
        layers=tuple(LayerStats(float(a), float(b)) for a, b in zip(norms, small, strict=True)),
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
