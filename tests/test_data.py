"""Datasets: the book's multi-hot rows, the book's IMDB split, offline data, one-line failures."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import urllib.error
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import REPO, subprocess_env

from regviz import data

NUM_WORDS = 10000  # the book's vocabulary


def vectorize_sequences(sequences, dimension=NUM_WORDS):
    """The book's vectorize_sequences (listing 4.3); words beyond the vocabulary are left out.

    keras.datasets.imdb.load_data(num_words=...) never hands the book such indices; the offline file
    keeps every word, so the reference skips them where the book's loader would have cut them.
    """
    results = np.zeros((len(sequences), dimension))
    for i, sequence in enumerate(sequences):
        for j in sequence:
            if j < dimension:
                results[i, j] = 1.0
    return results


def random_sequences(rng, n, num_words, max_len=60):
    """Word-index lists with duplicates, empty reviews and indices at or beyond num_words."""
    seqs = [list(rng.integers(0, int(num_words * 1.3), size=rng.integers(0, max_len))) for _ in range(n)]
    seqs[0] = []
    seqs[1] = [num_words - 1, num_words, num_words + 5, 0, 0, 1]
    seqs[2] = [3, 3, 3, 3]
    return seqs


@pytest.fixture
def fresh_cache():
    """load()'s per-process cache, empty before and after the test."""
    data._load_cached.cache_clear()
    yield
    data._load_cached.cache_clear()


# ---- multi-hot rows ------------------------------------------------------------------------------


@pytest.mark.parametrize("num_words", [10000, 50, 1])
def test_multi_hot_equals_the_books_vectorize_sequences(num_words):
    """multi_hot(...).to_dense() is the book's matrix, with duplicates and out-of-vocabulary words."""
    rng = np.random.default_rng(num_words)
    seqs = random_sequences(rng, 200, num_words)
    rows = data.multi_hot(seqs, num_words)
    np.testing.assert_array_equal(rows.to_dense(), vectorize_sequences(seqs, num_words))
    assert rows.n_cols == num_words and len(rows) == len(seqs)


def test_multi_hot_rows_are_sorted_unique_csr():
    """Each row lists its word indices once, in increasing order; indptr counts them."""
    rng = np.random.default_rng(1)
    seqs = random_sequences(rng, 300, NUM_WORDS)
    rows = data.multi_hot(seqs)
    assert rows.indptr[0] == 0 and np.all(np.diff(rows.indptr) >= 0)
    for i, seq in enumerate(seqs):
        row = rows.indices[rows.indptr[i] : rows.indptr[i + 1]]
        np.testing.assert_array_equal(row, sorted({j for j in seq if j < NUM_WORDS}))
    assert rows.nnz == int(vectorize_sequences(seqs).sum())


def test_multi_hot_of_numpy_arrays_and_of_nothing():
    """Reviews may come as NumPy arrays (as in the IMDB file); no reviews give an empty matrix."""
    seqs = [np.array([5, 1, 5, 20000], dtype=np.int32), np.array([], dtype=np.int32)]
    np.testing.assert_array_equal(data.multi_hot(seqs).to_dense(), vectorize_sequences(seqs))
    empty = data.multi_hot([])
    assert len(empty) == 0 and empty.nnz == 0 and empty.to_dense().shape == (0, NUM_WORDS)


def test_sparse_rows_take_skip_and_to_dense():
    """take(n) is the first n rows, skip(n) the rest, and they chain like slices of the dense matrix."""
    rng = np.random.default_rng(2)
    seqs = random_sequences(rng, 50, 100)
    rows, dense = data.multi_hot(seqs, 100), vectorize_sequences(seqs, 100)
    for n in (0, 1, 17, 49, 50):
        np.testing.assert_array_equal(rows.take(n).to_dense(), dense[:n])
        np.testing.assert_array_equal(rows.skip(n).to_dense(), dense[n:])
        assert len(rows.take(n)) == n and len(rows.skip(n)) == 50 - n
        assert rows.take(n).nnz + rows.skip(n).nnz == rows.nnz
    np.testing.assert_array_equal(rows.skip(10).take(5).to_dense(), dense[10:15])
    np.testing.assert_array_equal(rows.skip(10).skip(3).to_dense(), dense[13:])
    assert rows.to_dense(np.float64).dtype == np.float64
    assert rows.to_dense().dtype == np.float32


