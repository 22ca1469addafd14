"""Your own data (regviz.data.csvfile): reading a delimited file, inferring the target's problem type,
typing the feature columns, the row split and the transforms fit on the training rows only, and the
one-line UploadError for every bad file, with generated files fuzzing the reader.

Expected numbers come from NumPy and pandas computed on the test's own data (medians, means and
population standard deviations of the training rows), never from values printed by csvfile itself.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from regviz import problems
from regviz.data.csvfile import (
    MAX_COLUMNS,
    MAX_FEATURES,
    MIN_ROWS,
    Prepared,
    Table,
    UploadError,
    cell,
    column,
    infer_target,
    prepare,
    read_table,
    safe_filename,
)
from regviz.data.rows import DenseRows
from regviz.problems import BINARY, MULTICLASS, REGRESSION

FORMULA = "=cmd|' /C calc'!A0"  # a spreadsheet formula injection: must stay plain text
NA_TOKENS = ["", "NA", "n/a", "NaN", "null", "None", "?", "#N/A"]
MESSAGE_LIMIT = 300  # characters: a message the page shows on one line
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# ---- helpers ----------------------------------------------------------------------------------------


def csv_bytes(columns: dict[str, list], sep: str = ",") -> bytes:
    """A file with these columns, as the csv module writes it (quoted where a cell needs it)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    return out.getvalue().encode()


def table_of(columns: dict[str, list], sep: str = ",") -> Table:
    """The file with these columns, as read_table reads it."""
    return read_table(csv_bytes(columns, sep), "data.csv")


def assert_one_line(error: UploadError) -> None:
    """A message the page can show as is: one non-empty line, bounded."""
    message = str(error)
    assert message.strip(), "empty message"
    assert len(message.splitlines()) == 1, repr(message)
    assert len(message) <= MESSAGE_LIMIT, f"{len(message)} characters: {message!r}"
    assert "Traceback" not in message


def upload_error(call, *args, **kwargs) -> UploadError:
    """The UploadError the call raises, checked to be one line."""
    with pytest.raises(UploadError) as info:
        call(*args, **kwargs)
    assert_one_line(info.value)
    return info.value


def mixed_columns(n: int = 40, seed: int = 3) -> dict[str, list]:
    """A small file of every kind of column: numbers with gaps, categories with gaps, an identifier, a
    constant, a mostly empty column, and a binary text target that depends on the number."""
    rng = np.random.default_rng(seed)
    size = np.round(rng.normal(50, 10, n), 2).astype(object)
    size[[3, 11, 25]] = ""
    colour = rng.choice(["red", "green", "blue"], n).astype(object)
    colour[[5, 17]] = "NA"
    sparse = [""] * n
    sparse[0], sparse[1] = "1", "2"
    label = np.where(rng.random(n) < 0.5, "yes", "no")
    return {
        "id": list(rng.permutation(n) + 1),
        "size": list(size),
        "colour": list(colour),
        "country": ["FR"] * n,
        "sparse": sparse,
        "label": list(label),
    }


@pytest.fixture(scope="module")
def mixed() -> tuple[dict[str, list], Prepared]:
    """The mixed file's columns and the file prepared with `label` as the target."""
    columns = mixed_columns()
    return columns, prepare(table_of(columns), "label")


def reference_transform(x_train: np.ndarray, x_other: np.ndarray, k: int, sizes: list[int]):
    """NumPy's version of the transform: median imputation and standardisation (population std) of the
    first k columns, most-frequent imputation and one-hot encoding of the rest, all fit on x_train."""
    train_parts, other_parts = [], []
    for j in range(k):
        median = np.nanmedian(x_train[:, j].astype(np.float64))
        train = np.where(np.isnan(x_train[:, j]), median, x_train[:, j]).astype(np.float64)
        other = np.where(np.isnan(x_other[:, j]), median, x_other[:, j]).astype(np.float64)
        mean, std = train.mean(), train.std(ddof=0)
        std = std if std > 0 else 1.0
        train_parts.append(((train - mean) / std)[:, None])
        other_parts.append(((other - mean) / std)[:, None])
    for j, size in zip(range(k, x_train.shape[1]), sizes, strict=True):
        seen = x_train[:, j][~np.isnan(x_train[:, j])].astype(int)
        mode = int(np.argmax(np.bincount(seen, minlength=size)))  # ties: the smallest code
        for rows, parts in ((x_train, train_parts), (x_other, other_parts)):
            codes = np.where(np.isnan(rows[:, j]), mode, rows[:, j]).astype(int)
            parts.append(np.eye(size)[codes])
    return np.hstack(train_parts), np.hstack(other_parts)


# ---- reading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sep", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_the_separator_is_detected_and_the_cells_read_as_text(sep, name):
    """Comma, semicolon, tab and pipe files are told apart; every cell is read as the text it holds."""
    columns = {"a": ["1", "2", "3.5"], "b": ["x", "y", "z z"], "y": ["0", "1", "0"]}
    table = table_of(columns, sep)
    assert (table.separator, table.separator_name) == (sep, name)
    pd.testing.assert_frame_equal(table.frame, pd.DataFrame(columns), check_dtype=False)


def test_semicolon_files_with_decimal_commas_are_read_as_semicolon_separated():
    """A European export (`;` between values, `,` inside numbers) is split on the semicolons."""
    text = "price;weight;label\n1,5;2,25;a\n3,0;4,75;b\n2,5;1,5;a\n"
    table = read_table(text.encode(), "eu.csv")
    assert table.separator == ";"
    assert table.frame["price"].tolist() == ["1,5", "3,0", "2,5"]


def test_cells_are_stripped_and_quoted_separators_stay_in_one_cell():
    """Spaces around values go; a quoted value with separators and quotes inside is one cell."""
    text = 'name , note,y\n  a  ,"one, two",1\nb,"say ""hi""",0\n'
    table = read_table(text.encode(), "q.csv")
    assert list(table.frame.columns) == ["name", "note", "y"]
    assert table.frame["name"].tolist() == ["a", "b"]
    assert table.frame["note"].tolist() == ["one, two", 'say "hi"']


def test_short_rows_read_their_missing_cells_as_empty_text():
    """A row with fewer values than the header has empty cells at its end."""
    table = read_table(b"a,b,c\n1,2\n3,4,5\n", "short.csv")
    assert table.frame.to_dict("list") == {"a": ["1", "3"], "b": ["2", "4"], "c": ["", "5"]}


