"""Rows of a dataset: sparse multi-hot rows (words) or dense rows (tabular features), one interface."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_WORDS = 10000  # the book keeps the 10,000 most frequent words


@dataclass(frozen=True)
class SparseRows:
    """Multi-hot rows in CSR form: row i has ones at indices[indptr[i]:indptr[i+1]]."""

    indptr: np.ndarray  # int64, len n+1
    indices: np.ndarray  # int32, sorted within each row
    n_cols: int

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        """Number of ones."""
        return int(self.indptr[-1])

    def take(self, n: int) -> SparseRows:
        """The first n rows."""
        end = self.indptr[n]
        return SparseRows(self.indptr[: n + 1], self.indices[:end], self.n_cols)

    def skip(self, n: int) -> SparseRows:
        """All rows after the first n."""
        start = self.indptr[n]
        return SparseRows(self.indptr[n:] - start, self.indices[start:], self.n_cols)

    def select(self, rows: np.ndarray) -> SparseRows:
        """These rows, in this order (a fold's training or validation part)."""
        starts, ends = self.indptr[rows], self.indptr[np.asarray(rows) + 1]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(ends - starts)
        pieces = [self.indices[a:b] for a, b in zip(starts, ends, strict=True)]
        indices = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        return SparseRows(indptr, indices, self.n_cols)

    @staticmethod
    def join(a: SparseRows, b: SparseRows) -> SparseRows:
        """The rows of a, then those of b."""
        return SparseRows(np.concatenate([a.indptr, b.indptr[1:] + a.indptr[-1]]),
                          np.concatenate([a.indices, b.indices]), a.n_cols)  # fmt: skip

    def to_dense(self, dtype=np.float32) -> np.ndarray:
        """The dense multi-hot matrix, as the book's vectorize_sequences builds it."""
        out = np.zeros((len(self), self.n_cols), dtype=dtype)
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        out[rows, self.indices] = 1.0
        return out


@dataclass(frozen=True)
class DenseRows:
    """Rows of continuous features (tabular data): the same interface as SparseRows."""

    values: np.ndarray  # float32, [rows, features]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_cols(self) -> int:
        """Number of features."""
        return self.values.shape[1]

    @property
    def nnz(self) -> int:
        """Entries (every one counts: the rows are dense)."""
        return self.values.size

    def take(self, n: int) -> DenseRows:
        """The first n rows."""
        return DenseRows(self.values[:n])

    def skip(self, n: int) -> DenseRows:
        """All rows after the first n."""
        return DenseRows(self.values[n:])

    def to_dense(self, dtype=np.float32) -> np.ndarray:
        """The rows as a matrix."""
        return self.values.astype(dtype)

    def select(self, rows: np.ndarray) -> DenseRows:
        """These rows, in this order."""
        return DenseRows(self.values[rows])

    @staticmethod
    def join(a: DenseRows, b: DenseRows) -> DenseRows:
        """The rows of a, then those of b."""
        return DenseRows(np.concatenate([a.values, b.values]))


def standardize(train: DenseRows, *others: DenseRows) -> tuple[DenseRows, ...]:
    """Each feature minus the training part's mean, over its standard deviation, for the training part
    and the others alike (the book's step 4): no statistic of another part reaches the transform."""
    mean = train.values.mean(axis=0)
    std = train.values.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant column stays 0 rather than dividing by zero
    return tuple(DenseRows(((r.values - mean) / std).astype(np.float32)) for r in (train, *others))


ROWS_AT_ONCE = 2048  # multi_hot's chunk: its temporary arrays stay a few MB


def multi_hot(sequences, num_words: int = NUM_WORDS) -> SparseRows:
    """Sparse form of the book's vectorize_sequences: one row per sequence, ones at its word indices."""
    # whole-chunk steps, not an array kept per row: tens of thousands of small arrays left the heap
    # fragmented, and a worker kept about 100 MB of it for its whole life
    parts = [_multi_hot_rows(sequences[i : i + ROWS_AT_ONCE], num_words)
             for i in range(0, len(sequences), ROWS_AT_ONCE)]  # fmt: skip
    counts = np.concatenate([np.zeros(0, np.int64), *(c for c, _ in parts)])
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    indices = np.concatenate([np.zeros(0, np.int32), *(i for _, i in parts)])
    return SparseRows(indptr, indices, num_words)


def _multi_hot_rows(sequences, num_words: int) -> tuple[np.ndarray, np.ndarray]:
    """(ones per row, their sorted distinct in-vocabulary words) of a few sequences."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    words = np.concatenate([np.zeros(0, np.int64), *(np.asarray(s, np.int64).reshape(-1) for s in sequences)])
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    keep = (words >= 0) & (words < num_words)
    cells = np.unique(rows[keep] * num_words + words[keep])  # sorted: by row, then by word
    return np.bincount(cells // num_words, minlength=len(lengths)), (cells % num_words).astype(np.int32)
