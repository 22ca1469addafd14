"""Datasets: loaded once per process, kept as sparse multi-hot rows, split as the book does."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regviz import problems, splits
from regviz.problems import BINARY, MULTICLASS, REGRESSION

NUM_WORDS = 10000  # the book keeps the 10,000 most frequent words
VALIDATION_SIZE = 10000  # the book's hold-out: the first 10,000 training reviews
REUTERS_VALIDATION = 1000  # the book's hold-out for Reuters: the first 1,000 training newswires
IMDB_PATH_ENV = "REGVIZ_IMDB_PATH"
REUTERS_PATH_ENV = "REGVIZ_REUTERS_PATH"
BOSTON_PATH_ENV = "REGVIZ_BOSTON_PATH"
BOSTON_VALIDATION = 101  # hold-out for Boston: a quarter of its 404 training rows, one of the book's 4 folds
OFFLINE_DATASETS = ("synthetic", "topics", "houses")
OFFLINE_FOR = {BINARY: "synthetic", MULTICLASS: "topics", REGRESSION: "houses"}  # after a failed download


def offline_for(name: str) -> str:
    """The offline dataset of the same problem type, for when `name` cannot be loaded."""
    return OFFLINE_FOR.get(problems.of_dataset(name)[0].kind, OFFLINE_DATASETS[0])


class DatasetUnavailable(RuntimeError):
    """A dataset cannot be loaded; the message is one line that says why and what to use instead."""


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

    @property
    def num_features(self) -> int:
        """Input width."""
        return self.x_train.n_cols

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


def multi_hot(sequences, num_words: int = NUM_WORDS) -> SparseRows:
    """Sparse form of the book's vectorize_sequences: one row per sequence, ones at its word indices."""
    rows = [np.unique(np.asarray(s, dtype=np.int64)) for s in sequences]
    rows = [r[(r >= 0) & (r < num_words)] for r in rows]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
    return SparseRows(indptr, indices, num_words)


_lock = threading.Lock()


def load(name: str) -> Dataset:
    """The named dataset, prepared once per process and shared by every run."""
    with _lock:
        envs = {"imdb": IMDB_PATH_ENV, "reuters": REUTERS_PATH_ENV, "boston": BOSTON_PATH_ENV}
        path = os.environ.get(envs.get(name, ""), "")
        return _load_cached(name, path)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, path: str) -> Dataset:
    if name == "imdb":
        return _imdb(path)
    if name == "reuters":
        return _reuters(path)
    if name == "synthetic":
        return synthetic()
    if name == "topics":
        return topics()
    if name == "boston":
        return _boston(path)
    if name == "houses":
        return houses()
    raise DatasetUnavailable(f"unknown dataset {name!r}; choose one of: {', '.join(problems.DATASETS)}")


def _imdb(path: str) -> Dataset:
    (xtr, ytr), (xte, yte), version, source = _source(path, "imdb", "IMDB", "reviews", IMDB_PATH_ENV)
    return _split("imdb", version, multi_hot(xtr), ytr, multi_hot(xte), yte, source)


def _source(path: str, keras_name: str, short: str, rows: str, env: str):
    """(train, test, version, description) from a local file in Keras's shapes, else Keras's download."""
    what = f"{short} {rows}".strip()
    if path:
        train, test = _read_npz(Path(path), short, env)
        return train, test, "npz-" + _file_digest(Path(path)), f"{what} from {path}"
    train, test = _download(keras_name, env)
    words = "" if keras_name == "boston_housing" else f"-{NUM_WORDS}"
    return train, test, f"keras-{keras_name}{words}", f"{what} (keras.datasets.{keras_name})"


def _reuters(path: str) -> Dataset:
    train, test, version, source = _source(path, "reuters", "Reuters", "newswires", REUTERS_PATH_ENV)
    (xtr, ytr), (xte, yte) = train, test
    x, y, n = multi_hot(xtr), np.asarray(ytr, np.float32), REUTERS_VALIDATION
    return Dataset(
        "reuters", version, x.skip(n), y[n:], x.take(n), y[:n], multi_hot(xte), np.asarray(yte, np.float32),
        source, MULTICLASS, 46,
    )  # fmt: skip


def _split(name, version, x, y, x_test, y_test, description) -> Dataset:
    y, y_test = np.asarray(y, np.float32), np.asarray(y_test, np.float32)
    # the book's 10,000 hold-out, or half of a small training split
    n_val = VALIDATION_SIZE if len(y) >= 1.5 * VALIDATION_SIZE else len(y) // 2
    return Dataset(
        name, version, x.skip(n_val), y[n_val:], x.take(n_val), y[:n_val], x_test, y_test, description
    )


def _boston(path: str) -> Dataset:
    train, test, version, source = _source(path, "boston_housing", "Boston Housing", "", BOSTON_PATH_ENV)
    (xtr, ytr), (xte, yte) = train, test
    return _tabular("boston", version, xtr, ytr, xte, yte, source)


def _tabular(name, version, x, y, x_test, y_test, description) -> Dataset:
    # features as read: standardising is the training run's step, on its own training part
    x, x_test = DenseRows(np.asarray(x, np.float32)), DenseRows(np.asarray(x_test, np.float32))
    y, y_test, n = np.asarray(y, np.float32), np.asarray(y_test, np.float32), BOSTON_VALIDATION
    return Dataset(
        name, version, x.skip(n), y[n:], x.take(n), y[:n], x_test, y_test, description, REGRESSION, 1
    )


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


def _read_npz(path: Path, what: str = "IMDB", env: str = IMDB_PATH_ENV):
    try:
        with np.load(path, allow_pickle=True) as f:
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    except Exception as e:  # any unreadable file gets the same one-line answer
        raise DatasetUnavailable(
            f"cannot read {what} file {path} ({type(e).__name__}: {_first_line(e)}); "
            f"fix {env} or use an offline dataset: {', '.join(OFFLINE_DATASETS)}"
        ) from None


def _download(name: str, env: str):
    import keras  # keras is heavy; only this path needs it

    what = {"imdb": "IMDB", "reuters": "Reuters", "boston_housing": "Boston Housing"}[name]
    words = {} if name == "boston_housing" else {"num_words": NUM_WORDS}
    try:
        # keras prints its progress to stdout, which belongs to the command line's JSON lines
        with contextlib.redirect_stdout(sys.stderr):
            return getattr(keras.datasets, name).load_data(**words)
    except Exception as e:  # no network, proxy errors, a broken cache file: all one message
        raise DatasetUnavailable(
            f"{what} could not be downloaded ({type(e).__name__}: {_first_line(e)}); "
            f"offline datasets: {', '.join(OFFLINE_DATASETS)} (or set {env} to a local {name}.npz)"
        ) from None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else "no detail"


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
    seed: int = 4321, n_train: int = 8982, n_test: int = 2246, classes: int = 46, noise: float = 0.3,
    cues_per_doc: int = 6, filler: int = 110,
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