def test_training_rows_takes_the_first_fraction(small_dataset):
    """training_rows(f) is the first ceil(f * n) training rows and labels, at least one."""
    n = len(small_dataset.y_train)
    full = small_dataset.x_train.to_dense()
    for fraction in (1.0, 0.5, 0.3, 0.05, 0.0001):
        x, y = small_dataset.training_rows(fraction)
        expected = max(1, math.ceil(fraction * n))
        assert len(x) == len(y) == expected
        np.testing.assert_array_equal(x.to_dense(), full[:expected])
        np.testing.assert_array_equal(y, small_dataset.y_train[:expected])


# ---- the IMDB file -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imdb_raw(imdb_path):
    """The offline IMDB arrays, read directly with NumPy."""
    with np.load(imdb_path, allow_pickle=True) as f:
        return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}


@pytest.fixture(scope="module")
def imdb(imdb_path):
    """The dataset load('imdb') prepares from the offline file."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.IMDB_PATH_ENV, str(imdb_path))
        return data.load("imdb")


def test_imdb_split_sizes_and_labels(imdb, imdb_raw):
    """Validation is the first 10,000 training reviews, training the rest; the test split is kept apart."""
    y_train, y_test = imdb_raw["y_train"], imdb_raw["y_test"]
    assert len(imdb.x_val) == len(imdb.y_val) == 10000
    assert len(imdb.x_train) == len(imdb.y_train) == len(y_train) - 10000
    assert len(imdb.x_test) == len(imdb.y_test) == len(y_test)
    np.testing.assert_array_equal(imdb.y_val, y_train[:10000])
    np.testing.assert_array_equal(imdb.y_train, y_train[10000:])
    np.testing.assert_array_equal(imdb.y_test, y_test)
    assert imdb.num_features == NUM_WORDS
    assert imdb.name == "imdb"


def test_imdb_rows_are_the_books_vectors_of_the_right_reviews(imdb, imdb_raw):
    """Sampled rows of each split equal vectorize_sequences of the matching review in the file."""
    rng = np.random.default_rng(3)
    x_train, x_test = imdb_raw["x_train"], imdb_raw["x_test"]
    splits = [(imdb.x_val, x_train[:10000]), (imdb.x_train, x_train[10000:]), (imdb.x_test, x_test)]
    for rows, reviews in splits:
        ids = np.sort(rng.choice(len(reviews), 60, replace=False))
        ids[0] = 0
        ids[-1] = len(reviews) - 1
        got = np.concatenate([rows.skip(int(i)).take(1).to_dense() for i in ids])
        np.testing.assert_array_equal(got, vectorize_sequences(reviews[ids]))


def test_imdb_every_row_has_its_reviews_word_count(imdb, imdb_raw):
    """Over every review, the number of ones in a row is the number of distinct in-vocabulary words."""
    def counts(reviews):
        return np.array([len(np.unique(r[r < NUM_WORDS])) for r in reviews])

    x_train, x_test = imdb_raw["x_train"], imdb_raw["x_test"]
    np.testing.assert_array_equal(np.diff(imdb.x_val.indptr), counts(x_train[:10000]))
    np.testing.assert_array_equal(np.diff(imdb.x_train.indptr), counts(x_train[10000:]))
    np.testing.assert_array_equal(np.diff(imdb.x_test.indptr), counts(x_test))


def test_load_returns_the_same_imdb_object_twice(imdb_path, monkeypatch):
    """A second load('imdb') with the same file is the very same object (prepared once per process)."""
    monkeypatch.setenv(data.IMDB_PATH_ENV, str(imdb_path))
    first = data.load("imdb")
    assert data.load("imdb") is first


# ---- the offline dataset -------------------------------------------------------------------------


def test_synthetic_is_deterministic():
    """The same seed gives the same reviews and labels; another seed gives others."""
    a = data.synthetic(seed=5, n_train=3000, n_test=1000)
    b = data.synthetic(seed=5, n_train=3000, n_test=1000)
    for split in ("x_train", "x_val", "x_test"):
        np.testing.assert_array_equal(getattr(a, split).indptr, getattr(b, split).indptr)
        np.testing.assert_array_equal(getattr(a, split).indices, getattr(b, split).indices)
    for split in ("y_train", "y_val", "y_test"):
        np.testing.assert_array_equal(getattr(a, split), getattr(b, split))
    assert a.version == b.version
    c = data.synthetic(seed=6, n_train=3000, n_test=1000)
    assert not np.array_equal(a.y_train, c.y_train)
    assert c.version != a.version


def test_synthetic_is_imdb_shaped_and_balanced(fresh_cache):
    """load('synthetic'): 10,000-word multi-hot rows, the book's 10,000 hold-out, each split about 50/50."""
    ds = data.load("synthetic")
    assert ds.num_features == NUM_WORDS
    assert len(ds.y_val) == 10000 and len(ds.y_train) > 0 and len(ds.y_test) > 0
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert set(np.unique(y)) == {0.0, 1.0}
        assert abs(float(y.mean()) - 0.5) < 0.02
    for rows in (ds.x_train, ds.x_val, ds.x_test):
        assert rows.indices.min() >= 0 and rows.indices.max() < NUM_WORDS
        assert np.all(np.diff(rows.indptr) > 0)


