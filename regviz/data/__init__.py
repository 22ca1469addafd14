"""Datasets: loaded once per process, kept as sparse multi-hot or dense rows, split as the book does.

One module per source: `book.py` (IMDB, Reuters, Boston Housing from files or Keras's download),
`offline.py` (generated in their shapes); this one is the registry every caller goes through.
"""

from __future__ import annotations

import functools
import os
import threading

from regviz import problems
from regviz.data.book import (
    BOSTON_PATH_ENV,
    BOSTON_VALIDATION,
    IMDB_PATH_ENV,
    OFFLINE_DATASETS,
    REUTERS_PATH_ENV,
    REUTERS_VALIDATION,
    VALIDATION_SIZE,
    _boston,
    _imdb,
    _reuters,
)
from regviz.data.csvfile import Prepared
from regviz.data.dataset import Dataset, DatasetInfo, DatasetUnavailable, describe
from regviz.data.offline import houses, synthetic, topics
from regviz.data.rows import NUM_WORDS, DenseRows, SparseRows, multi_hot, standardize
from regviz.problems import BINARY, MULTICLASS, REGRESSION

__all__ = [
    "BOSTON_PATH_ENV", "BOSTON_VALIDATION", "IMDB_PATH_ENV", "NUM_WORDS", "OFFLINE_DATASETS",
    "REUTERS_PATH_ENV", "REUTERS_VALIDATION", "VALIDATION_SIZE", "Dataset", "DatasetInfo",
    "DatasetUnavailable", "DenseRows", "SparseRows", "describe", "houses", "load", "multi_hot",
    "offline_for", "standardize", "synthetic", "topics", "UploadMissing", "add_upload", "forget_upload",
    "release_uploads", "upload_payload", "uploaded",
]  # fmt: skip
OFFLINE_FOR = {BINARY: "synthetic", MULTICLASS: "topics", REGRESSION: "houses"}  # after a failed download


def offline_for(name: str) -> str:
    """The offline dataset of the same problem type, for when `name` cannot be loaded."""
    return OFFLINE_FOR.get(problems.of_dataset(name)[0].kind, OFFLINE_DATASETS[0])


_lock = threading.Lock()
# uploaded files of this process's sessions (a worker's: those it was sent), never on disk
_uploads: dict[str, tuple[Prepared, Dataset, bytes]] = {}
_holders: dict[str, set[str]] = {}  # uploaded file -> the sessions holding it


class UploadMissing(DatasetUnavailable):
    """A link or a run names an uploaded file this process does not hold (another session's, or gone)."""


def add_upload(prepared: Prepared | bytes, holder: str = "") -> Prepared:
    """Hold an uploaded file (prepared, or its payload as a worker receives it) for `holder` (a
    session), until every holder has released it or it is forgotten."""
    if isinstance(prepared, bytes | bytearray):
        payload, prepared = bytes(prepared), Prepared.from_payload(bytes(prepared))
    else:
        payload = prepared.to_payload()
    with _lock:
        if prepared.name not in _uploads:
            _uploads[prepared.name] = (prepared, prepared.dataset(), payload)
        _holders.setdefault(prepared.name, set()).add(holder)
    return prepared


def release_uploads(holder: str) -> list[str]:
    """The holder (a session) ended: the files no one else holds are forgotten; their names."""
    gone = []
    with _lock:
        for name, holders in list(_holders.items()):
            holders.discard(holder)
            if not holders:
                gone.append(name)
                del _holders[name]
                _uploads.pop(name, None)
    return gone


def forget_upload(name: str) -> None:
    """Drop an uploaded file, whoever holds it (a worker told its session ended)."""
    with _lock:
        _uploads.pop(name, None)
        _holders.pop(name, None)


def uploaded(name: str) -> Prepared | None:
    """The uploaded file of this name, if this process holds it."""
    with _lock:
        held = _uploads.get(name)
    return held[0] if held else None


def upload_payload(name: str) -> bytes | None:
    """The bytes a worker needs to train on the uploaded file, if this process holds it."""
    with _lock:
        held = _uploads.get(name)
    return held[2] if held else None


def load(name: str) -> Dataset:
    """The named dataset, prepared once per process and shared by every run."""
    if problems.is_upload(name):
        with _lock:
            held = _uploads.get(name)
        if held is None:
            raise UploadMissing(
                "this run's data is a file uploaded in another session (uploaded data is never shared or "
                "kept); upload the same file to see its runs"
            )
        return held[1]
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