@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")  # pandas says the empty last values go
def test_a_trailing_separator_on_every_row_does_not_shift_the_columns():
    """Rows ending in a separator (a common export) keep each value under its own header."""
    table = read_table(b"a,b,y\n1,x,0,\n2,z,1,\n", "trailing.csv")
    assert table.frame.to_dict("list") == {"a": ["1", "2"], "b": ["x", "z"], "y": ["0", "1"]}


def test_blank_and_repeated_header_names_get_names_of_their_own():
    """An empty header cell is named by its position, repeated ones are told apart: names stay unique,
    also when cutting long names to 60 characters makes them equal."""
    long = "w" * 70
    table = read_table(f"a,,a,{long}1,{long}2\n1,2,3,4,5\n".encode(), "names.csv")
    names = list(table.frame.columns)
    assert names[:2] == ["a", "column 2"] and names[2].startswith("a") and len(set(names)) == 5
    assert names[3] == "w" * 60 and names[4] == "w" * 60 + "'"


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name():
    """Excel's UTF-8 CSV starts with a byte order mark; the first column is still called by its name."""
    table = read_table("\ufeffprix,y\n1,0\n2,1\n".encode(), "bom.csv")
    assert list(table.frame.columns) == ["prix", "y"]
    assert table.notes == ()


def test_a_latin1_file_is_read_with_a_note():
    """Bytes that are not UTF-8 are read as Latin-1, and the file's notes say so."""
    table = read_table("ville,y\nmontréal,1\nquébec,0\n".encode("latin-1"), "fr.csv")
    assert table.frame["ville"].tolist() == ["montréal", "québec"]
    assert any("Latin-1" in note for note in table.notes)


# ---- files read whole: field counts, a first line that is not a header, encodings -------------------

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"


def read_as_listed(content: bytes, kwargs: dict, tmp_path) -> pd.DataFrame:
    """The file read by pandas with the table's read_csv_kwargs (as the exported listing reads it),
    cells as stripped text."""
    path = tmp_path / "file.csv"
    path.write_bytes(content)
    frame = pd.read_csv(path, **kwargs, dtype=str, keep_default_na=False, skipinitialspace=True)
    return frame.apply(lambda column: column.str.strip())


@pytest.mark.parametrize(("name", "first", "width", "rows"), [
    ("wine_data.csv", "178,13,class_0,class_1,class_2", 14, 178),
    ("breast_cancer.csv", "569,30,malignant,benign", 31, 569),
])  # fmt: skip
def test_sklearns_files_are_read_whole_without_their_count_line(name, first, width, rows, tmp_path):
    """scikit-learn's wine and breast cancer files start with a shorter line of counts and class names:
    it is left out with one note, every column of every row is read under a generic name, the target
    defaults to the last column (the class), and pandas with read_csv_kwargs reads the same table."""
    content = (SKLEARN_DATA / name).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ParserWarning: nothing is dropped behind the reader's back
        table = read_table(content, name)
    reference = np.loadtxt(SKLEARN_DATA / name, delimiter=",", skiprows=1)
    assert reference.shape == (rows, width) and table.frame.shape == (rows, width)
    assert list(table.frame.columns) == [f"column {i + 1}" for i in range(width)]
    np.testing.assert_array_equal(table.frame.to_numpy(float), reference)
    (note,) = table.notes
    assert first in note and "not a header" in note and f"column {width}" in note
    prepared = prepare(table, table.frame.columns[-1])
    assert prepared.kind == MULTICLASS if width == 14 else prepared.kind == BINARY
    assert prepared.features == width - 1 and len(prepared.y) == rows
    np.testing.assert_array_equal(np.sort(np.unique(prepared.y)), np.arange(len(np.unique(reference[:, -1]))))
    listed = read_as_listed(content, prepared.read_csv_kwargs, tmp_path)
    pd.testing.assert_frame_equal(listed, table.frame)


@pytest.mark.parametrize(("content", "line", "fields", "header"), [
    (b"a,b\n1,2\n3,4,5,6\n", 3, 4, 2),
    (b"a,b,y\n1,2,0\n3,4,1\n\n5,6,7,8\n9,1,0\n", 5, 4, 3),  # a blank line still counts as a line
    (b"a;b;y\n1;2;0\n3;4;1;x\n", 3, 4, 3),
    (b'a,b,y\n1,"2,5",0\n3,4,"1",9\n', 3, 4, 3),  # a quoted separator is no field of its own
])  # fmt: skip
def test_a_row_longer_than_the_header_is_refused_naming_the_line(content, line, fields, header):
    """A row with more values than the header (other rows as long as it) is refused in one line that
    names the first such line and both field counts: nothing is dropped silently."""
    message = str(upload_error(read_table, content, "ragged.csv"))
    assert f"line {line} has {fields} fields where the header (line 1) has {header}" in message


def test_a_first_line_shorter_than_only_some_rows_is_a_header_and_the_file_is_refused():
    """Line 1 is a header as long as one row is no longer than it: the longer rows make it a refusal."""
    content = b"a,b,y\n1,2,0\n3,4,1,5\n6,7,0,8\n"
    assert "line 3 has 4 fields" in str(upload_error(read_table, content, "some.csv"))


def test_rows_shorter_than_the_header_are_noted(tmp_path):
    """Rows with fewer values lose nothing: their last cells are missing, and one note says so, naming
    the first such line; pandas with read_csv_kwargs reads the same table."""
    content = b"a,b,c\n1,2,3\n4,5\n6\n7,8,9\n"
    table = read_table(content, "short.csv")
    assert table.frame.to_dict("list") == {"a": ["1", "4", "6", "7"], "b": ["2", "5", "", "8"],
                                           "c": ["3", "", "", "9"]}  # fmt: skip
    (note,) = table.notes
    assert note.startswith("2 rows shorter than the header (the first: line 3, 2 of 3 fields)")
    pd.testing.assert_frame_equal(read_as_listed(content, table.read_csv_kwargs, tmp_path), table.frame)


def test_a_trailing_separator_is_read_as_pandas_reads_it_with_read_csv_kwargs(tmp_path):
    """Rows ending in a separator keep their columns, without a warning, and the listing's arguments
    read the same table (plain read_csv would take the first column for the index)."""
    content = b"a,b,y\n1,x,0,\n2,z,1,\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_table(content, "trailing.csv")
    assert table.notes == () and table.read_csv_kwargs["index_col"] is False
    pd.testing.assert_frame_equal(read_as_listed(content, table.read_csv_kwargs, tmp_path), table.frame)


TEXT = "ville;prix;y\nmontréal;1,5;1\nquébec;2,5;0\nzürich;3;1\n"


