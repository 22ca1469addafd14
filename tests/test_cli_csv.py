"""The command line on your own data: `train --csv FILE --target COLUMN` reads, types and trains as the
page does, prints the page's notices on stderr, and stores nothing unless --keep-results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn

from regviz import cli
from regviz.data import csvfile
from regviz.store import open_store

ODD = 'it\'s "odd", <b>'  # a column name with quotes, a comma and markup


def write_binary(path, n=60):
    """Churn-like rows: an ID column (dropped), a numeric and an oddly named one with missing cells, a
    categorical one with NA cells, and a yes/no target that follows the age."""
    rng = np.random.default_rng(1)
    age = rng.normal(40, 10, n).round(1)
    frame = pd.DataFrame({
        "customer id": np.arange(1, n + 1), "age": age, ODD: rng.normal(0, 1, n).round(3),
        "plan": rng.choice(["basic", "pro", "<i>gold</i>"], n),
        "churned": np.where(age + rng.normal(0, 3, n) > 40, "yes", "no"),
    })  # fmt: skip
    frame.loc[[2, 9, 30], "age"] = np.nan
    frame.loc[[4], ODD] = np.nan
    frame.loc[[5, 11], "plan"] = "NA"
    frame.to_csv(path, index=False)
    return path


def write_regression(path, n=60):
    """House-like rows: an ID, rooms with missing cells, an area with one text cell, a kind with empty
    cells, and a price with many values."""
    rng = np.random.default_rng(2)
    area = rng.normal(90, 25, n).round(1)
    price = (3000 * area + rng.normal(0, 2e4, n)).round(0)
    frame = pd.DataFrame({
        "id": rng.permutation(n) + 1, "rooms": rng.integers(1, 7, n).astype(float),
        "area": area.astype(object), "kind": rng.choice(["flat", "house", "villa"], n), "price": price,
    })  # fmt: skip
    frame.loc[[1, 7, 8, 40], "rooms"] = np.nan
    frame.loc[3, "area"] = "unknown"
    frame.loc[[0, 20, 50], "kind"] = ""
    frame.to_csv(path, index=False)
    return path


def write_multiclass(path, n=60):
    """Two numeric features and a whole-number target of three classes."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (n, 2)).round(3)
    frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "grade": 1 + (x[:, 0] > 0) + (x[:, 1] > 0.5)})
    frame.to_csv(path, index=False)
    return path


