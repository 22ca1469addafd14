"""An epoch's minibatches from a row order: for first layers up to sparse.COO_MAX_WIDTH, each batch's
(row within the batch, column) pairs, built in NumPy; for wider ones, each batch's CSR matrix and that
matrix's transpose, built by TensorFlow. Either is built while the previous epoch trains, not in every
step."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from regviz import data as datasets
from regviz.training.sparse import csr
from regviz.training.tf_private import give_csr_shape

_SCALAR = []  # a CSR matrix in the list: one variant
_csr_functions: dict[tuple, tf.types.experimental.PolymorphicFunction] = {}


def coo_epoch(rows: datasets.SparseRows, labels: np.ndarray, order: np.ndarray, batch_size: int):
    """((row within its batch and column of every one, where each batch's start), labels) of the rows
    in this order.

    The pairs of all batches are laid end to end, flattened (int32: half the memory of int64, which
    only the step's slice is cast to): batch i's are pairs bounds[i] to bounds[i + 1], row-major, as
    sparse.coo wants them. Built here in NumPy, so that a step only slices: stacking and casting them
    in the step (tf.stack on axis 1 interleaves one element at a time) cost 1.6 ms of a 4 ms step of
    the book's model."""
    lengths = np.diff(rows.indptr)[order]
    ends = np.cumsum(lengths)
    firsts = ends - lengths  # where each row's pairs start in the epoch
    # pair k of the epoch is pair k - firsts[row] of its row, which starts at indptr[row] in indices
    source = np.repeat(rows.indptr[:-1][order] - firsts, lengths) + np.arange(ends[-1] if len(ends) else 0)
    flat = np.empty(2 * len(source), np.int32)
    flat[0::2] = np.repeat((np.arange(len(order)) % batch_size).astype(np.int32), lengths)
    flat[1::2] = rows.indices[source]
    bounds = np.append(firsts[::batch_size], ends[-1:]) if len(ends) else np.zeros(1, np.int64)
    parts = (tf.constant(flat), tf.constant(bounds, tf.int64))
    return parts, tf.constant(labels[order], tf.float32)


COO_SPEC = (tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int64))
CSR_SPEC = (tf.TensorSpec([], tf.variant),)  # a list: batch i's CSR matrix at 2i, its transpose at 2i + 1


def coo_batch(parts, i):
    """Batch i's (row within the batch, column) pairs ([n, 2] int64) from an epoch's coo_epoch parts."""
    flat, bounds = parts
    # sliced flat: a strided slice of rows of an [n, 2] tensor took 8.5 ms, this one 0.1 ms; a
    # SparseTensor's indices must be int64, so the batch's slice is cast, not the epoch's pairs
    return tf.cast(tf.reshape(flat[2 * bounds[i] : 2 * bounds[i + 1]], [-1, 2]), tf.int64)


def csr_batches_for(batch_size: int, n_cols: int):
    """batches(order, indptr, indices, labels) -> ((list,), labels in order) for first layers wider than
    COO_MAX_WIDTH: one function per batch size and number of columns, shared by every trainer."""

    def batches(order, indptr, indices, labels):
        """The rows in this order, batch by batch: batch i's CSR matrix at list item 2i and its
        transpose at 2i + 1; and their labels."""
        rows = tf.gather(tf.RaggedTensor.from_row_splits(indices, indptr, validate=False), order)
        splits, columns, n = rows.row_splits, rows.values, tf.size(order)

        def one(i, matrices):
            start, end = i * batch_size, tf.minimum((i + 1) * batch_size, n)
            lo, hi = splits[start], splits[end]
            ids = tf.raw_ops.RaggedTensorToSparse(
                rt_nested_splits=[splits[start : end + 1] - lo], rt_dense_values=columns[lo:hi]
            ).sparse_indices[:, 0]
            matrix = csr(tf.stack([ids, columns[lo:hi]], axis=1), end - start, n_cols)
            transposed = tf.raw_ops.SparseMatrixTranspose(input=matrix, type=tf.float32)
            for item, value in ((2 * i, matrix), (2 * i + 1, transposed)):
                matrices = tf.raw_ops.TensorListSetItem(input_handle=matrices, index=item, item=value)
            return i + 1, matrices

        count = (n + batch_size - 1) // batch_size
        # a list of per-batch matrices: a step takes its batch without copying it out of the epoch's
        matrices = tf.raw_ops.TensorListReserve(
            element_shape=tf.constant(_SCALAR, tf.int32), num_elements=2 * count, element_dtype=tf.variant
        )
        return (tf.while_loop(lambda i, _: i < count, one, [0, matrices])[1],), tf.gather(labels, order)

    key = (batch_size, n_cols)
    if key not in _csr_functions:
        ids, labels = tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.float32)
        spec = [tf.TensorSpec([None], tf.int32), ids, ids, labels]
        # two threads may both get here: the first function stored is the one everybody uses
        _csr_functions.setdefault(key, tf.function(batches, autograph=False, input_signature=spec))
    return _csr_functions[key]


def csr_batch(parts, i):
    """Batch i's CSR matrix and its transpose from an epoch's list."""
    pair = []
    for item in (2 * i, 2 * i + 1):
        matrix = tf.raw_ops.TensorListGetItem(
            input_handle=parts[0], index=item, element_shape=tf.constant(_SCALAR, tf.int32),
            element_dtype=tf.variant,
        )  # fmt: skip
        # a list's variant item carries no dense shape; the sparse-matrix ops need one to trace
        give_csr_shape(matrix)
        pair.append(matrix)
    return tuple(pair)