@pytest.mark.parametrize(("encoding", "bom", "named"), [
    ("utf-16", b"", "UTF-16"),  # Python writes its byte order mark
    ("utf-16-le", b"\xff\xfe", "UTF-16"),
    ("utf-16-be", b"\xfe\xff", "UTF-16"),
    ("utf-16-le", b"", "UTF-16 (little-endian)"),  # no mark: every other byte zero
    ("utf-16-be", b"", "UTF-16 (big-endian)"),
    ("utf-32", b"", "UTF-32"),
    ("utf-8-sig", b"", None),
    ("latin-1", b"", "Latin-1"),
    ("cp1252", b"", "Latin-1"),
])  # fmt: skip
def test_unicode_and_latin1_files_are_read_with_their_encoding(encoding, bom, named, tmp_path):
    """UTF-16 (with or without a byte order mark, either byte order), UTF-32, UTF-8 with a mark and
    Latin-1 are read to the same cells; a note names the encoding (none for UTF-8), and pandas reads the
    same table with read_csv_kwargs."""
    content = bom + TEXT.encode(encoding)
    table = read_table(content, "fr.csv")
    assert table.frame.to_dict("list") == {"ville": ["montréal", "québec", "zürich"],
                                           "prix": ["1,5", "2,5", "3"], "y": ["1", "0", "1"]}  # fmt: skip
    assert [n for n in table.notes if named and named in n] if named else table.notes == ()
    pd.testing.assert_frame_equal(read_as_listed(content, table.read_csv_kwargs, tmp_path), table.frame)


def test_a_windows_file_with_a_euro_sign_reads_the_euro_sign():
    """Windows-1252 bytes (€ is 0x80) are read as the characters Excel meant, not as control codes."""
    table = read_table("item,price,y\nbook,10€,1\npen,2€,0\n".encode("cp1252"), "win.csv")
    assert table.frame["price"].tolist() == ["10€", "2€"] and table.encoding == "cp1252"


@pytest.mark.parametrize(("content", "named"), [
    (b"\xff\xfe" + "a,b\n1,2\n".encode("utf-16-le") + b"\x00\xd8", "UTF-16"),  # a lone surrogate
    (b"\xff\xfe\x00\x00" + b"\xff\xff\xff\xff", "UTF-32"),
])  # fmt: skip
def test_a_file_that_is_not_valid_in_its_own_encoding_is_refused_naming_it(content, named):
    """A byte order mark promises an encoding: text that breaks it is refused with the encoding named,
    not called a binary file."""
    message = str(upload_error(read_table, content, "broken.csv"))
    assert f"not valid {named}" in message and "binary" not in message


def test_the_table_records_size_and_digest_of_the_bytes():
    """The Table knows the file's size and its SHA-256, computed over the bytes as received."""
    content = csv_bytes({"a": [1, 2], "y": [0, 1]})
    table = read_table(content, "d.csv")
    assert (table.size, table.digest) == (len(content), hashlib.sha256(content).hexdigest())


def test_a_formula_cell_is_kept_verbatim_as_text_and_as_a_category():
    """`=cmd|' /C calc'!A0` is neither evaluated nor altered: the frame and the categories hold it as
    written (its pipe does not make the file pipe-separated either)."""
    n = 30
    columns = {"a": [i % 5 for i in range(n)], "b": [FORMULA if i % 2 else "plain" for i in range(n)],
               "y": [i % 3 % 2 for i in range(n)]}  # fmt: skip
    table = table_of(columns)
    assert table.separator == ","
    assert table.frame["b"].tolist() == columns["b"]
    prepared = prepare(table, "y")
    assert dict(prepared.categorical)["b"] == tuple(sorted([FORMULA, "plain"]))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"PK\x03\x04" + b"\x00" * 100, "zip"),
        (b"%PDF-1.7\n...", "PDF"),
        (b"\x89PNG\r\n\x1a\n" + bytes(50), "PNG"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "gzip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(20), "Excel"),
        (b"a,b\n1,\x00\x002\n", "binary"),
        (bytes(range(256)) * 4, "binary"),
        (b"", "empty"),
        (b"  \n\n\t \n", "empty"),
        (b"a,b,y\n", "no rows"),
        (b"just one line of prose without separators\nand another one here\n", "one column"),
        (b"<html>\n<body><p>Hello there</p></body>\n</html>\n", "one column"),
        (b"a,b\n1,2\n3,4,5,6\n", "well-formed"),
    ],
    ids=["zip", "pdf", "png", "gzip", "ole", "nul", "controls", "empty", "blank", "header-only", "prose",
         "html", "ragged"],
)  # fmt: skip
def test_files_that_are_not_usable_csv_raise_a_one_line_upload_error(content, words):
    """Binary files, empty files, a header without rows, one column and ragged rows are refused, each with
    a message that says what is wrong."""
    error = upload_error(read_table, content, "file.csv")
    assert words.lower() in str(error).lower()


def test_a_file_over_the_size_limit_is_refused_with_its_size():
    """A file larger than max_mb is refused before it is read, saying how large it is and the limit."""
    content = csv_bytes({"a": list(range(2000)), "y": [i % 2 for i in range(2000)]})
    error = upload_error(read_table, content, "big.csv", max_mb=0.005)
    assert "MB" in str(error) and "0.005" in str(error)
    assert isinstance(read_table(content, "big.csv", max_mb=1), Table)


def test_content_that_is_not_bytes_is_refused():
    """A text string or None instead of the file's bytes is an UploadError, not a TypeError."""
    upload_error(read_table, "a,b\n1,2\n", "t.csv")
    upload_error(read_table, None, "t.csv")


def test_ten_thousand_columns_are_refused():
    """A file of 10,000 columns is refused (more than MAX_COLUMNS), saying how many it has."""
    header = ",".join(f"c{i}" for i in range(10_000))
    row = ",".join("1" for _ in range(10_000))
    error = upload_error(read_table, f"{header}\n{row}\n{row}\n".encode(), "wide.csv")
    assert "10,000" in str(error) and f"{MAX_COLUMNS:,}" in str(error)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\Desktop\\data.csv", "data.csv"),
        ("<b>report<b>.csv", "breportb.csv"),
        ("<img src=x onerror=alert(1)>.csv", "img src=x onerror=alert(1).csv"),
        ("<script>alert('x')</script>.csv", "script.csv"),  # a slash always separates folders
        ('quote"s and `ticks`.csv', "quotes and ticks.csv"),
        ("two\nlines\r\n.csv", "twolines.csv"),
        ("  spaced   out  .csv ", "spaced out .csv"),
        ("", "upload.csv"),
        (None, "upload.csv"),
        ("folder/", "upload.csv"),
    ],
)
def test_safe_filename_strips_folders_markup_and_control_characters(raw, expected):
    """Only the file's own name is kept, without HTML brackets, quotes or line breaks."""
    assert safe_filename(raw) == expected