def test_small_synthetic_keeps_half_for_validation():
    """A training split too small for the 10,000 hold-out gives half of it to validation, the first half."""
    ds = data.synthetic(seed=9, n_train=3000, n_test=500)
    assert len(ds.y_val) == len(ds.y_train) == 1500 and len(ds.y_test) == 500


def test_synthetic_needs_no_network(monkeypatch, fresh_cache):
    """With every socket connection and the Keras download failing, the offline dataset still loads."""
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(keras.datasets.imdb, "load_data", no_network)
    assert len(data.synthetic(seed=1, n_train=2000, n_test=200).y_train) == 1000
    assert data.load("synthetic").name == "synthetic"


def test_load_prepares_a_dataset_once_even_from_many_threads(monkeypatch, fresh_cache):
    """Concurrent first loads build the dataset once and all get the same object."""
    calls = []
    real = data.synthetic

    def counting_synthetic(*args, **kwargs):
        calls.append(1)
        return real(seed=2, n_train=2000, n_test=200)

    monkeypatch.setattr(data, "synthetic", counting_synthetic)
    got, start = [], threading.Barrier(4)

    def worker():
        start.wait()
        got.append(data.load("synthetic"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 4 and all(d is got[0] for d in got)
    assert data.load("synthetic") is got[0]
    assert len(calls) == 1


# ---- failures: one line that names the offline dataset ------------------------------------------


def assert_one_line_naming_offline(error: data.DatasetUnavailable):
    message = str(error)
    assert "\n" not in message and message.strip() == message and message
    assert "synthetic" in message


def test_unknown_dataset_name(fresh_cache):
    """An unknown dataset name is DatasetUnavailable, one line naming the choices."""
    with pytest.raises(data.DatasetUnavailable) as caught:
        data.load("mnist")
    assert_one_line_naming_offline(caught.value)
    assert "mnist" in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
        Exception("URL fetch failure on https://storage.googleapis.com/imdb.npz: None -- no network"),
        ConnectionResetError("reset\nby peer\nthree lines"),
        ValueError(""),
    ],
    ids=["urlerror", "keras-fetch-failure", "multiline", "empty"],
)
def test_download_failure_is_one_line_naming_the_offline_dataset(error, monkeypatch, fresh_cache):
    """Without the offline file, a failing keras download becomes DatasetUnavailable in one line."""
    monkeypatch.delenv(data.IMDB_PATH_ENV, raising=False)

    def load_data(*args, **kwargs):
        raise error

    monkeypatch.setattr(keras.datasets.imdb, "load_data", load_data)
    with pytest.raises(data.DatasetUnavailable) as caught:
        data.load("imdb")
    assert_one_line_naming_offline(caught.value)