def write_flags(path, n=40):
    """What pandas alone would misread: True/False cells, a category with trailing spaces, NA in
    another case."""
    rng = np.random.default_rng(5)
    score = rng.normal(0, 1, n).round(3)
    member = rng.choice(["True", "False"], n)
    team = rng.choice(["red", "red  ", "blue", "nA"], n)
    passed = score + rng.normal(0, 1, n) > 0
    lines = ["score,member,team,passed"] + [
        ",".join(map(str, row)) for row in zip(score, member, team, passed, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def prepared_of(path, target, kind=None) -> csvfile.Prepared:
    """The file as the page prepares it."""
    return csvfile.prepare(csvfile.read_table(path.read_bytes(), path.name), target, kind)


def run(capsys, *args: str) -> tuple[int, list[dict], list[str]]:
    """`python -m regviz ...` in this process: exit code, stdout's JSON lines, stderr's lines."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err.splitlines()


def test_train_on_a_csv_prints_epochs_the_notices_and_stores_nothing(tmp_path, temporary_store, capsys):
    """One JSON line per epoch and the summary as for the book's data; the settings are the upload's
    defaults with the options over them; stderr has each of the page's notices and the inferred type;
    without --keep-results the store stays empty and a second run trains again."""
    path = write_regression(tmp_path / "houses.csv")
    prepared = prepared_of(path, "price")
    code, lines, err = run(
        capsys, "train", "--csv", str(path), "--target", "price", "--epochs", "3", "--l2", "0.01"
    )
    assert code == 0, err
    assert [line["epoch"] for line in lines[:-1]] == [1, 2, 3]
    settings = lines[-1]["settings"]
    assert settings["dataset"] == prepared.name and prepared.name.startswith("csv-regression-1-")
    assert (settings["width"], settings["batch_size"], settings["epochs"], settings["l2"]) == (
        64,
        32,
        3,
        0.01,
    )
    assert lines[-1]["summary"]["cached"] is False and "val_mae_at_best" in lines[-1]["summary"]
    assert [f"regviz: {line}" for line in prepared.lines()] == err[: len(prepared.lines())]
    assert any("'id' dropped" in line for line in err) and any(
        "text value among numbers" in line for line in err
    )
    assert any(prepared.name in line and "regression" in line for line in err)
    assert open_store(temporary_store).count() == 0
    again = run(capsys, "train", "--csv", str(path), "--target", "price", "--epochs", "3", "--l2", "0.01")[1]
    assert again[-1]["summary"]["cached"] is False


def test_k_fold_on_a_csv_prints_fold_epochs_then_the_mean_summary(tmp_path, capsys):
    """--validation kfold --folds 3: one line per fold-epoch, then the summary of the folds' mean curve."""
    path = write_binary(tmp_path / "churn.csv")
    args = [
        "--csv",
        str(path),
        "--target",
        "churned",
        "--validation",
        "kfold",
        "--folds",
        "3",
        "--epochs",
        "2",
    ]
    code, lines, err = run(capsys, "train", *args)
    assert code == 0, err
    epochs, summary = lines[:-1], lines[-1]["summary"]
    assert [(e["fold"], e["epoch"]) for e in epochs] == [(f, e) for f in (1, 2, 3) for e in (1, 2)]
    mean = [np.mean([e["val_data_loss"] for e in epochs if e["epoch"] == k]) for k in (1, 2)]
    best = int(np.argmin(mean)) + 1
    assert summary["best_epoch"] == best and summary["min_val_data_loss"] == pytest.approx(min(mean))
    accuracy = np.mean([e["val_accuracy"] for e in epochs if e["epoch"] == best])
    assert summary["val_accuracy_at_best"] == pytest.approx(accuracy) and summary["folds"] == 3
    assert any("binary" in line and "two values" in line for line in err)


def test_keep_results_stores_the_curves_but_not_the_file(tmp_path, temporary_store, capsys):
    """--keep-results stores the run, read back the second time; the store holds no column name or cell."""
    path = write_binary(tmp_path / "churn.csv")
    args = ["train", "--csv", str(path), "--target", "churned", "--epochs", "2", "--keep-results"]
    assert run(capsys, *args)[0] == 0
    assert open_store(temporary_store).count() == 1
    assert run(capsys, *args)[1][-1]["summary"]["cached"] is True
    stored = b"".join(f.read_bytes() for f in temporary_store.parent.iterdir())  # the WAL too
    assert prepared_of(path, "churned").name.encode() in stored
    assert b"churned" not in stored and b"<i>gold</i>" not in stored and b"customer id" not in stored


def test_problem_overrides_the_inferred_type(tmp_path, capsys):
    """--problem multiclass makes a two-valued target two classes (a softmax head); a type the target
    does not allow is exit 2 with one line."""
    path = write_binary(tmp_path / "churn.csv")
    code = cli.main(["code", "--csv", str(path), "--target", "churned", "--problem", "multiclass"])
    out, err = capsys.readouterr()
    assert code == 0 and 'layers.Dense(2, activation="softmax")' in out
    assert "csv-multiclass-2-" in err and "chosen" in err
    code = cli.main(["code", "--csv", str(path), "--target", "churned", "--problem", "regression"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.BAD_INPUT and len(err) == 1 and "cannot be regression" in err[0]


def test_code_prints_the_listing_that_reads_the_file_from_the_given_path(tmp_path, capsys):
    """`code --csv PATH --target COLUMN` prints valid Python that reads PATH with the app's columns."""
    path = write_regression(tmp_path / "houses.csv")
    assert cli.main(["code", "--csv", str(path), "--target", "price", "--width", "8"]) == 0
    out = capsys.readouterr().out
    compile(out, "<listing>", "exec")
    assert f"pd.read_csv({str(path)!r}" in out and "'rooms', 'area'" in out and "layers.Dense(8" in out


def bad_files(tmp_path):
    """A PNG, a file whose target has one value, and a good one."""
    (tmp_path / "picture.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp_path / "same.csv").write_text("x,t\n" + "".join(f"{i},5\n" for i in range(30)))
    write_binary(tmp_path / "churn.csv")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--csv", "missing.csv", "--target", "t"], "cannot read missing.csv: No such file"),
        (["--csv", "picture.csv", "--target", "t"], "picture.csv is a PNG image, not a CSV"),
        (["--csv", "same.csv", "--target", "t"], "has one value ('5') in every row"),
        (
            ["--csv", "churn.csv", "--target", "price"],
            "no column 'price'; the columns of churn.csv: 'customer id'",
        ),
        (
            ["--csv", "churn.csv"],
            "--target COLUMN is required with --csv; the columns of churn.csv: 'customer id'",
        ),
        (["--csv", "churn.csv", "--target", "churned", "--dataset", "imdb"], "give --csv or --dataset"),
        (["--target", "churned"], "go with --csv"),
        (["--csv", "churn.csv", "--target", "churned", "--width", "0"], "width='0' is not allowed"),
    ],
)
def test_bad_files_and_options_exit_2_with_one_line(args, words, tmp_path, monkeypatch, capsys):
    """A file that cannot be read or used, a missing or unknown target, --dataset beside --csv: exit 2
    and one line on stderr (the file's columns when the target is wrong), no traceback, nothing printed."""
    bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", *args]) == cli.BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert words in err


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch, capsys):
    """A file over csvfile.MAX_MB is exit 2 with the page's one line on the size."""
    path = write_binary(tmp_path / "churn.csv")
    monkeypatch.setattr(csvfile, "MAX_MB", path.stat().st_size / 2**20 / 2)
    assert cli.main(["train", "--csv", str(path), "--target", "churned"]) == cli.BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "churn.csv is 0.0 MB; files up to" in err[0]


WINE = Path(sklearn.__file__).parent / "datasets" / "data" / "wine_data.csv"


def test_sklearns_wine_file_is_read_whole_with_one_note_and_no_pandas_warning():
    """`python -m regviz code --csv wine_data.csv`: the count line is left out with one notice, all 13
    features are used (the 14th column, the class, is the target), and pandas prints no ParserWarning."""
    done = subprocess.run(
        [sys.executable, "-m", "regviz", "code", "--csv", str(WINE), "--target", "column 14"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr
    assert err[0].startswith("regviz: line 1 ('178,13,class_0,class_1,class_2') has 5 fields")
    assert "multiclass" in err[-1] and "178 rows, 13 features" in err[-1]
    compile(done.stdout, "<listing>", "exec")


@pytest.mark.parametrize(("content", "words"), [
    (b"a,b,y\n1,2,0\n3,4,1,7\n5,6,0\n", "line 3 has 4 fields where the header (line 1) has 3"),
    (b"\xff\xfe" + "a,y\n1,0\n".encode("utf-16-le") + b"\x00\xd8", "not valid UTF-16"),
])  # fmt: skip
def test_a_ragged_or_broken_file_exits_2_with_one_line(content, words, tmp_path, capsys):
    """A row longer than the header, or a UTF-16 file that breaks its encoding: exit 2, one line."""
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    assert cli.main(["code", "--csv", str(path), "--target", "y"]) == cli.BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and words in err


def test_a_utf16_file_is_read_as_the_page_reads_it(tmp_path, capsys):
    """A UTF-16 file (Excel's "Unicode text") prepares to the same rows as its UTF-8 twin."""
    utf8 = write_binary(tmp_path / "churn.csv")
    utf16 = tmp_path / "churn16.csv"
    utf16.write_bytes(utf8.read_text().encode("utf-16"))
    assert cli.main(["code", "--csv", str(utf16), "--target", "churned"]) == 0
    err = capsys.readouterr().err
    assert "read as UTF-16 text" in err
    np.testing.assert_array_equal(prepared_of(utf16, "churned").x, prepared_of(utf8, "churned").x)