def test_safe_filename_bounds_long_names_and_read_table_uses_it():
    """A long name is cut to 80 characters; the Table and its messages carry the safe name only."""
    long = safe_filename("x" * 500 + ".csv")
    assert len(long) == 80 and long.endswith("...")
    assert read_table(b"a,y\n1,0\n", "../../<i>evil<i>.csv").filename == "ievili.csv"
    error = upload_error(read_table, b"", "dir/<img src=x onerror=alert(1)>.csv")
    assert "<" not in str(error) and "dir/" not in str(error)


def test_cell_shows_a_value_on_one_bounded_line():
    """A value in a message is quoted, its line breaks folded to spaces, and cut at the limit."""
    assert cell("a\nb\tc") == repr("a b c")
    shown = cell("y" * 100, limit=20)
    assert len(shown) == 22 and shown.endswith("...'")


# ---- the target's problem type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "kind", "allowed", "labels"),
    [
        (["0", "1"] * 10, BINARY, (BINARY, MULTICLASS, REGRESSION), ("0", "1")),
        (["yes", "no", "NA"] * 10, BINARY, (BINARY, MULTICLASS), ("no", "yes")),
        (["0.5", "1.5"] * 10, BINARY, (BINARY, MULTICLASS, REGRESSION), ("0.5", "1.5")),
        (["10", "9", "2", "9"] * 5, MULTICLASS, (MULTICLASS, REGRESSION), ("2", "9", "10")),
        ([str(i % 20) for i in range(60)], MULTICLASS, (MULTICLASS, REGRESSION), None),
        ([str(i % 21) for i in range(60)], REGRESSION, (MULTICLASS, REGRESSION), ()),
        (["cat", "dog", "bird"] * 7, MULTICLASS, (MULTICLASS,), ("bird", "cat", "dog")),
        ([f"topic {i % 50}" for i in range(100)], MULTICLASS, (MULTICLASS,), None),
        (["0.1", "0.2", "0.3"] * 7, REGRESSION, (MULTICLASS, REGRESSION), ()),
        ([f"{i * 1.37:.2f}" for i in range(80)], REGRESSION, (REGRESSION,), ()),
        (["1", "1.0", "2", "2.00", "3"] * 4, MULTICLASS, (MULTICLASS, REGRESSION), ("1", "2", "3")),
    ],
    ids=["0/1", "yes/no", "two-floats", "few-ints", "20-ints", "21-ints", "texts", "50-texts",
         "few-floats", "many-floats", "same-number-written-twice"],
)  # fmt: skip
def test_the_target_type_follows_the_rules(cells, kind, allowed, labels):
    """Two values: binary; at most 20 whole numbers or at most 50 text labels: multiclass; other numbers:
    regression; the types it may be overridden to, and its classes sorted (numerically for numbers)."""
    target = infer_target("y", pd.Series(cells))
    assert (target.kind, target.allowed) == (kind, allowed)
    if labels is None:  # many classes: the distinct values, sorted as numbers when they are numbers
        distinct = set(cells)
        labels = tuple(sorted(distinct, key=int) if all(v.isdigit() for v in distinct) else sorted(distinct))
    assert target.labels == labels  # () for regression: no classes


@pytest.mark.parametrize(
    ("cells", "words"),
    [
        (["same"] * 30, "one value"),
        (["", "NA", "null"] * 10, "no values"),
        ([f"label {i}" for i in range(51)], "51 different text labels"),
    ],
)
def test_targets_without_something_to_learn_are_refused(cells, words):
    """A target with one value, no values, or more than 50 text labels cannot be learnt."""
    assert words in str(upload_error(infer_target, "y", pd.Series(cells)))


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_values_of_a_hand_made_series_are_missing(missing):
    """None or NaN in a Series built by hand count as missing cells, like empty text from a file."""
    target = infer_target("y", pd.Series(["a", "b", missing] * 10, dtype=object))
    assert (target.kind, target.labels) == (BINARY, ("a", "b"))
    feature = column("x", pd.Series(["1.5", missing, "3", "4", "8"] * 6, dtype=object))
    assert (feature.kind, feature.missing) == ("numeric", 6)


# ---- feature columns --------------------------------------------------------------------------------


def test_a_numeric_column_holds_its_numbers_with_nan_where_missing():
    """Numbers are read as floats; every NA-like token is a missing cell, counted."""
    cells = [str(v) for v in np.linspace(-3, 7, 24)] + NA_TOKENS
    feature = column("x", pd.Series(cells))
    expected = np.array([float(c) for c in cells[:24]] + [np.nan] * len(NA_TOKENS))
    assert (feature.kind, feature.missing, feature.non_numeric) == ("numeric", len(NA_TOKENS), 0)
    np.testing.assert_array_equal(feature.values, expected)


def test_numbers_with_a_few_texts_are_numeric_with_the_texts_as_missing():
    """A column of numbers with a few stray texts (under a tenth) stays numeric; the texts are missing."""
    cells = [str(i * 0.5) for i in range(28)] + ["unknown", "see notes"]
    feature = column("x", pd.Series(cells))
    assert (feature.kind, feature.missing, feature.non_numeric) == ("numeric", 2, 2)
    assert np.isnan(feature.values[-2:]).all() and np.isfinite(feature.values[:-2]).all()


def test_numbers_float32_cannot_hold_are_missing_not_infinite():
    """1e39 and 1e308 overflow the network's float32 input: such cells are missing, never inf; infinity
    and NaN written out are missing too, and the largest float32 stays a number."""
    cells = [str(i) for i in range(26)] + ["1e39", "-1e308", "inf", "3.4e38"]
    feature = column("x", pd.Series(cells))
    assert (feature.kind, feature.missing) == ("numeric", 3)
    np.testing.assert_array_equal(np.isnan(feature.values), [False] * 26 + [True, True, True, False])
    n = 30  # a regression target with one value float32 cannot hold: that row is left out
    target = [f"{i * 0.75:.2f}" for i in range(n - 1)] + ["1e300"]
    prepared = prepare(table_of({"x": [i * 0.5 for i in range(n)], "y": target}), "y")
    assert prepared.kind == REGRESSION and np.isfinite(prepared.y).all()
    np.testing.assert_allclose(prepared.y, [float(v) for v in target[:-1]])
    assert prepared.notes[0] == "1 row without a target value left out"