OFFLINE_SCRIPT = """
import json, time
import keras  # imported first: the clock below times the download attempt, not the import
from regviz import data
t = time.perf_counter()
try:
    data.load("imdb")
    print("RESULT " + json.dumps({"error": None}))
except Exception as e:
    print("RESULT " + json.dumps({"error": type(e).__name__, "message": str(e),
                                  "seconds": time.perf_counter() - t}))
"""


def test_real_download_without_network_fails_fast_in_one_line(tmp_path):
    """A real load('imdb') with no cached file and no network fails quickly with the one-line error."""
    home = tmp_path / "home"
    home.mkdir()
    unset = ("no_proxy", data.IMDB_PATH_ENV.lower())
    env = {k: v for k, v in subprocess_env().items() if k.lower() not in unset}
    # no network: every http(s) request goes to a closed local port, so this never downloads
    dead = "http://127.0.0.1:9"
    env |= {"HOME": str(home), "KERAS_HOME": str(home / ".keras"), "XDG_CACHE_HOME": str(home / ".cache"),
            "http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead}
    out = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT], capture_output=True, text=True, timeout=120, env=env,
        cwd=REPO,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, out.stdout + out.stderr
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["error"] == "DatasetUnavailable", result
    assert "\n" not in result["message"] and "synthetic" in result["message"]
    assert result["seconds"] < 20
    assert not any((home / ".keras").rglob("imdb*.npz"))


def write_npz_without_x_train(path: Path):
    np.savez(path, y_train=np.zeros(3), x_test=np.zeros(3), y_test=np.zeros(3))


def write_truncated_zip(path: Path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", b"\x93NUMPY" + bytes(200))
    path.write_bytes(path.read_bytes()[:120])


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
        lambda p: p.write_bytes(b""),
        write_truncated_zip,
        write_npz_without_x_train,
        lambda p: None,  # no file at all
    ],
    ids=["random-bytes", "empty", "truncated-zip", "missing-array", "missing-file"],
)
def test_unreadable_imdb_file_is_one_line_naming_the_offline_dataset(make, tmp_path, monkeypatch,
                                                                     fresh_cache):
    """A corrupt or missing REGVIZ_IMDB_PATH file: DatasetUnavailable, one line naming the offline dataset."""
    path = tmp_path / "imdb.npz"
    make(path)
    monkeypatch.setenv(data.IMDB_PATH_ENV, str(path))
    with pytest.raises(data.DatasetUnavailable) as caught:
        data.load("imdb")
    assert_one_line_naming_offline(caught.value)
    assert data.IMDB_PATH_ENV in str(caught.value)


REUTERS_FILE = REPO.parent / "shared" / "data" / "reuters_r21578.npz"


@pytest.mark.skipif(not REUTERS_FILE.is_file(), reason=f"no Reuters file at {REUTERS_FILE}")
def test_reuters_from_a_local_file_is_the_books_split(monkeypatch, fresh_cache):
    """REGVIZ_REUTERS_PATH: the first 1,000 training newswires validate, the rest train, the test split
    apart; 46 topics; rows are the book's vectorize_sequences of the file's word indices."""
    monkeypatch.setenv(data.REUTERS_PATH_ENV, str(REUTERS_FILE))
    ds = data.load("reuters")
    with np.load(REUTERS_FILE, allow_pickle=True) as f:
        x_train, y_train, x_test = f["x_train"], f["y_train"], f["x_test"]
    assert (len(ds.y_val), len(ds.y_train), len(ds.y_test)) == (1000, len(y_train) - 1000, len(x_test))
    assert (ds.problem, ds.classes, ds.num_features) == ("multiclass", 46, NUM_WORDS)
    np.testing.assert_array_equal(ds.y_val, y_train[:1000])
    np.testing.assert_array_equal(ds.x_train.take(50).to_dense(), vectorize_sequences(x_train[1000:1050]))
    info = data.describe(ds)
    assert (info.problem, info.classes) == ("multiclass", 46) and info.version.startswith("npz-")


