"""Sparse multi-hot rows as TensorFlow tensors, and the first layer's product with them.

`first_matmul` is the one product of multi-hot rows with the first layer's kernel, with its gradient:
training steps, validation and the tests all go through it. A row set's tensors are made once and
shared by every run on it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import tensorflow as tf

from regviz import data as datasets

PREPARED_ROWS = 4  # row sets kept as tensors: a dataset's training and validation rows, and a spare pair
COO_MAX_WIDTH = 16  # a batch's product up to this width: COO 2x faster than CSR (no CSR matrix to build);
# from 32 units on 3x slower. A row set made once (validation) is always CSR: on IMDB's 19.5k validation
# rows CSR takes 1.0 ms at 16 units against COO's 4.9 ms (CSR's kernel runs on both cores)


def first_matmul(x, kernel, x_t=None):
    """x @ kernel for multi-hot rows x (a COO SparseTensor or CSR matrix), with the gradient x^T @ dy
    (x_t: x's transpose as a CSR matrix, when it was made beforehand)."""
    kernel = tf.convert_to_tensor(kernel)  # a variable's read: a tape carries the gradient on to it
    return _coo_matmul(x, kernel) if isinstance(x, tf.SparseTensor) else _csr_matmul(x, kernel, x_t)


def uses_csr(width: int) -> bool:
    """Whether a batch's product with a first layer of this width is CSR's (else COO's)."""
    return width > COO_MAX_WIDTH


def batch_matrix(coords, n_rows, n_cols, width):
    """A batch's rows with ones at coords, in the faster form for a kernel of this width: COO or CSR."""
    return csr(coords, n_rows, n_cols) if uses_csr(width) else coo(coords, n_rows, n_cols)


def coo(coords, n_rows, n_cols):
    """A COO matrix of ones at coords ([n, 2] int64, row-major order)."""
    return tf.SparseTensor(coords, tf.ones(tf.shape(coords)[:1], tf.float32), _shape(n_rows, n_cols))


def csr(coords, n_rows, n_cols):
    """A CSR matrix of ones at coords ([n, 2] int64, row-major order)."""
    ones = tf.ones(tf.shape(coords)[:1], tf.float32)
    return tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=coords, values=ones, dense_shape=_shape(n_rows, n_cols)
    )


def _shape(n_rows, n_cols):
    return tf.stack([tf.cast(n_rows, tf.int64), tf.cast(n_cols, tf.int64)])


def _coo_matmul(x, kernel):
    @tf.custom_gradient
    def matmul(k):
        def grad(dy):
            return tf.sparse.sparse_dense_matmul(x, dy, adjoint_a=True)

        return tf.sparse.sparse_dense_matmul(x, k), grad

    return matmul(kernel)


def _csr_matmul(x, kernel, x_t=None):
    @tf.custom_gradient
    def matmul(k):
        def grad(dy):
            # the transpose is made only when a gradient is asked for: validation never pays for it
            t = tf.raw_ops.SparseMatrixTranspose(input=x, type=tf.float32) if x_t is None else x_t
            return tf.raw_ops.SparseMatrixMatMul(a=t, b=dy)

        return tf.raw_ops.SparseMatrixMatMul(a=x, b=k), grad

    return matmul(kernel)


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
