"""Datasets: loaded once per process, kept as sparse multi-hot or dense rows, split as the book does.

One module per source: `book.py` (IMDB, Reuters, Boston Housing from files or Keras's download),
`offline.py` (generated in their shapes), `csvfile.py` (an uploaded CSV) with `uploads.py` (the files
this process holds); this one is the registry every caller goes through.
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
    file_version,
)
from regviz.data.dataset import Dataset, DatasetInfo, DatasetUnavailable, describe
from regviz.data.offline import houses, synthetic, topics
from regviz.data.rows import NUM_WORDS, DenseRows, SparseRows, multi_hot, standardize
from regviz.data.uploads import (
    MAX_UPLOAD_MB_ENV,
    UploadMissing,
    UploadRefused,
    add_upload,
    drop_reading,
    forget_upload,
    give_back_memory,
    held_bytes,
    hold_reading,
    load_upload,
    reading,
    release_uploads,
    upload_info,
    upload_payload,
    uploaded,
)
from regviz.problems import BINARY, MULTICLASS, REGRESSION

__all__ = [
    "BOSTON_PATH_ENV", "BOSTON_VALIDATION", "IMDB_PATH_ENV", "NUM_WORDS", "OFFLINE_DATASETS",
    "REUTERS_PATH_ENV", "REUTERS_VALIDATION", "VALIDATION_SIZE", "Dataset", "DatasetInfo",
    "DatasetUnavailable", "DenseRows", "SparseRows", "describe", "houses", "load", "multi_hot",
    "offline_for", "standardize", "synthetic", "topics", "UploadMissing", "add_upload", "forget_upload",
    "release_uploads", "upload_info", "upload_payload", "uploaded", "MAX_UPLOAD_MB_ENV", "UploadRefused",
    "drop_reading", "held_bytes", "hold_reading", "reading", "version_of",
]  # fmt: skip
OFFLINE_FOR = {BINARY: "synthetic", MULTICLASS: "topics", REGRESSION: "houses"}  # after a failed download


def offline_for(name: str) -> str:
    """The offline dataset of the same problem type, for when `name` cannot be loaded."""
    return OFFLINE_FOR.get(problems.of_dataset(name)[0].kind, OFFLINE_DATASETS[0])


_lock = threading.Lock()


def load(name: str) -> Dataset:
    """The named dataset, prepared once per process and shared by every run."""
    if problems.is_upload(name):
        return load_upload(name)
    with _lock:
        path = os.environ.get(PATH_ENVS.get(name, ""), "")
        return _load_cached(name, path)


KERAS_NAMES = {"imdb": "imdb", "reuters": "reuters", "boston": "boston_housing"}
PATH_ENVS = {"imdb": IMDB_PATH_ENV, "reuters": REUTERS_PATH_ENV, "boston": BOSTON_PATH_ENV}


def version_of(name: str) -> str | None:
    """A book dataset's version without loading it (its file's digest), so that a stored run can be
    found before any worker has described the data; None for the others or a file that cannot be read."""
    if name not in KERAS_NAMES:
        return None
    try:
        return file_version(os.environ.get(PATH_ENVS[name], ""), KERAS_NAMES[name])
    except OSError:
        return None  # the worker says why when it loads it


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, path: str) -> Dataset:
    dataset = _load_new(name, path)
    give_back_memory()  # a file's reviews are read as one small array each, freed by now
    return dataset


def _load_new(name: str, path: str) -> Dataset:
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