def test_the_offline_topics_are_reuters_shaped_and_fixed_by_their_seed():
    """46 topics, a few common and most rare, 1,000 held out, the same newswires every time."""
    a, b = data.topics(n_train=2000, n_test=300), data.topics(n_train=2000, n_test=300)
    np.testing.assert_array_equal(a.x_train.indices, b.x_train.indices)
    counts = np.bincount(a.y_train.astype(int), minlength=46)
    assert len(a.y_val) == 1000 and counts.max() > 10 * np.median(counts)


BOSTON_FILE = REPO.parent / "shared" / "data" / "boston_housing.npz"


@pytest.mark.skipif(not BOSTON_FILE.is_file(), reason=f"no Boston Housing file at {BOSTON_FILE}")
def test_boston_from_a_local_file_holds_out_a_quarter_of_its_training_rows(monkeypatch, fresh_cache):
    """REGVIZ_BOSTON_PATH: 13 features as read (standardising is each run's own step), the first 101
    training tracts validate, the test split apart; a regression problem."""
    monkeypatch.setenv(data.BOSTON_PATH_ENV, str(BOSTON_FILE))
    ds = data.load("boston")
    with np.load(BOSTON_FILE) as f:
        x_train, y_train = f["x_train"], f["y_train"]
    assert (len(ds.y_val), len(ds.y_train), len(ds.y_test)) == (101, 303, 102)
    assert (ds.problem, ds.classes, ds.num_features) == ("regression", 1, 13)
    np.testing.assert_allclose(ds.x_val.values, x_train[:101], rtol=1e-6)
    np.testing.assert_allclose(ds.y_train, y_train[101:], rtol=1e-6)


@pytest.mark.parametrize(
    "name, loader, env, word, offline",
    [
        ("reuters", "reuters", data.REUTERS_PATH_ENV, "Reuters", "topics"),
        ("boston", "boston_housing", data.BOSTON_PATH_ENV, "Boston", "houses"),
    ],
)
def test_a_failed_download_is_one_line_naming_the_offline_dataset(
    monkeypatch, fresh_cache, name, loader, env, word, offline
):
    """Reuters and Boston without a file or a network: one line naming the offline twin of their type."""

    def no_network(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(getattr(keras.datasets, loader), "load_data", no_network)
    with pytest.raises(data.DatasetUnavailable) as e:
        data.load(name)
    assert word in str(e.value) and offline in str(e.value) and "\n" not in str(e.value)
    assert data.offline_for(name) == offline and data.offline_for("imdb") == "synthetic"


@pytest.mark.parametrize(
    ("name", "env", "what"),
    [("imdb", data.IMDB_PATH_ENV, "IMDB"), ("reuters", data.REUTERS_PATH_ENV, "Reuters"),
     ("boston", data.BOSTON_PATH_ENV, "Boston Housing")],
)  # fmt: skip
@pytest.mark.parametrize(
    ("failure", "why"),
    [
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "(no network)"),
        (urllib.error.HTTPError("https://x", 503, "Service Unavailable", {}, None),
         "(the server answered 503 Service Unavailable)"),
    ],
    ids=["no-network", "http-503"],
)  # fmt: skip
def test_every_books_dataset_that_cannot_be_downloaded_is_one_plain_line(
    name, env, what, failure, why, monkeypatch, fresh_cache, tmp_path
):
    """Keras's own download (its get_file, its cache in an empty folder) failing in urllib, as with no
    network here: one plain line for each of the book's datasets, naming the dataset, why in words and
    the setting for a local copy; not Keras's "URL fetch failure on https://..." nor an errno."""
    from keras.src.utils import file_utils

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "urlretrieve", fail)
    with pytest.raises(data.DatasetUnavailable) as caught:
        data.load(name)
    message = str(caught.value)
    assert message.startswith(f"{what} could not be downloaded {why} and no local copy is set ({env})")
    assert "\n" not in message and "URL fetch" not in message and "http" not in message
    assert "Errno" not in message and "-2" not in message and data.offline_for(name) in message