def test_numbers_mixed_with_many_texts_are_categorical():
    """Half numbers, half texts: the column is categorical over all its distinct values."""
    cells = ["1", "2", "low", "high"] * 8
    feature = column("x", pd.Series(cells))
    assert feature.kind == "categorical"
    assert feature.categories == ("1", "2", "high", "low")


def test_category_codes_index_the_sorted_categories():
    """A categorical column's value in a row is the index of that row's text among its categories."""
    cells = ["b", "a", "", "c", "a", "b", "NA"] * 4
    feature = column("x", pd.Series(cells))
    expected = sorted({c for c in cells if c not in ("", "NA")})
    assert feature.categories == tuple(expected) and feature.missing == 8
    for text, code in zip(cells, feature.values, strict=True):
        assert np.isnan(code) if text in ("", "NA") else expected[int(code)] == text


@pytest.mark.parametrize(
    ("name", "cells", "why"),
    [
        ("flag", ["1"] * 30, "same value"),
        ("flag", ["1"] * 25 + [""] * 5, "same value"),
        ("n", [str(v) for v in np.random.default_rng(0).permutation(30)], "identifier"),
        ("customer_id", [str(1000 + 7 * i) for i in range(30)], "identifier"),
        ("code", [f"K{i:03d}" for i in range(30)], "identifier"),
        ("comment", [f"note {i}" for i in range(51)] * 2, "51 different texts"),
        ("sparse", ["5", "6", "7"] + [""] * 27, "90% missing"),
        ("gaps", ["1", "2"] + ["NA"] * 18, "90% missing"),
    ],
    ids=["constant", "constant-with-gaps", "row-count", "named-id", "text-id", "free-text", "90%-missing",
         "90%-NA"],
)  # fmt: skip
def test_useless_columns_are_dropped_with_the_reason(name, cells, why):
    """Constant columns, identifiers (a different value in every row), free text and mostly missing
    columns are dropped, each with a reason the page shows."""
    feature = column(name, pd.Series(cells))
    assert feature.kind == "dropped" and why in feature.why


@pytest.mark.parametrize(
    ("name", "cells", "kind"),
    [
        ("weight", [f"{v:.3f}" for v in np.random.default_rng(1).normal(70, 9, 30)], "numeric"),
        ("year", [str(1990 + i) for i in range(29)] + ["1990"], "numeric"),
        ("some", ["5", "6", "7", "8"] + [""] * 26, "numeric"),
        ("city", ["Paris", "Lyon"] * 14 + ["Nice", "Nice"], "categorical"),
    ],
    ids=["unique-floats", "whole-numbers-with-a-repeat", "87%-missing", "texts"],
)
def test_useful_columns_are_kept(name, cells, kind):
    """A different fraction in every row, whole numbers that repeat, a column under 90% missing and a few
    categories are features, not identifiers or gaps."""
    assert column(name, pd.Series(cells)).kind == kind


# ---- prepare ----------------------------------------------------------------------------------------


def test_prepare_types_every_column_and_explains_each_drop_and_imputation(mixed):
    """The mixed file: `size` numeric, `colour` categorical, the identifier, the constant and the mostly
    empty column dropped with notes; the missing cells counted for imputation as the file has them."""
    columns, prepared = mixed
    assert (prepared.kind, prepared.labels, prepared.numeric) == (BINARY, ("no", "yes"), ("size",))
    assert prepared.categorical == (("colour", ("blue", "green", "red")),)
    assert [name for name, _ in prepared.dropped] == ["id", "country", "sparse"]
    frame = pd.DataFrame(columns).astype(str)
    missing = {name: int(frame[name].isin(["", "NA"]).sum()) for name in ("size", "colour")}
    assert dict(prepared.imputed) == missing
    lines = prepared.lines()
    assert any(
        "'size'" in line and f"{missing['size']} missing values imputed (median" in line for line in lines
    )
    assert any("'colour'" in line and "most frequent" in line for line in lines)
    assert any("'sparse' dropped: 95% missing" in line for line in lines)
    assert all(len(line.splitlines()) == 1 for line in lines)


def test_prepared_rows_hold_the_file_values(mixed):
    """x holds the numbers and category codes row by row, y the class index of each row's label."""
    columns, prepared = mixed
    size = pd.to_numeric(pd.Series(columns["size"]).replace("", np.nan)).to_numpy(np.float32)
    np.testing.assert_array_equal(prepared.x[:, 0], size)
    colours = ["blue", "green", "red"]
    np.testing.assert_array_equal(
        prepared.x[:, 1], [colours.index(c) if c in colours else np.nan for c in columns["colour"]]
    )
    np.testing.assert_array_equal(prepared.y, (np.array(columns["label"]) == "yes").astype(np.float32))
    assert prepared.features == 1 + 3 and prepared.rows_in_file == 40


def test_text_among_numbers_is_noted_and_imputed():
    """A numeric feature with stray texts: a note counts them, and they are imputed with the gaps."""
    n = 30
    values = [str(i * 1.5) for i in range(n)]
    values[4], values[9], values[12] = "n.a.", "", "unknown"
    prepared = prepare(table_of({"x": values, "y": [i % 2 for i in range(n)]}), "y")
    assert prepared.numeric == ("x",) and dict(prepared.imputed) == {"x": 3}
    assert any("2 text values among numbers read as missing" in line for line in prepared.lines())


def test_rows_without_a_target_are_left_out_with_a_note():
    """Rows whose target is missing are not used, and a note counts them."""
    n = 30
    target = [f"{i * 2.5:.1f}" for i in range(n)]
    for i in (2, 7, 8):
        target[i] = "NA"
    feature = [f"{i * 0.1:.2f}" for i in range(n)]
    prepared = prepare(table_of({"x": feature, "y": target}), "y")
    keep = [i for i in range(n) if target[i] != "NA"]
    assert prepared.kind == REGRESSION
    np.testing.assert_allclose(prepared.y, [float(target[i]) for i in keep])
    np.testing.assert_allclose(prepared.x[:, 0], [float(feature[i]) for i in keep], rtol=1e-6)
    assert prepared.notes[0] == "3 rows without a target value left out"


@pytest.mark.parametrize(("kind", "classes"), [(None, 2), (BINARY, 2), (MULTICLASS, 2), (REGRESSION, 1)])
def test_a_two_valued_numeric_target_can_be_overridden(kind, classes):
    """0/1 numbers are binary unless chosen otherwise; multiclass and regression may be chosen."""
    n = 30
    table = table_of({"x": [i * 0.3 for i in range(n)], "y": [i % 3 % 2 for i in range(n)]})
    prepared = prepare(table, "y", kind)
    assert prepared.kind == (kind or BINARY) and prepared.classes == classes
    assert problems.of_dataset(prepared.name) == (problems.PROBLEMS[prepared.kind], classes)
    np.testing.assert_array_equal(prepared.y, [i % 3 % 2 for i in range(n)])
    assert ("chosen" in prepared.inferred) == (kind not in (None, BINARY))


