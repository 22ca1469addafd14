"""The Keras listing of a run on an uploaded file: it reads the CSV, encodes the target and the features
as the app does (sklearn's ColumnTransformer of Prepared.pipeline, fitted on the training rows only),
splits the rows as the app does, and trains with plain Keras as it stands next to the file."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, subprocess_env
from test_cli_csv import ODD, prepared_of, write_binary, write_flags, write_multiclass, write_regression

from regviz.data.rows import DenseRows
from regviz.listing import keras_code
from regviz.settings import Settings

FILES = {
    "binary": (write_binary, "churned"),
    "multiclass": (write_multiclass, "grade"),
    "regression": (write_regression, "price"),
    "flags": (write_flags, "passed"),
}


def listing_of(tmp_path, kind: str, **fields):
    """A file of this problem type in tmp_path, the page's preparation of it, and its listing."""
    write, target = FILES[kind]
    prepared = prepared_of(write(tmp_path / f"{kind}.csv"), target)
    settings = Settings.for_dataset(prepared.name, **fields)
    return prepared, keras_code(settings, upload=prepared)


def run_as_main(code: str) -> dict:
    """The listing's namespace after running it as a script (its experiment is under __main__)."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(code, "<listing>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("kind", FILES)
def test_the_listing_runs_and_encodes_the_file_as_the_app_does(kind, tmp_path, monkeypatch):
    """Run next to the file, the listing trains with plain Keras and sklearn (two epochs, validated);
    its target is the app's (class indices in the app's order, binary 0/1), its validation and
    training rows are the app's, and its ColumnTransformer, fitted on the same rows, gives the app's
    features (Prepared.transform); True/False cells, padded and oddly cased ones too."""
    prepared, code = listing_of(tmp_path, kind, epochs=2, l2=0.001, dropout=0.2)
    assert prepared.kind == {"flags": "binary"}.get(kind, kind)
    monkeypatch.chdir(tmp_path)
    namespace = run_as_main(code)
    history = namespace["history"]
    assert len(history["val_loss"]) == 2 and np.isfinite(history["val_loss"]).all()
    y = namespace["y"].ravel()
    np.testing.assert_array_equal(y, prepared.y)
    app = prepared.dataset()
    np.testing.assert_array_equal(y[namespace["val_rows"]], app.y_val)
    np.testing.assert_array_equal(y[namespace["train_rows"]], app.y_train)
    ours = namespace["features"].fit(namespace["x"]).transform(namespace["x"])
    (transformed,) = prepared.transform(DenseRows(prepared.x))
    np.testing.assert_allclose(ours, transformed.values, rtol=1e-5, atol=1e-5)
    assert namespace["model"].input_shape == (None, prepared.features)


def test_names_and_labels_stay_literal(tmp_path):
    """Quotes, commas and markup in column names and labels are repr()'d: the listing compiles and names
    them exactly; the dropped ID column is only a comment, and the split is the app's 60/20/20 of its
    once-shuffled rows."""
    prepared, code = listing_of(tmp_path, "binary")
    compile(code, "<listing>", "exec")
    assert repr(ODD) in code and "['no', 'yes']" in code
    assert "# dropped, as by the app: 'customer id', an identifier" in code
    assert "order = np.random.default_rng(0).permutation(len(y))" in code
    assert "round(0.2 * len(y))" in code and "round(0.25 * (len(y) - num_test))" in code
    assert "shuffle" in code and "x_train = features.fit_transform(x.iloc[train_rows])" in code


def test_a_k_fold_run_is_listed_as_the_folds_loop(tmp_path):
    """For K-fold settings the listing trains each fold on the app's rows (the whole training split
    in the app's order) and averages them; a regression target is divided by each run's spread."""
    _, code = listing_of(tmp_path, "regression", validation="kfold", folds=4)
    compile(code, "<listing>", "exec")
    assert "4-fold K-fold" in code and "for fold in range(4):" in code
    assert "rows = order[num_test:]" in code and "scale = y_train.std() or 1.0" in code


def test_a_wide_file_wraps_its_column_lists(tmp_path):
    """Forty long column names wrap onto lines of at most 100 characters, and the code compiles."""
    rng = np.random.default_rng(4)
    names = [f"measurement number {i} of the sensor" for i in range(40)]
    frame = pd.DataFrame(rng.normal(0, 1, (30, 40)).round(3), columns=names)
    frame["label"] = rng.choice(["a", "b"], 30)
    frame.to_csv(tmp_path / "wide.csv", index=False)
    prepared = prepared_of(tmp_path / "wide.csv", "label")
    code = keras_code(Settings.for_dataset(prepared.name), upload=prepared)
    compile(code, "<listing>", "exec")
    listed = [line for line in code.splitlines() if "measurement number" in line]
    assert len(listed) > 5 and max(map(len, listed)) <= 100
    assert all(repr(name) in code for name in names)


def test_the_listing_of_another_files_settings_is_refused(tmp_path):
    """An upload that is not the settings' dataset raises ValueError rather than list the wrong file."""
    prepared, _ = listing_of(tmp_path, "binary")
    with pytest.raises(ValueError, match="not the settings' dataset"):
        keras_code(Settings(), upload=prepared)


def test_building_the_listing_needs_no_keras_nor_sklearn(tmp_path):
    """The page server reads, prepares and lists an upload without importing Keras, TensorFlow or sklearn."""
    path = write_binary(tmp_path / "churn.csv")
    script = (
        "import sys; from regviz.data import csvfile; from regviz.listing import keras_code; "
        "from regviz.settings import Settings; "
        f"p = csvfile.prepare(csvfile.read_table(open({str(path)!r}, 'rb').read(), 'churn.csv'), 'churned'); "
        "keras_code(Settings.for_dataset(p.name), upload=p); "
        "print(sorted(m for m in ('keras', 'tensorflow', 'sklearn') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_blank_header_the_app_renamed_is_renamed_in_the_listing_too(tmp_path, monkeypatch):
    """A feature with no header (regviz calls it "column 2"; pandas "Unnamed: 1"): the listing writes
    the app's names out, so it selects the same columns and runs."""
    rng = np.random.default_rng(8)
    rows = ["size,,bought"] + [f"{a:.3f},{b:.3f},{int(a + b > 0)}" for a, b in rng.normal(size=(60, 2))]
    (tmp_path / "blank.csv").write_text("\n".join(rows))
    prepared = prepared_of(tmp_path / "blank.csv", "bought")
    assert prepared.numeric == ("size", "column 2")
    code = keras_code(Settings.for_dataset(prepared.name, epochs=1), upload=prepared)
    assert "frame.columns = ['size', 'column 2', 'bought']" in code
    monkeypatch.chdir(tmp_path)
    namespace = run_as_main(code)
    assert namespace["model"].input_shape == (None, 2)
    assert list(namespace["x"].columns) == ["size", "column 2"]
