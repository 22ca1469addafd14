"""Label noise: a share of a run's training labels replaced, so that a class sees a network memorise.

Zhang et al. (2017, "Understanding deep learning requires rethinking generalization") showed that a
network fits labels it cannot generalise from: the training loss still falls toward zero while the
validation loss climbs. Only the rows a run trains on get noise; validation and test labels never do.
NumPy only, and short enough for the exported listing (regviz/listing.py) to spell out the same steps.
"""

from __future__ import annotations

import numpy as np

from regviz.problems import REGRESSION

NOISE_STREAM = 0x4015E  # beside the seed: the noise draws never share a stream with the weights or batches


def flipped_count(n_rows: int, fraction: float) -> int:
    """How many of n_rows training labels the noise replaces: round(fraction * n_rows)."""
    return round(fraction * n_rows)


def noisy_labels(y: np.ndarray, fraction: float, seed: int, kind: str, classes: int) -> np.ndarray:
    """A copy of the training labels y with round(fraction * len(y)) of them, chosen by the seed,
    replaced: a class label by another class drawn uniformly from the other classes-1; a regression
    target by another training row's target. y itself when fraction is 0 (today's runs, bit for bit)."""
    n = len(y)
    if not fraction or n < 2 or (kind != REGRESSION and classes < 2):
        return y
    rng = np.random.default_rng([seed, NOISE_STREAM])
    rows = rng.permutation(n)[: flipped_count(n, fraction)]
    noisy = np.array(y, copy=True)
    if kind == REGRESSION:  # an offset of 1..n-1 rows: always another row
        noisy[rows] = y[(rows + rng.integers(1, n, size=len(rows))) % n]
    else:  # an offset of 1..classes-1 classes: always another class, each equally likely
        noisy[rows] = (y[rows] + rng.integers(1, classes, size=len(rows))) % classes
    return noisy
