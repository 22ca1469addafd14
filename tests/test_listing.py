"""The Keras listing is the whole experiment: run as it is in a fresh interpreter, on the shared data
and the same seed, its curves are those of regviz's own run of the same settings, to the tolerance
of the plain-Keras tests (test_train.py, test_problems.py: 1e-3 relative on losses, 2e-3 on
accuracies); it compiles for every dataset and protocol, reads the file the app read, and is the
code the page shows."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from test_app import app, keras_code_shown, open_app, shown_settings, store_path  # noqa: F401
from test_cli_csv import prepared_of, write_binary, write_regression

from regviz import data, listing, problems
from regviz.data import csvfile
from regviz.listing import keras_code
from regviz.noise import noisy_labels
from regviz.records import mean_records
from regviz.settings import DATASETS, Settings
from regviz.training.loop import train

SHARED = REPO.parent / "shared" / "data"
FILES = {  # the shared files the app reads, by the variable that points it at them
    "imdb": (data.IMDB_PATH_ENV, "imdb_acl.npz"),
    "reuters": (data.REUTERS_PATH_ENV, "reuters_r21578.npz"),
    "boston": (data.BOSTON_PATH_ENV, "boston_housing.npz"),
}
# runs the listing as `python experiment.py` runs it, then keeps its history and what it imported
RUNNER = (
    "import json, runpy, sys; ns = runpy.run_path(sys.argv[1], run_name='__main__'); "
    "ours = sorted(m for m in sys.modules if m.startswith('regviz')); "
    "json.dump({'history': ns['history'], 'regviz': ours}, open(sys.argv[2], 'w'))"
)
RTOL, ATOL_ACCURACY = 1e-3, 2e-3  # the plain-Keras comparisons' tolerances


def run_listing(code: str, folder: Path, **env: str) -> tuple[dict, str]:
    """The listing run in a fresh interpreter in `folder`, with no regviz on its path: its history
    and what it printed."""
    script, out = folder / "experiment.py", folder / "history.json"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": "", "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(script), str(out)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["regviz"] == []  # the listing stands on its own: plain Keras, NumPy, pandas, sklearn
    return result["history"], done.stdout


def regviz_records(settings: Settings):
    """regviz's own run of these settings: its records, or for K-fold the folds' mean as the page shows."""
    if settings.validation == "holdout":
        return list(train(settings))
    return mean_records([list(train(fold)) for fold in settings.fold_runs()])


def printed_history(stdout: str) -> dict[str, list[float]]:
    """The table the listing prints at its end: a header of names, then a line per epoch."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("epoch "))
    names = lines[start].split()[1:]
    rows = [line.split() for line in lines[start + 1 :] if line.strip()[:1].isdigit()]
    return {name: [float(row[i + 1]) for row in rows] for i, name in enumerate(names)}


def assert_same_curves(settings: Settings, ours, history: dict, stdout: str) -> None:
    """regviz's records and the listing's history agree epoch by epoch, within the plain-Keras tolerances."""
    penalised = bool(settings.l1 or settings.l2)
    data_loss = history["val_data_loss" if penalised else "val_loss"]  # the curve the app plots
    assert len(data_loss) == settings.epochs and data_loss[-1] < data_loss[0]  # it learned something
    np.testing.assert_allclose([r.val_data_loss for r in ours], data_loss, rtol=RTOL)
    np.testing.assert_allclose([r.val_loss for r in ours], history["val_loss"], rtol=RTOL)
    np.testing.assert_allclose([r.loss for r in ours], history["loss"], rtol=RTOL)
    if problems.of_dataset(settings.dataset)[0].kind == problems.REGRESSION:
        np.testing.assert_allclose([r.val_mae for r in ours], history["val_mae"], rtol=RTOL)
    else:
        np.testing.assert_allclose(
            [r.val_accuracy for r in ours], history["val_accuracy"], atol=ATOL_ACCURACY
        )
    printed = printed_history(stdout)
    assert set(printed) == set(history)
    for name, values in history.items():
        np.testing.assert_allclose(printed[name], values, rtol=1e-5)


BOOK_CASES = {
    "imdb-binary-holdout": Settings(width=4, epochs=3, train_fraction=0.1, l2=1e-3, dropout=0.25),
    "reuters-multiclass-holdout": Settings.for_dataset("reuters", width=16, last_width=8, epochs=3, l1=1e-4),
    "boston-regression-kfold": Settings.for_dataset("boston", width=16, epochs=5),
    # label noise: the listing flips the app's labels on each fold's training rows, never its validation ones
    "imdb-binary-holdout-label-noise": Settings(width=4, epochs=3, train_fraction=0.1, label_noise=0.3),
    "boston-regression-kfold-label-noise": Settings.for_dataset(
        "boston", width=16, epochs=5, label_noise=0.2
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BOOK_CASES))
def test_the_listing_of_a_book_dataset_reproduces_the_apps_curves(case, tmp_path, monkeypatch):
    """IMDB (binary, hold-out, a tenth of the training reviews, L2 and dropout), Reuters (multiclass,
    a 16-8 bottleneck, L1) and Boston (regression, 4-fold K-fold): the listing, run on the shared file
    the app read, gives the app's validation and training curves, and prints them."""
    settings = BOOK_CASES[case]
    env, name = FILES[settings.dataset]
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"no shared {name} at {SHARED}")
    monkeypatch.setenv(env, str(path))
    code = keras_code(settings, data.load(settings.dataset).num_features)
    assert repr(str(path)) in code and "load_data(" not in code
    history, stdout = run_listing(code, tmp_path, **{env: str(path)})
    assert_same_curves(settings, regviz_records(settings), history, stdout)