def test_a_few_whole_numbers_become_classes_in_numeric_order():
    """A target of 3, 10 and 7 is three classes, indexed in numeric (not text) order."""
    n = 30
    target = [[3, 10, 7][i % 3] for i in range(n)]
    prepared = prepare(table_of({"x": [i * 0.3 for i in range(n)], "y": target}), "y")
    assert (prepared.kind, prepared.labels, prepared.classes) == (MULTICLASS, ("3", "7", "10"), 3)
    np.testing.assert_array_equal(prepared.y, [sorted({3, 7, 10}).index(v) for v in target])


def test_a_target_of_two_fractions_is_binary_with_both_classes():
    """Two fractional values (0.5 and 1.5) are the two classes of a binary target, each row in its own."""
    n = 30
    target = [[0.5, 1.5][i % 2] for i in range(n)]
    prepared = prepare(table_of({"x": [i * 0.3 for i in range(n)], "y": target}), "y")
    assert (prepared.kind, prepared.labels) == (BINARY, ("0.5", "1.5"))
    np.testing.assert_array_equal(prepared.y, [v == 1.5 for v in target])


@pytest.mark.parametrize(
    ("target", "kind", "words"),
    [
        (["a", "b", "c"] * 10, REGRESSION, "cannot be regression"),
        ([f"{i * 0.37:.2f}" for i in range(60)], MULTICLASS, "cannot be multiclass"),
        (["0", "1"] * 15, "clustering", "cannot be clustering"),
    ],
)
def test_overrides_that_the_target_does_not_allow_are_refused(target, kind, words):
    """Text labels cannot be regressed, 60 different fractions cannot be classes: the message says which
    types the target allows."""
    table = table_of({"x": [i % 7 for i in range(len(target))], "y": target})
    error = upload_error(prepare, table, "y", kind)
    assert words in str(error) and "allows" in str(error)


def test_bad_choices_of_target_and_bad_files_raise_one_line_errors():
    """A missing target column, too few rows, one row per class, and no usable feature are refused."""
    n = 30
    table = table_of({"x": [i * 0.5 for i in range(n)], "y": [i % 2 for i in range(n)]})
    assert "no column" in str(upload_error(prepare, table, "nope"))
    few = table_of({"x": [i * 0.5 for i in range(MIN_ROWS - 1)], "y": [i % 2 for i in range(MIN_ROWS - 1)]})
    assert f"at least {MIN_ROWS}" in str(upload_error(prepare, few, "y"))
    unique = table_of({"x": [i * 0.5 for i in range(n)], "y": [f"class {i}" for i in range(n)]})
    assert "one row" in str(upload_error(prepare, unique, "y"))
    useless = table_of({"row": list(range(n)), "same": ["k"] * n, "y": [i % 2 for i in range(n)]})
    assert "no usable feature" in str(upload_error(prepare, useless, "y"))


def test_a_mostly_missing_column_is_an_error_only_when_it_is_the_only_feature():
    """A 90%-missing column is dropped with a note; with no other feature left the file is refused."""
    n = 30
    gaps = ["1", "2", "3"] + [""] * (n - 3)
    target = [i % 2 for i in range(n)]
    prepared = prepare(table_of({"gaps": gaps, "x": [i * 0.5 for i in range(n)], "y": target}), "y")
    assert prepared.dropped == (("gaps", "90% missing"),)
    assert "90% missing" in str(upload_error(prepare, table_of({"gaps": gaps, "y": target}), "y"))


def test_a_long_list_of_unusable_features_still_fits_one_line():
    """Many long-named useless columns: the refusal stays one line of bounded length."""
    n = 30
    columns = {f"{'identifier of the record number ' * 3}{j}": [str(i + j * 100) for i in range(n)]
               for j in range(8)}  # fmt: skip
    columns["y"] = [i % 2 for i in range(n)]
    assert "6 more dropped" in str(upload_error(prepare, table_of(columns), "y"))


def test_classes_with_a_single_row_are_noted():
    """A class seen in one row only is kept, and a note names it."""
    n = 30
    target = ["a", "b"] * 14 + ["a", "rare"]
    prepared = prepare(table_of({"x": [i * 0.5 for i in range(n)], "y": target}), "y")
    assert prepared.labels == ("a", "b", "rare")
    assert any("1 class with one row only: 'rare'" in line for line in prepared.lines())


def test_too_many_one_hot_features_are_refused():
    """Categorical columns whose categories add up to more than MAX_FEATURES inputs are refused."""
    n, k = 100, MAX_FEATURES // 50 + 1
    columns = {f"c{j}": [f"v{(i + j) % 50}" for i in range(n)] for j in range(k)}
    columns["y"] = [i % 2 for i in range(n)]
    error = upload_error(prepare, table_of(columns), "y")
    assert f"{k * 50:,} features" in str(error)


def test_the_dataset_name_is_an_upload_name_of_content_target_and_type(mixed):
    """The name carries the type and classes, and changes with the content, the target or the type, but
    not with the file's name."""
    columns, prepared = mixed
    assert problems.is_upload(prepared.name) and prepared.name.startswith("csv-binary-2-")
    renamed = prepare(read_table(csv_bytes(columns), "other name.csv"), "label")
    assert renamed.name == prepared.name
    table = table_of(columns)
    assert prepare(table, "label", MULTICLASS).name != prepared.name
    assert prepare(table, "colour").name != prepared.name
    edited = dict(columns, size=[*columns["size"][:-1], "1.25"])
    assert prepare(table_of(edited), "label").name != prepared.name


def test_a_prepared_file_survives_its_payload(mixed):
    """to_payload then from_payload gives back the same arrays and the same description."""
    _, prepared = mixed
    back = Prepared.from_payload(prepared.to_payload())
    np.testing.assert_array_equal(back.x, prepared.x)
    np.testing.assert_array_equal(back.y, prepared.y)
    for field in Prepared.__dataclass_fields__:
        if field not in ("x", "y"):
            assert getattr(back, field) == getattr(prepared, field), field


# ---- the split and the transforms -------------------------------------------------------------------


