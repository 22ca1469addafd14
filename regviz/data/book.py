"""The book's datasets (IMDB, Reuters, Boston Housing): a local file in Keras's shapes, else Keras's
download, split as the book does."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket
import sys
import urllib.error
from pathlib import Path

import numpy as np

from regviz.data.dataset import Dataset, DatasetUnavailable
from regviz.data.rows import NUM_WORDS, DenseRows, multi_hot
from regviz.problems import MULTICLASS, REGRESSION

VALIDATION_SIZE = 10000  # the book's hold-out: the first 10,000 training reviews
REUTERS_VALIDATION = 1000  # the book's hold-out for Reuters: the first 1,000 training newswires
IMDB_PATH_ENV = "REGVIZ_IMDB_PATH"
REUTERS_PATH_ENV = "REGVIZ_REUTERS_PATH"
BOSTON_PATH_ENV = "REGVIZ_BOSTON_PATH"
BOSTON_VALIDATION = 101  # hold-out for Boston: a quarter of its 404 training rows, one of the book's 4 folds
OFFLINE_DATASETS = ("synthetic", "topics", "houses")


def file_version(path: str, keras_name: str) -> str:
    """The version a dataset loaded from this file (or, with no file, Keras's download) gets, without
    loading it: what the store's keys hold. Raises OSError for a file that cannot be read."""
    if not path:
        words = "" if keras_name == "boston_housing" else f"-{NUM_WORDS}"
        return f"keras-{keras_name}{words}"
    stat = os.stat(path)
    return "npz-" + _cached_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _cached_digest(path: str, size: int, mtime_ns: int) -> str:
    return _file_digest(Path(path))  # keyed by size and time: a replaced file is read again


def _imdb(path: str) -> Dataset:
    (xtr, ytr), (xte, yte), version, source = _source(path, "imdb", "IMDB", "reviews", IMDB_PATH_ENV)
    return _split("imdb", version, multi_hot(xtr), ytr, multi_hot(xte), yte, source)


def _source(path: str, keras_name: str, short: str, rows: str, env: str):
    """(train, test, version, description) from a local file in Keras's shapes, else Keras's download."""
    what = f"{short} {rows}".strip()
    if path:
        train, test = _read_npz(Path(path), short, env)
        return train, test, file_version(path, keras_name), f"{what} from {path}"
    train, test = _download(keras_name, env)
    return train, test, file_version("", keras_name), f"{what} (keras.datasets.{keras_name})"


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
            f"{what} could not be downloaded ({download_failure(e)}) and no local copy is set ({env}); "
            f"offline datasets: {', '.join(OFFLINE_DATASETS)}"
        ) from None


def download_failure(e: BaseException) -> str:
    """Why a download failed, in plain words: no network, the server's answer, or an unreadable file."""
    chain = _chain(e)
    http = next((x for x in chain if isinstance(x, urllib.error.HTTPError)), None)
    if http is not None:
        return f"the server answered {http.code} {_first_line(http.msg) if http.msg else ''}".strip()
    offline = (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror, socket.timeout)
    if any(isinstance(x, offline) for x in chain) or "URL fetch failure" in str(e):
        return "no network"  # keras wraps urllib's error in a bare Exception: "URL fetch failure on ..."
    if isinstance(e, PermissionError | IsADirectoryError | NotADirectoryError):
        return "Keras's cache folder cannot be written"
    if isinstance(e, OSError):
        return "no network"
    return "the downloaded file could not be read"


def _chain(e: BaseException) -> list[BaseException]:
    """The exception and those it was raised from or during, outermost first."""
    out = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else "no detail"
