"""Offline datasets generated from fixed seeds in the shapes of the book's three: no download, the
same models, the same overfitting."""

from __future__ import annotations

import numpy as np

from regviz.data.book import REUTERS_VALIDATION, _split, _tabular
from regviz.data.dataset import Dataset
from regviz.data.rows import NUM_WORDS, SparseRows, multi_hot
from regviz.problems import MULTICLASS


def houses(seed: int = 506, n_train: int = 404, n_test: int = 102, noise: float = 3.0) -> Dataset:
    """Boston-shaped tracts generated from a fixed seed: 13 features on their own scales (a few
    correlated, one binary like CHAS), a median value in $1000s from a smooth function of four of them
    plus noise of $3,000. As small as Boston, so a 64-64 network starts fitting the noise within a
    hundred epochs: its validation loss is a quarter to a third higher by epoch 300."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    z = rng.normal(size=(n, 13))
    z[:, 1] = 0.7 * z[:, 0] + 0.7 * z[:, 1]  # correlated features, as crime rate and taxes are
    scales = np.array([8.0, 23.0, 6.9, 1.0, 0.12, 0.7, 28.0, 2.1, 8.7, 168.0, 2.2, 91.0, 7.1])
    offsets = np.array([3.6, 11.0, 11.1, 0.0, 0.55, 6.3, 68.0, 3.8, 9.5, 408.0, 18.5, 357.0, 12.7])
    x = z * scales + offsets
    x[:, 3] = (z[:, 3] > 1.2).astype(float)  # a river-side flag
    value = 22.5 + 6.0 * z[:, 5] - 5.0 * np.tanh(z[:, 12]) - 2.0 * z[:, 10] + 1.5 * z[:, 5] * z[:, 12]
    y = np.clip(value + rng.normal(0.0, noise, n), 5.0, 50.0)
    return _tabular(
        "houses", f"houses-{seed}-{n_train}-{n_test}-{noise}", x[:n_train], y[:n_train], x[n_train:],
        y[n_train:], "synthetic Boston-shaped census tracts (generated, fixed seed)",
    )  # fmt: skip


def synthetic(seed: int = 1234, n_train: int = 25000, n_test: int = 10000) -> Dataset:
    """IMDB-shaped reviews generated from a fixed seed: no download, same model, same overfitting."""
    rng = np.random.default_rng(seed)
    # zipf-like word frequencies, as in real text
    freq = 1.0 / (np.arange(NUM_WORDS) + 10.0)
    freq /= freq.sum()
    # a few hundred words carry sentiment; the rest is noise a big network can memorise
    weight = np.zeros(NUM_WORDS)
    informative = rng.choice(np.arange(20, 4000), size=400, replace=False)
    weight[informative] = rng.normal(0.0, 1.0, size=400)
    x = _sample_docs(rng, freq, n_train + n_test)
    score = np.add.reduceat(weight[x.indices], x.indptr[:-1]) + rng.normal(0.0, 1.5, size=len(x))
    y = (score > np.median(score)).astype(np.float32)  # balanced, like IMDB
    return _split(
        "synthetic",
        f"synthetic-{seed}-{n_train}-{n_test}",
        x.take(n_train),
        y[:n_train],
        x.skip(n_train),
        y[n_train:],
        "synthetic IMDB-shaped reviews (generated, fixed seed)",
    )


def _sample_docs(rng, freq, n_docs: int, length: int = 170) -> SparseRows:
    # inverse-cdf sampling: much faster than rng.choice with p for millions of draws
    cdf = np.cumsum(freq)
    draws = np.searchsorted(cdf, rng.random((n_docs, length)) * cdf[-1])
    tokens = np.sort(np.minimum(draws, NUM_WORDS - 1), axis=1)
    keep = np.ones_like(tokens, dtype=bool)
    keep[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(keep.sum(axis=1))
    return SparseRows(indptr, tokens[keep].astype(np.int32), NUM_WORDS)


def topics(
    seed: int = 4321,
    n_train: int = 8982,
    n_test: int = 2246,
    classes: int = 46,
    noise: float = 0.3,
    cues_per_doc: int = 6,
    filler: int = 110,
) -> Dataset:
    """Reuters-shaped newswires over 46 topics, generated from a fixed seed: no download, same model.

    As in Reuters, a few topics are common and most are rare; each topic has a few dozen words of its
    own, a newswire mixes six of them into Zipf-distributed filler, and three labels in ten are another
    topic's (Reuters' file has about one in ten): the book's 64-64 network learns the cues in a few
    epochs, then memorises the noise, so its validation loss turns up by a quarter within 20 epochs.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    share = 1.0 / (np.arange(classes) + 1.0) ** 1.2
    y = rng.choice(classes, size=n, p=share / share.sum())
    cues = rng.choice(np.arange(30, NUM_WORDS), size=(classes, 40), replace=False)
    docs = _sample_docs(rng, _zipf(), n, length=filler)
    picked = cues[y[:, None], rng.integers(0, 40, size=(n, cues_per_doc))]
    words = np.split(docs.indices, docs.indptr[1:-1])
    rows = [np.concatenate([w, p]) for w, p in zip(words, picked, strict=True)]
    noisy = rng.random(n) < noise
    y = np.where(noisy, rng.integers(0, classes, size=n), y).astype(np.float32)
    x, m = multi_hot(rows), REUTERS_VALIDATION
    return Dataset(
        "topics", f"topics-{seed}-{n_train}-{n_test}", x.take(n_train).skip(m), y[m:n_train],
        x.take(m), y[:m], x.skip(n_train), y[n_train:],
        "synthetic Reuters-shaped newswires over 46 topics (generated, fixed seed)", MULTICLASS, classes,
    )  # fmt: skip


def _zipf() -> np.ndarray:
    freq = 1.0 / (np.arange(NUM_WORDS) + 10.0)
    return freq / freq.sum()
