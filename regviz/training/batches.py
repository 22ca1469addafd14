"""An epoch's minibatches, built by TensorFlow from a row order: each batch's (row, column) pairs, or,
for kernels wider than sparse.COO_MAX_WIDTH, its CSR matrix and that matrix's transpose (built here, on
the other core while the previous epoch trains, instead of in every step)."""

from __future__ import annotations

import tensorflow as tf

from regviz.training.sparse import csr, uses_csr
from regviz.training.tf_private import give_csr_shape

COORDS_SHAPE = [-1, 2]  # a batch's (row within the batch, column) pairs
_SCALAR = []  # a CSR matrix in the list: one variant
_batches_functions: dict[tuple, tf.types.experimental.PolymorphicFunction] = {}


def batches_for(batch_size: int, n_cols: int, width: int):
    """batches(order, indptr, indices, labels) for a first layer of this width: one function per batch
    size and form (and, for CSR batches, number of columns), shared by every trainer."""
    as_csr = uses_csr(width)

    def batches(order, indptr, indices, labels):
        """The rows in this order, batch by batch, and their labels: (row within the batch, column) of
        each one at list item i, or batch i's CSR matrix at item 2i and its transpose at 2i + 1."""
        rows = tf.gather(tf.RaggedTensor.from_row_splits(indices, indptr, validate=False), order)
        splits, columns, n = rows.row_splits, rows.values, tf.size(order)

        def one(i, coords):
            start, end = i * batch_size, tf.minimum((i + 1) * batch_size, n)
            lo, hi = splits[start], splits[end]
            ids = tf.raw_ops.RaggedTensorToSparse(
                rt_nested_splits=[splits[start : end + 1] - lo], rt_dense_values=columns[lo:hi]
            ).sparse_indices[:, 0]
            batch = tf.stack([ids, columns[lo:hi]], axis=1)
            if not as_csr:
                return i + 1, tf.raw_ops.TensorListSetItem(input_handle=coords, index=i, item=batch)
            matrix = csr(batch, end - start, n_cols)
            transposed = tf.raw_ops.SparseMatrixTranspose(input=matrix, type=tf.float32)
            coords = tf.raw_ops.TensorListSetItem(input_handle=coords, index=2 * i, item=matrix)
            return i + 1, tf.raw_ops.TensorListSetItem(input_handle=coords, index=2 * i + 1, item=transposed)

        count = (n + batch_size - 1) // batch_size
        # a list of per-batch tensors: a step takes its batch without copying it out of the epoch's
        shape, dtype, per_batch = (_SCALAR, tf.variant, 2) if as_csr else (COORDS_SHAPE, tf.int64, 1)
        coords = tf.raw_ops.TensorListReserve(
            element_shape=tf.constant(shape, tf.int32), num_elements=per_batch * count, element_dtype=dtype
        )
        return tf.while_loop(lambda i, _: i < count, one, [0, coords])[1], tf.gather(labels, order)

    key = (batch_size, n_cols if as_csr else 0, as_csr)
    if key not in _batches_functions:
        ids, labels = tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.float32)
        spec = [tf.TensorSpec([None], tf.int32), ids, ids, labels]
        # two threads may both get here: the first function stored is the one everybody uses
        _batches_functions.setdefault(key, tf.function(batches, autograph=False, input_signature=spec))
    return _batches_functions[key]


def batch(coords, i):
    """Batch i's coordinates from the epoch's list."""
    return tf.raw_ops.TensorListGetItem(
        input_handle=coords, index=i, element_shape=COORDS_SHAPE, element_dtype=tf.int64
    )


def csr_batch(batches, i):
    """Batch i's CSR matrix and its transpose from the epoch's list."""
    pair = []
    for item in (2 * i, 2 * i + 1):
        matrix = tf.raw_ops.TensorListGetItem(
            input_handle=batches, index=item, element_shape=tf.constant(_SCALAR, tf.int32),
            element_dtype=tf.variant,
        )  # fmt: skip
        # a list's variant item carries no dense shape; the sparse-matrix ops need one to trace
        give_csr_shape(matrix)
        pair.append(matrix)
    return tuple(pair)
