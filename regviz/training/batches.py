"""An epoch's minibatches, built by TensorFlow from a row order: (row, column) pairs of each batch."""

from __future__ import annotations

import tensorflow as tf

COORDS_SHAPE = [-1, 2]  # a batch's (row within the batch, column) pairs
_batches_functions: dict[int, tf.types.experimental.PolymorphicFunction] = {}


def batches_function(batch_size: int):
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


def batch(coords, i):
    """Batch i's coordinates from the epoch's list."""
    return tf.raw_ops.TensorListGetItem(
        input_handle=coords, index=i, element_shape=COORDS_SHAPE, element_dtype=tf.int64
    )