UPLOAD_CASES = {  # written by test_cli_csv's writers: missing cells, text among numbers, categories
    "binary-holdout": (write_binary, "churned", {"train_fraction": 0.5, "dropout": 0.2}),
    "regression-iterated-kfold": (
        write_regression, "price", {"validation": "iterated", "folds": 3, "repeats": 2, "l2": 1e-3},
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", list(UPLOAD_CASES))
def test_the_listing_of_an_uploaded_file_reproduces_the_apps_curves(case, tmp_path):
    """An uploaded CSV, binary on hold-out (half its training rows, dropout) and regression on
    iterated K-fold (3 folds, twice, L2; the target divided by each run's spread, the MAE back in its
    unit): the listing, run next to the file, gives the app's curves."""
    write, target, fields = UPLOAD_CASES[case]
    prepared = prepared_of(write(tmp_path / "upload.csv", n=400), target)
    data.add_upload(prepared, holder="test_listing")
    try:
        settings = Settings.for_dataset(prepared.name, width=8, epochs=4, **fields)
        history, stdout = run_listing(keras_code(settings, upload=prepared), tmp_path)
        assert_same_curves(settings, regviz_records(settings), history, stdout)
    finally:
        data.release_uploads("test_listing")


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("validation", ["holdout", "kfold", "iterated"])
def test_the_listing_compiles_for_every_dataset_and_protocol(dataset, validation, monkeypatch):
    """Every dataset, on every protocol, with penalties, dropout, less data, a bottleneck and another
    optimizer: the listing compiles, and loads the book's data from the app's file when it read one,
    else from keras.datasets."""
    settings = Settings.for_dataset(
        dataset, validation=validation, l1=1e-4, l2=1e-3, dropout=0.5, train_fraction=0.3, depth=3,
        last_width=4, optimizer="adam", folds=5,
    )  # fmt: skip
    for path in ("", "/data/the app's file.npz"):
        if dataset in FILES:
            monkeypatch.setenv(FILES[dataset][0], path)
        code = keras_code(settings, 13 if problems.is_tabular(dataset) else data.NUM_WORDS)
        compile(code, "<listing>", "exec")
        if dataset in FILES:
            assert (repr(path) in code) == bool(path) and ("load_data(" in code) == (not path)
        assert "math.ceil(0.3 * len(train_rows))" in code and f"epochs={settings.epochs}," in code
        assert ("for fold in range(5):" in code) == (validation != "holdout")
        assert ("for repeat in range(2):" in code) == (validation == "iterated")
        width = 13 if problems.is_tabular(dataset) else data.NUM_WORDS
        assert f"keras.Input(shape=({width},))" in code
        assert (f"dimension={width}" in code) == (not problems.is_tabular(dataset))  # multi-hot as wide


@pytest.mark.parametrize("kind", ["binary", "regression"])
@pytest.mark.parametrize("validation", ["holdout", "kfold", "iterated"])
def test_the_listing_of_an_upload_compiles_for_every_protocol(kind, validation, tmp_path):
    """An uploaded file's listing compiles on every protocol."""
    write, target = (write_binary, "churned") if kind == "binary" else (write_regression, "price")
    prepared = prepared_of(write(tmp_path / "f.csv"), target)
    code = keras_code(Settings.for_dataset(prepared.name, validation=validation, l1=1e-3), upload=prepared)
    compile(code, "<listing>", "exec")


def listed_noise(code: str):
    """The listing's own noisy(labels) function, run with NumPy and its SEED alone."""
    lines = code.splitlines()
    start = lines.index("def noisy(labels):")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("    return "))
    seed = next(line for line in lines if line.startswith("SEED = "))
    namespace = {"np": np}
    exec("\n".join([seed, *lines[start : end + 1]]), namespace)
    return namespace["noisy"]


@pytest.mark.parametrize("dataset", ["imdb", "reuters", "boston"])
def test_the_listings_label_noise_flips_the_apps_labels(dataset):
    """The listing's noisy() gives the labels regviz.noise gives for the same seed and fraction: a binary
    column, Reuters' 46 topics, Boston's prices; without label noise the listing has no noisy()."""
    settings = Settings.for_dataset(dataset, label_noise=0.2, seed=11)
    problem, classes = problems.of_dataset(dataset)
    rng = np.random.default_rng(0)
    if problem.kind == problems.REGRESSION:
        y = rng.normal(20, 5, 1234).astype("float32")
    else:
        y = rng.integers(0, classes, 1234).astype("float32")
    ours = noisy_labels(y, 0.2, 11, problem.kind, classes)
    column = problem.kind == problems.BINARY  # the listing's binary labels are a column
    listed = listed_noise(keras_code(settings))(y.reshape(-1, 1) if column else y)
    np.testing.assert_array_equal(listed.reshape(-1), ours)
    assert np.sum(listed.reshape(-1) != y) == round(0.2 * len(y))
    assert "def noisy(" not in keras_code(settings.replace(label_noise=0.0))


@dataclasses.dataclass(frozen=True)
class ReadWithOptions(csvfile.Prepared):
    """An upload whose description carries pandas' read_csv keyword arguments (read_csv_kwargs)."""

    options: tuple = ()

    @property
    def read_csv_kwargs(self) -> dict:
        """The keyword arguments, as a dict."""
        return dict(self.options)


def test_an_uploads_read_csv_kwargs_are_the_listings_read(tmp_path, monkeypatch):
    """When the upload's description has read_csv_kwargs, the listing reads the file with those
    (here: past a first line that is not the header), and gets the app's rows."""
    prepared = prepared_of(write_binary(tmp_path / "clean.csv"), "churned")
    lines = (tmp_path / "clean.csv").read_text()
    (tmp_path / "odd.csv").write_text("60 rows, 4 features\n" + lines)
    options = {"sep": ",", "dtype": str, "keep_default_na": False, "skiprows": 1}
    fields = {f.name: getattr(prepared, f.name) for f in dataclasses.fields(prepared)}
    upload = ReadWithOptions(**{**fields, "filename": "odd.csv"}, options=tuple(options.items()))
    code = keras_code(Settings.for_dataset(upload.name, epochs=1), upload=upload)
    # the file's options first, then what reads every cell as text that they did not say
    assert listing.read_csv_kwargs(upload) == {**options, "skipinitialspace": True}
    assert "pd.read_csv('odd.csv'," in code and "skiprows=1" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(code, "<listing>", "exec"), namespace)
    np.testing.assert_array_equal(namespace["y"].ravel(), prepared.y)