def test_the_dataset_splits_partition_the_shuffled_rows():
    """A fifth of the rows is kept for the test, a quarter of the rest validates, the rest trains; every
    row is in exactly one part, and the order is shuffled (a sorted file is not split by its sort)."""
    n = 103
    rows = np.arange(n) + 0.5  # a different fraction in every row: tells the rows apart
    prepared = prepare(table_of({"r": list(rows), "y": [int(i >= n // 2) for i in range(n)]}), "y")
    dataset = prepared.dataset()
    parts = [dataset.x_test, dataset.x_val, dataset.x_train]
    n_test = round(0.2 * n)
    assert [len(p) for p in parts] == [
        n_test,
        round(0.25 * (n - n_test)),
        n - n_test - round(0.25 * (n - n_test)),
    ]
    seen = np.concatenate([p.values[:, 0] for p in parts])
    np.testing.assert_array_equal(np.sort(seen), rows.astype(np.float32))
    labels = np.concatenate([dataset.y_test, dataset.y_val, dataset.y_train])
    np.testing.assert_array_equal(labels, (seen >= n // 2).astype(np.float32))  # each y stays with its row
    assert not np.array_equal(dataset.x_train.values[:, 0], np.sort(dataset.x_train.values[:, 0]))
    again = prepared.dataset()
    np.testing.assert_array_equal(again.x_train.values, dataset.x_train.values)


def test_the_dataset_describes_the_problem(mixed):
    """The dataset carries the file's type, classes and input width after encoding."""
    _, prepared = mixed
    dataset = prepared.dataset()
    assert (dataset.problem, dataset.classes, dataset.num_features) == (BINARY, 2, prepared.features)
    assert not dataset.scale_target


def transform_case(n: int = 60, seed: int = 5) -> Prepared:
    """Two numeric columns with gaps and a categorical one with gaps, on a regression target."""
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 3, n).round(3).astype(object)
    b = rng.exponential(2, n).round(3).astype(object)
    c = rng.choice(["lo", "mid", "hi", "top"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    a[[1, 4, 30]], b[[2, 45]], c[[0, 33, 50]] = "", "NA", "?"
    y = rng.normal(0, 1, n).round(4)
    return prepare(table_of({"a": list(a), "b": list(b), "c": list(c), "y": list(y)}), "y")


def test_the_transforms_match_numpy_fit_on_the_training_rows():
    """Median imputation and standardisation (population std) of the numbers, most-frequent imputation
    and one-hot encoding of the categories, all fit on the training rows, applied to the others."""
    prepared = transform_case()
    assert prepared.numeric == ("a", "b") and len(prepared.categorical) == 1
    train, other = prepared.x[:40], prepared.x[40:]
    got_train, got_other = prepared.transform(DenseRows(train), DenseRows(other))
    sizes = [len(c) for _, c in prepared.categorical]
    want_train, want_other = reference_transform(train, other, 2, sizes)
    np.testing.assert_allclose(got_train.values, want_train, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_other.values, want_other, rtol=1e-5, atol=1e-5)
    assert got_train.n_cols == got_other.n_cols == prepared.features == 2 + 4


def test_the_other_rows_do_not_change_what_the_training_rows_become():
    """Changing the validation rows (even to extreme values) leaves the training rows' output unchanged:
    nothing is fit on them."""
    prepared = transform_case()
    train, other = prepared.x[:40], prepared.x[40:].copy()
    first, _ = prepared.transform(DenseRows(train), DenseRows(other))
    other[:, :2] = np.where(np.isnan(other[:, :2]), 1.0, other[:, :2] * 1e6)
    other[:, 2] = 3.0
    second, shifted = prepared.transform(DenseRows(train), DenseRows(other))
    np.testing.assert_array_equal(first.values, second.values)
    assert np.isfinite(shifted.values).all()


def test_one_hot_columns_are_zero_or_one_with_one_category_per_row():
    """Every row of the encoded part has exactly one 1 among each column's categories, gaps included."""
    prepared = transform_case()
    (train, other) = prepared.transform(DenseRows(prepared.x[:40]), DenseRows(prepared.x[40:]))
    for rows in (train.values, other.values):
        one_hot = rows[:, 2:]
        assert set(np.unique(one_hot)) <= {0.0, 1.0}
        np.testing.assert_array_equal(one_hot.sum(axis=1), 1.0)


def test_a_category_absent_from_the_training_rows_keeps_the_width_and_its_column():
    """The file's categories fix the width: a category the training rows lack still has its column,
    and a later row of it is encoded there."""
    prepared = transform_case()
    codes = prepared.x[:, 2]
    top = prepared.categorical[0][1].index("top")
    train = prepared.x[codes != top][:30]
    other = prepared.x[codes == top]
    got_train, got_other = prepared.transform(DenseRows(train), DenseRows(other))
    assert got_train.n_cols == prepared.features
    np.testing.assert_array_equal(got_train.values[:, 2 + top], 0.0)
    np.testing.assert_array_equal(got_other.values[:, 2 + top], 1.0)


def test_numbers_near_the_float32_limit_transform_to_finite_values():
    """Training values near ±3.4e38 standardise without overflow (as NumPy does in float64); a later row
    far outside the training rows' spread saturates instead of becoming inf."""
    n = 30
    big = [["3.4e38", "-3.4e38", "1"][i % 3] for i in range(n)]
    prepared = prepare(table_of({"x": big, "y": [i % 2 for i in range(n)]}), "y")
    train = prepared.x[:24]
    got_train, _ = prepared.transform(DenseRows(train), DenseRows(prepared.x[24:]))
    want_train, _ = reference_transform(train, train, 1, [])
    np.testing.assert_allclose(got_train.values, want_train, rtol=1e-5)
    small = DenseRows(np.array([[0.001], [0.002]] * 10, np.float32))
    _, far = prepared.transform(small, DenseRows(np.array([[3.4e38], [-3.4e38]], np.float32)))
    assert np.isfinite(far.values).all() and far.values[0, 0] > 1e38 > -1e38 > far.values[1, 0]


def test_a_feature_missing_in_every_training_row_still_transforms_to_finite_values():
    """A column with no values in the training rows is kept (as zeros) so widths agree across folds."""
    prepared = transform_case()
    train = prepared.x[:30].copy()
    train[:, 0] = np.nan
    got_train, got_other = prepared.transform(DenseRows(train), DenseRows(prepared.x[30:]))
    assert got_train.n_cols == got_other.n_cols == prepared.features
    assert np.isfinite(got_train.values).all() and np.isfinite(got_other.values).all()


# ---- fuzzing the reader -----------------------------------------------------------------------------

TRICKY = [
    *NA_TOKENS, "nan", "inf", "-inf", "Infinity", "1e308", "-1e309", "1e400", "3.4e38", "-3.5e38",
    "1e-320", "9" * 40, "0", "-0", "0.5", "1", "2", "1,5", '"', '""', '"a,b"', "'", ",", ";", "\t", "|",
    " ", "é", "日本", "💥", "\u2028", "\x85", "\x1f", "\r", FORMULA, "<b>x</b>", "id",
]  # fmt: skip
cells = st.one_of(
    st.sampled_from(TRICKY),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)


@st.composite
def csvish(draw) -> bytes:
    """Text shaped roughly like a delimited file: random cells (quotes, separators, unicode, NA tokens,
    huge numbers) in rows of mostly one width, joined by one separator, in some encoding."""
    sep = draw(st.sampled_from(",;\t|"))
    width = draw(st.integers(1, 6))
    n = draw(st.integers(0, 40))
    rows = [draw(st.lists(cells, min_size=width, max_size=width)) for _ in range(n + 1)]
    if draw(st.booleans()):  # a few ragged rows
        for i in draw(st.lists(st.integers(0, n), max_size=3)):
            rows[i] = rows[i][: draw(st.integers(0, width))] + draw(st.lists(cells, max_size=2))
    quote = draw(st.booleans())
    text = "\n".join(sep.join(f'"{c}"' if quote else c for c in row) for row in rows)
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"])), errors="replace")


@st.composite
def tables(draw) -> bytes:
    """A file likely to prepare: 20-60 rows of numeric, categorical and messy columns around a target."""
    n = draw(st.integers(MIN_ROWS, 60))
    sep = draw(st.sampled_from(",;\t|"))
    numbers = st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.6g}"),
        st.sampled_from(["", "NA", "?", "1e38", "-3e38", "1e308", "inf", "oops"]),
    )
    kinds = {
        "number": numbers,
        "category": st.sampled_from(["a", "b", "c", "", FORMULA, "é"]),
        "whole": st.integers(0, 4).map(str),
        "messy": cells.map(lambda c: "".join(ch for ch in c if ch.isprintable())),  # control bytes: binary
    }
    names = draw(st.lists(st.sampled_from(list(kinds)), min_size=1, max_size=5))
    columns = {f"{kind}{j}": [draw(kinds[kind]) for _ in range(n)] for j, kind in enumerate(names)}
    target = draw(st.sampled_from(["binary", "classes", "numbers", "texts"]))
    label = {
        "binary": st.sampled_from(["0", "1"]),
        "classes": st.integers(0, 3).map(str),
        "numbers": st.floats(-100, 100, allow_nan=False).map(lambda v: f"{v:.4f}"),
        "texts": st.sampled_from(["cat", "dog", "owl", "NA"]),
    }[target]
    columns["target"] = [draw(label) for _ in range(n)]
    return csv_bytes(columns, sep)


def check_prepared(prepared: Prepared, transform: bool = True) -> None:
    """What every prepared file must satisfy: rows and labels agree, nothing infinite, the split is a
    partition of the rows, and (unless told not to: it is the slow part) the transform gives finite rows
    of the network's input width."""
    x, y = prepared.x, prepared.y
    assert x.dtype == np.float32 and x.shape == (len(y), len(prepared.numeric) + len(prepared.categorical))
    assert not np.isinf(x).any() and np.isfinite(y).all()
    if prepared.kind != REGRESSION:
        assert set(np.unique(y)) <= set(range(len(prepared.labels)))
    dataset = prepared.dataset()
    parts = [
        (dataset.x_train, dataset.y_train),
        (dataset.x_val, dataset.y_val),
        (dataset.x_test, dataset.y_test),
    ]
    assert all(len(rows) == len(labels) > 0 for rows, labels in parts)

    def rows_of(features, labels):
        return collections.Counter(r.tobytes() for r in np.column_stack([features, labels]))

    together = sum((rows_of(rows.values, labels) for rows, labels in parts), collections.Counter())
    assert together == rows_of(x, y)
    assert all(len(line.splitlines()) == 1 for line in prepared.lines())
    if not transform:
        return
    outputs = dataset.transform(dataset.x_train, dataset.x_val, dataset.x_test)
    for out in outputs:
        assert out.n_cols == prepared.features and np.isfinite(out.values).all()


def read_or_refuse(content: bytes, name: str, refused: str):
    """read_table's Table, or None after checking its UploadError is one line (noted as `refused`)."""
    try:
        return read_table(content, name)
    except UploadError as e:
        assert_one_line(e)
        event(refused)
        return None


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=600),
        st.text(max_size=300).map(str.encode),
        st.text(alphabet=",;|\t\n\r\"' ab1.-eE", max_size=300).map(str.encode),  # separators and quotes
    )
)
@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")  # a first row longer than the header
def test_arbitrary_bytes_are_read_or_refused_with_one_line(content):
    """Any bytes at all (or any text): read_table gives a Table or an UploadError, nothing else."""
    table = read_or_refuse(content, "fuzz.bin", "refused")
    if table is None:
        return
    event("read")
    assert table.frame.shape[1] >= 2 and len(table.frame) >= 1


@FUZZ
@given(content=csvish())
@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")  # a first row longer than the header
def test_generated_csv_text_is_read_and_prepared_or_refused_with_one_line(content):
    """Messy delimited text: reading, and preparing each of the first two columns as the target, either
    works (and the result is consistent) or raises a one-line UploadError."""
    table = read_or_refuse(content, "fuzz.csv", "refused by read_table")
    if table is None:
        return
    assert all(isinstance(v, str) for v in table.frame.to_numpy().ravel())
    for target in table.frame.columns[:2]:
        try:
            prepared = prepare(table, target)
        except UploadError as e:
            assert_one_line(e)
            event("refused by prepare")
            continue
        event(f"prepared: {prepared.kind}")
        check_prepared(prepared)


@FUZZ
@given(content=tables())
def test_generated_tables_prepare_consistently_under_every_allowed_type(content):
    """Tables of typed columns with messy cells: for every type the target allows, the file prepares to
    consistent rows or is refused with one line."""
    table = read_table(content, "gen.csv")
    try:
        allowed = infer_target("target", table.frame["target"]).allowed
    except UploadError as e:
        assert_one_line(e)
        return
    transformed = False  # the features do not depend on the type: transform them once per file
    for kind in allowed:
        try:
            prepared = prepare(table, "target", kind)
        except UploadError as e:
            assert_one_line(e)
            event("refused by prepare")
            continue
        event(f"prepared: {kind}")
        assert prepared.kind == kind
        check_prepared(prepared, transform=not transformed)
        transformed = True
        back = Prepared.from_payload(prepared.to_payload())
        np.testing.assert_array_equal(back.x, prepared.x)
