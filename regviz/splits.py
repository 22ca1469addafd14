"""Evaluation protocols (the workflow's third step): which rows train and which validate.

Hold-out keeps the book's fixed validation rows. K-fold joins the training and validation rows (the
whole training split) and lets each of `folds` equal parts validate once, a model trained on the rest;
iterated K-fold does that `repeats` times, the rows shuffled before each repeat (seeded by the run's
seed and the repeat), as the book describes. The test split is never part of any of them. NumPy only.
"""

from __future__ import annotations

import numpy as np

HOLDOUT, KFOLD, ITERATED = "holdout", "kfold", "iterated"
PROTOCOLS = (HOLDOUT, KFOLD, ITERATED)


def fold_rows(n_rows: int, folds: int, fold: int, repeat: int = 0, seed: int = 0, shuffle: bool = False):
    """(training row indices, validation row indices) of one fold over rows 0..n_rows-1: fold `fold`
    of `folds` contiguous parts (the book's `x[i * num_val_samples: (i + 1) * num_val_samples]`), of
    the rows in order, or, when `shuffle`, in the order of the repeat's own permutation."""
    if not 0 <= fold < folds <= n_rows:
        raise ValueError(f"fold {fold} of {folds} over {n_rows} rows")
    order = _order(n_rows, repeat, seed) if shuffle else np.arange(n_rows)
    bounds = np.linspace(0, n_rows, folds + 1).round().astype(int)
    val = order[bounds[fold] : bounds[fold + 1]]
    train = np.concatenate([order[: bounds[fold]], order[bounds[fold + 1] :]])
    return train, val


def _order(n_rows: int, repeat: int, seed: int) -> np.ndarray:
    # one permutation per (seed, repeat): the same folds in every process, new ones each repeat
    return np.random.default_rng([seed, repeat, 0x5EED]).permutation(n_rows)
