"""A prepared dataset with its splits, and the description of it the page server keeps."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from regviz import splits
from regviz.data.rows import SparseRows, standardize
from regviz.problems import BINARY


class DatasetUnavailable(RuntimeError):
    """A dataset cannot be loaded; the message is one line that says why and what to use instead."""


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset with the book's hold-out split; labels are floats (a class's index for
    multiclass problems)."""

    name: str
    version: str  # part of the store key: other data never serves stale curves
    x_train: SparseRows  # what training may use (before train_fraction)
    y_train: np.ndarray
    x_val: SparseRows
    y_val: np.ndarray
    x_test: SparseRows  # kept apart for a final evaluation, never used for tuning
    y_test: np.ndarray
    description: str
    problem: str = BINARY  # problems.BINARY, MULTICLASS or REGRESSION
    classes: int = 2
    # tabular rows: the transform a run fits on its training rows and applies to the others (None:
    # standardise every feature, the book's step for Boston), and its output width (0: the rows' own)
    prepare: Callable[..., tuple] | None = None
    features: int = 0
    scale_target: bool = False  # regression on uploads: train on the target over its training spread

    @property
    def num_features(self) -> int:
        """Input width."""
        return self.features or self.x_train.n_cols

    def transform(self, train, *others) -> tuple:
        """Tabular rows as the network sees them: the transform fit on `train`, applied to all."""
        return (self.prepare or standardize)(train, *others)

    def training_rows(self, fraction: float) -> tuple[SparseRows, np.ndarray]:
        """The first ceil(fraction * n) training rows: less data, the book's first remedy reversed."""
        n = max(1, math.ceil(fraction * len(self.y_train)))
        return self.x_train.take(n), self.y_train[:n]

    def whole_training_split(self):
        """(x, y) of every training row, the hold-out rows first: what a final run trains on."""
        return type(self.x_val).join(self.x_val, self.x_train), np.concatenate([self.y_val, self.y_train])

    def fold(self, folds: int, fold: int, repeat: int, seed: int, shuffle: bool, fraction: float = 1.0):
        """(x_train, y_train, x_val, y_val) of one K-fold fold over the whole training split (the
        hold-out rows first, then the rest), the training part cut to `fraction` as in hold-out."""
        x, y = self.whole_training_split()
        train, val = splits.fold_rows(len(y), folds, fold, repeat, seed, shuffle)
        train = train[: max(1, math.ceil(fraction * len(train)))]
        return x.select(train), y[train], x.select(val), y[val]


@dataclass(frozen=True)
class DatasetInfo:
    """What the page server knows of a dataset without loading it: sizes, version, description."""

    name: str
    version: str
    n_train: int  # training rows before train_fraction
    n_val: int
    num_features: int
    nnz_per_row: float  # mean ones per row, for estimating a run's cost
    description: str
    problem: str = BINARY
    classes: int = 2

    def training_rows(self, fraction: float) -> int:
        """How many rows a run with this train_fraction trains on (as Dataset.training_rows takes them)."""
        return max(1, math.ceil(fraction * self.n_train))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)


def describe(dataset: Dataset) -> DatasetInfo:
    """The dataset's sizes and version, as the page server keeps them."""
    rows = len(dataset.y_train) + len(dataset.y_val)
    nnz = dataset.x_train.nnz + dataset.x_val.nnz
    return DatasetInfo(
        dataset.name, dataset.version, len(dataset.y_train), len(dataset.y_val), dataset.num_features,
        nnz / max(1, rows), dataset.description, dataset.problem, dataset.classes,
    )  # fmt: skip
