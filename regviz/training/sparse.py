"""Sparse multi-hot rows as TensorFlow tensors, made once per row set and shared by every run on it."""

from __future__ import annotations

import threading
from collections import OrderedDict

import tensorflow as tf

from regviz import data as datasets

PREPARED_ROWS = 4  # row sets kept as tensors: a dataset's training and validation rows, and a spare pair


def csr(coords, n_rows, n_cols):
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
            self._csr = csr(coords, len(self.rows), self.rows.n_cols)
        return self._csr


_tensors_cache: OrderedDict[tuple, _Tensors] = OrderedDict()
_tensors_lock = threading.Lock()


def tensors(rows: datasets.SparseRows) -> _Tensors:
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