def test_without_the_main_guard_the_listing_only_builds_the_model(monkeypatch):
    """exec'd as a module (not __main__), the listing defines and builds its model and loads no data:
    a notebook or a test can take the network alone."""
    monkeypatch.delenv(data.IMDB_PATH_ENV, raising=False)
    namespace: dict = {}
    exec(compile(keras_code(Settings(width=4)), "<listing>", "exec"), namespace)
    assert namespace["model"].compiled and "history" not in namespace and "train_data" not in namespace


def test_the_page_shows_this_listing(app, monkeypatch):  # noqa: F811
    """The "Show Keras code" expander holds exactly keras_code of the page's settings: the script
    these tests run."""
    monkeypatch.setenv(data.IMDB_PATH_ENV, "/data/reviews.npz")  # not this dataset's: no effect
    at = open_app({"dataset": "synthetic", "width": "4", "epochs": "2", "l2": "0.001"})
    shown = keras_code_shown(at)
    assert shown == keras_code(shown_settings(at), data.NUM_WORDS).rstrip("\n")  # st.code drops the last
    assert 'if __name__ == "__main__":' in shown and "offline.synthetic()" in shown


class FakePyplot(types.ModuleType):
    """matplotlib.pyplot as far as the listing uses it: every call recorded (matplotlib is not a
    dependency of regviz, so the real one may be absent)."""

    def __init__(self):
        super().__init__("matplotlib.pyplot")
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


@pytest.mark.parametrize("fields", [{}, {"l2": 1e-3}, {"dataset": "boston"}], ids=["plain", "l2", "mae"])
def test_the_listing_plots_the_loss_and_the_main_metric_with_matplotlib(fields, monkeypatch, capsys):
    """With matplotlib there, plot_history draws the loss (the data loss when a penalty is on: the
    app's curve) and the main metric, training as dots and validation as a line; without it, one line."""
    settings = Settings.for_dataset(**fields)
    namespace: dict = {}
    exec(compile(keras_code(settings, 13), "<listing>", "exec"), namespace)
    loss = "data_loss" if settings.l2 else "loss"
    metric = "mae" if settings.dataset == "boston" else "accuracy"
    history = {name: [0.5, 0.4] for name in (loss, "loss", metric, f"val_{loss}", f"val_{metric}")}
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # an import of it fails: not installed
    namespace["plot_history"](history)
    assert capsys.readouterr().out == "matplotlib is not installed: no plot\n"
    plt = FakePyplot()
    monkeypatch.setitem(sys.modules, "matplotlib", types.ModuleType("matplotlib"))
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", plt)
    sys.modules["matplotlib"].pyplot = plt
    namespace["plot_history"](history)
    plots = [(args[1:], kwargs["label"]) for name, args, kwargs in plt.calls if name == "plot"]
    assert plots == [
        (([0.5, 0.4], "bo"), f"Training {loss}"), (([0.5, 0.4], "b"), f"Validation {loss}"),
        (([0.5, 0.4], "bo"), f"Training {metric}"), (([0.5, 0.4], "b"), f"Validation {metric}"),
    ]  # fmt: skip
    assert [name for name, *_ in plt.calls][-1] == "show"
