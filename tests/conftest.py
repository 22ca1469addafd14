"""Shared fixtures: a temporary run store for every test, a small made-up dataset, the offline IMDB file."""

from __future__ import annotations

import os

# before anything imports tensorflow: keep its start-up chatter out of the test output
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from regviz import data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DEFAULT_IMDB = REPO.parent / "shared" / "data" / "imdb_acl.npz"


def imdb_file() -> Path:
    """Where the offline IMDB file should be: $REGVIZ_IMDB_PATH, else ../shared/data/imdb_acl.npz."""
    return Path(os.environ.get(data.IMDB_PATH_ENV) or DEFAULT_IMDB)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a fresh interpreter that must import regviz from this checkout."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_quick_bench(script: Path, out: Path, timeout: float) -> subprocess.CompletedProcess:
    """`python <script> --quick --out <out>` from the checkout, on the offline IMDB file when present;
    fails the test with the script's output unless it exits 0."""
    env = subprocess_env(REGVIZ_IMDB_PATH=str(imdb_file()) if imdb_file().is_file() else "")
    try:
        proc = subprocess.run(
            [sys.executable, str(script), "--quick", "--out", str(out)],
            capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:  # a hang: say how far it got
        said = _text(e.stdout)[-2000:]
        pytest.fail(f"{script.name} --quick did not finish in {timeout:.0f} s; its output:\n{said}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def make_small_dataset(seed=7, n_train=2000, n_val=1000, n_test=500) -> data.Dataset:
    """Made-up reviews with a clear signal, multi-hot encoded by regviz.data: trains in about a second."""
    vocab, length, cues = 2000, 60, 4
    rng = np.random.default_rng(seed)
    n = n_val + n_train + n_test
    # zipf-like filler words, then a few cue words that give the label away
    cdf = np.cumsum(1.0 / (np.arange(vocab) + 5.0))
    docs = np.searchsorted(cdf, rng.random((n, length)) * cdf[-1])
    cue_words = rng.choice(np.arange(10, vocab), 120, replace=False).reshape(2, 60)  # negative, positive
    y = rng.random(n) < 0.5
    docs[:, :cues] = cue_words[y.astype(int)[:, None], rng.integers(0, 60, (n, cues))]
    x, y = data.multi_hot(list(docs), vocab), y.astype(np.float32)
    return data.Dataset(
        name="small",
        version=f"small-{seed}",
        x_train=x.skip(n_val).take(n_train),
        y_train=y[n_val : n_val + n_train],
        x_val=x.take(n_val),
        y_val=y[:n_val],
        x_test=x.skip(n_val + n_train),
        y_test=y[n_val + n_train :],
        description="made-up reviews for tests",
    )


@pytest.fixture(scope="session", autouse=True)
def session_store(tmp_path_factory):
    """Session-wide fixtures that train never touch the user's store either."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGVIZ_STORE", str(tmp_path_factory.mktemp("store") / "runs.sqlite"))
        yield


@pytest.fixture(autouse=True)
def temporary_store(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty run store."""
    path = tmp_path / "store" / "runs.sqlite"
    monkeypatch.setenv("REGVIZ_STORE", str(path))
    return path


@pytest.fixture(scope="session")
def imdb_path() -> Path:
    """The offline IMDB file; tests that need it are skipped when it is absent."""
    path = imdb_file()
    if not path.is_file():
        pytest.skip(f"offline IMDB file not found at {path} (set {data.IMDB_PATH_ENV})")
    return path


@pytest.fixture(scope="session")
def small_dataset() -> data.Dataset:
    """2000 training, 1000 validation and 500 test reviews over a 2000-word vocabulary."""
    return make_small_dataset()


def regviz_batches(x, y, settings):
    """regviz's batches as a tf.data pipeline for plain Keras `fit`: epoch by epoch, the rows in the
    order `batch_orders` gives regviz (same seed), so both train on the same batches; and the steps
    per epoch."""
    import itertools

    import tensorflow as tf

    from regviz.training.loop import batch_orders

    n = int(x.shape[0])
    orders = np.stack(list(itertools.islice(batch_orders(settings.seed, n), settings.epochs)))
    batches = (
        tf.data.Dataset.from_tensor_slices(orders)
        .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(settings.batch_size))
        .map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
    )
    return batches, -(-n // settings.batch_size)


class Collected:
    """A job's records and end, as an executor hands them over, with a signal for waiting (the tests of
    every executor: local workers, Ray)."""

    def __init__(self, settings, owner: str = "tab", deadline: float = 180.0):
        import threading
        import time

        from regviz.runs.seam import Job

        self._clock, self.deadline = time.monotonic, deadline
        self.records, self.ended, self.error, self.ended_at = [], threading.Event(), None, None
        self.changed = threading.Condition()
        self.job = Job(settings, self._record, self._end, owner=owner)

    def _record(self, record):
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def _end(self, error):
        self.error, self.ended_at = error, self._clock()
        self.ended.set()
        with self.changed:
            self.changed.notify_all()

    def wait_records(self, n: int) -> None:
        """Wait until n records arrived (or the job ended); fail at the deadline."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.records) >= n or self.ended.is_set(), self.deadline)
        assert len(self.records) >= n, f"ended after {len(self.records)} records: {self.error}"

    def wait_end(self) -> None:
        """Wait for the job's end; fail at the deadline."""
        assert self.ended.wait(self.deadline), "the job never ended"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report kept on the test (item.rep_call...): fixtures that tear down after a failure
    save what the browser showed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
