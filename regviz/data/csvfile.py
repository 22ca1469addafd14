"""Your own data: a CSV (or TSV, or `;`-separated) file read, its target chosen, its problem type
inferred, its features typed, and the transforms a run fits on its training rows only.

Reading is pandas' (the separator found by the standard library's csv.Sniffer); the per-run
transforms are scikit-learn's (`ColumnTransformer`: median imputation and standardisation of the
numeric columns, most-frequent imputation and one-hot encoding of the categorical ones), the same
pipeline the Keras listing of such a run spells out. Every problem with a file is an UploadError with
a one-line message; nothing else escapes `read_table` or `prepare`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from regviz import problems
from regviz.data.dataset import Dataset
from regviz.data.rows import DenseRows
from regviz.problems import BINARY, MULTICLASS, REGRESSION

MAX_MB = 20  # the upload limit; .streamlit/config.toml's server.maxUploadSize says the same
MAX_COLUMNS = 1000  # a wider file is refused: one dense layer over it would dwarf the rest
MAX_FEATURES = 2000  # the network's input width after one-hot encoding
MAX_CATEGORIES = 50  # a text column with more distinct values is free text or an identifier: dropped
MAX_CLASSES = 50  # a classification target's classes at most (Reuters has 46)
FEW_CLASSES = 20  # whole-number targets with at most this many values are classes, not a quantity
MIN_ROWS = 20  # a fifth is kept for the test, a quarter of the rest validates: fewer leaves too little
MOSTLY_MISSING = 0.9  # a column missing in this share of rows or more is dropped
NUMERIC_SHARE = 0.9  # a column is numeric when this share of its filled cells are numbers
TEST_SHARE, VALIDATION_SHARE = 0.2, 0.25  # of all rows, then of the rest: 60/20/20 as train_test_split
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "#n/a"})  # cells read as missing
SEPARATORS = ",;\t|"
_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_BINARY_MAGIC = {
    b"PK\x03\x04": "a zip archive (an .xlsx workbook is one)", b"%PDF": "a PDF", b"\x89PNG": "a PNG image",
    b"GIF8": "a GIF image", b"\xff\xd8\xff": "a JPEG image", b"\x1f\x8b": "a gzip archive",
    b"\xd0\xcf\x11\xe0": "an old Excel or Word file",
}  # fmt: skip
FLOAT32_MAX = float(np.finfo(np.float32).max)  # a larger number cannot be a feature or a target: missing
UPLOAD_VERSION = "1"  # part of a file's dataset name: a change of reading or encoding is new data


class UploadError(ValueError):
    """A file that cannot be used; the message is one line that says why and what to do."""


def safe_filename(name: str | None) -> str:
    """The file's own name without folders, control characters or markup brackets, at most 80 long."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C" and c not in "<>\"'`")
    base = " ".join(base.split()).strip(". ")
    return (base[:77] + "...") if len(base) > 80 else (base or "upload.csv")


def cell(text: object, limit: int = 40) -> str:
    """A value or a column name as shown in a message: quoted, on one line, bounded."""
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# ---- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A file as read: every cell as text (stripped; missing ones empty), and how it was read."""

    frame: pd.DataFrame
    filename: str
    separator: str
    digest: str  # sha256 of the file's bytes
    size: int  # bytes
    notes: tuple[str, ...] = ()
    encoding: str = "utf-8"  # as pandas and Python name it
    skipped: int = 0  # lines before the first row read when line 1 was not a header (0: it was)
    width: int = 0  # the header's fields when rows end in empty extra ones (a trailing separator), else 0

    @property
    def separator_name(self) -> str:
        """The separator in words."""
        return _NAMES.get(self.separator, repr(self.separator))

    @property
    def read_csv_kwargs(self) -> dict:
        """pandas.read_csv's arguments that read the file as regviz did: separator, encoding, header."""
        return read_csv_kwargs(self.separator, self.encoding, self.skipped, self.width, self.frame.columns)


def read_csv_kwargs(separator: str, encoding: str, skipped: int, width: int, columns) -> dict:
    """The arguments of pandas.read_csv for a file read as described (see Table)."""
    kwargs: dict = {"sep": separator, "encoding": encoding}
    if skipped:  # line 1 is not a header: no header, the app's generic names
        return {**kwargs, "header": None, "skiprows": skipped, "names": list(columns)}
    if width:  # rows end in empty extra fields: read the header's columns, the first not taken as an index
        return {**kwargs, "index_col": False, "usecols": list(range(width))}
    return kwargs


def read_table(content: bytes, filename: str = "upload.csv", max_mb: float = MAX_MB) -> Table:
    """The file's table; raises UploadError for anything that is not a usable delimited text file."""
    name = safe_filename(filename)
    if not isinstance(content, bytes | bytearray):
        raise UploadError(f"{name}: no file content was received")
    content = bytes(content)
    if len(content) > max_mb * 2**20:
        raise too_large(name, len(content), max_mb)
    if not content.strip():
        raise UploadError(f"{name} is empty")
    text, encoding, notes = _decode(content, name)
    separator = _separator(text)
    shape = _shape(text, separator, name)
    frame = _frame(text, separator, shape, name)
    if frame.shape[1] > MAX_COLUMNS:
        raise UploadError(f"{name} has {frame.shape[1]:,} columns; at most {MAX_COLUMNS:,} can be used")
    if len(frame) == 0:
        raise UploadError(f"{name} has a header line but no rows")
    if frame.shape[1] < 2:
        raise UploadError(
            f"{name} has one column (no comma, semicolon, tab or pipe between values): a target and at "
            "least one feature are needed"
        )
    frame = frame.apply(lambda column: column.str.strip())
    digest = hashlib.sha256(content).hexdigest()
    width = shape.header if shape.longest > shape.header and not shape.skipped else 0
    return Table(
        frame, name, separator, digest, len(content), (*notes, *shape.notes), encoding, shape.skipped, width
    )


@dataclass(frozen=True)
class _Shape:
    """The field counts of a file's records: the header's, the longest row's, and what they mean."""

    header: int  # fields of the first record
    longest: int  # fields of the longest record
    skipped: int = 0  # lines up to the first record when that record is not a header (else 0)
    notes: tuple[str, ...] = ()


def _shape(text: str, separator: str, name: str) -> _Shape:
    """How the records' field counts fit together. Rows longer than the header (beyond empty fields
    that a trailing separator leaves) would lose values: the file is refused naming the first such line,
    unless line 1 is shorter than every row after it, when it is no header and is left out."""
    reader = csv.reader(io.StringIO(text, newline=None), delimiter=separator, skipinitialspace=True)
    header = first_line = longest = 0
    shortest, long_line, short, first_short = None, None, 0, (0, 0)
    first = ""
    try:
        for row in reader:
            if len(row) <= 1 and not "".join(row).strip():
                continue  # a blank line, which pandas skips too
            n = len(row)
            longest = max(longest, n)
            if not header:
                header, first_line, first = n, reader.line_num, separator.join(row)
                continue
            filled = _filled(row, header)
            shortest = filled if shortest is None else min(shortest, filled)
            if filled > header and long_line is None:
                long_line = (reader.line_num, n)
            if n < header:
                short, first_short = short + 1, first_short if short else (reader.line_num, n)
    except csv.Error as e:
        raise UploadError(
            f"{name} is not a well-formed {_NAMES[separator]}-separated file: line {reader.line_num}: "
            f"{_why(e)}"
        ) from None
    if shortest is not None and shortest > header:  # sklearn's files: "178,13,class_0,class_1,class_2"
        note = (
            f"line {first_line} ({cell(first, 30)}) has {header} field{'s' * (header != 1)} and every row "
            f"after it {shortest if shortest == longest else f'{shortest} or more'}: it is not a header, so "
            f"it was left out and the columns are named column 1 to column {longest}"
        )
        return _Shape(header, longest, first_line, (note,))
    if long_line is not None:
        line, n = long_line
        raise UploadError(
            f"{name} is not a well-formed {_NAMES[separator]}-separated file: line {line} has {n} fields "
            f"where the header (line {first_line}) has {header}; reading it would drop values, so fix that "
            "line (or the header) and upload it again"
        )
    notes = ()
    if short:
        line, n = first_short
        notes = (
            f"{short:,} row{'s' * (short != 1)} shorter than the header (the first: line {line}, {n} of "
            f"{header} fields): {'their' if short != 1 else 'its'} last cells read as missing",
        )
    return _Shape(header, longest, 0, notes)


def _filled(row: list[str], header: int) -> int:
    """The row's fields, less the empty ones after the header's count (a trailing separator leaves one)."""
    n = len(row)
    while n > header and not row[n - 1].strip():
        n -= 1
    return n


def _frame(text: str, separator: str, shape: _Shape, name: str) -> pd.DataFrame:
    """The cells as text under their names: as many columns as the longest record has fields, so that
    pandas refuses a longer row rather than dropping its values, then the header's (or generic) names."""
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=separator, header=None, names=range(shape.longest), dtype=str,
            keep_default_na=False, na_filter=False, skipinitialspace=True, skip_blank_lines=True, engine="c",
        )  # fmt: skip
    except pd.errors.EmptyDataError:
        raise UploadError(f"{name} has no header line and no rows") from None
    except (pd.errors.ParserError, ValueError, csv.Error, UnicodeError, MemoryError) as e:
        raise UploadError(
            f"{name} is not a well-formed {_NAMES[separator]}-separated file: {_why(e)}"
        ) from None
    if frame.empty:  # nothing pandas counts as a line (the csv module saw only separators)
        raise UploadError(f"{name} has no header line and no rows")
    frame = frame.fillna("")
    if shape.skipped:
        frame = frame.iloc[1:]
        frame.columns = [f"column {i + 1}" for i in range(frame.shape[1])]
    else:
        header, frame = frame.iloc[0, : shape.header].tolist(), frame.iloc[1:]
        extra = frame.iloc[:, shape.header :]
        if extra.size and (extra.apply(lambda column: column.str.strip()) != "").to_numpy().any():
            raise UploadError(  # the csv module's count and pandas' disagree: never drop what pandas saw
                f"{name} is not a well-formed {_NAMES[separator]}-separated file: some rows have more "
                f"fields than its header's {shape.header}"
            )
        frame = frame.iloc[:, : shape.header]
        frame.columns = _column_names(header)
    return frame.reset_index(drop=True)


def too_large(name: str, size: int, max_mb: float = MAX_MB) -> UploadError:
    """The one line for a file of `size` bytes over the limit."""
    return UploadError(
        f"{safe_filename(name)} is {size / 2**20:.1f} MB; files up to {max_mb:g} MB can be used"
    )


_BOMS = (  # the longer first: UTF-32 LE's mark begins with UTF-16 LE's
    (b"\xff\xfe\x00\x00", "utf-32", "UTF-32"), (b"\x00\x00\xfe\xff", "utf-32", "UTF-32"),
    (b"\xef\xbb\xbf", "utf-8-sig", "UTF-8"), (b"\xff\xfe", "utf-16", "UTF-16"),
    (b"\xfe\xff", "utf-16", "UTF-16"),
)  # fmt: skip


def _decode(content: bytes, name: str) -> tuple[str, str, list[str]]:
    """(text, its encoding as pandas names it, notes): a byte order mark's encoding, UTF-16 without one
    (every other byte zero), UTF-8, else Windows-1252 or Latin-1; binary content is refused."""
    for magic, what in _BINARY_MAGIC.items():
        if content.startswith(magic):
            raise UploadError(f"{name} is {what}, not a CSV: save or export it as CSV and upload that")
    encoding, label = _unicode_encoding(content)
    if encoding:
        try:
            text = content.decode(encoding)
        except UnicodeDecodeError as e:
            raise UploadError(
                f"{name} looks like {label} text but is not valid {label} (at byte {e.start:,}): save it as "
                "UTF-8 CSV and upload that"
            ) from None
        _refuse_binary(text, name)
        return text, encoding, ([] if label == "UTF-8" else [f"read as {label} text"])
    _refuse_binary(content[:8192].decode("latin-1"), name)
    try:
        return content.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    try:  # Windows' "ANSI": Latin-1 with printable characters (€, curly quotes) where Latin-1 has controls
        return content.decode("cp1252"), "cp1252", ["not UTF-8: read as Latin-1 (Windows-1252)"]
    except UnicodeDecodeError:
        return content.decode("latin-1"), "latin-1", ["not UTF-8: read as Latin-1"]


def _unicode_encoding(content: bytes) -> tuple[str, str]:
    """(encoding, its name in words) from a byte order mark, or UTF-16 without one; ("", "") if neither."""
    for mark, encoding, label in _BOMS:
        if content.startswith(mark):
            return encoding, label
    head = content[:8192]
    even, odd = head[0::2], head[1::2]
    # text of ASCII letters, digits and separators in UTF-16 has a zero in every other byte
    if len(head) >= 4 and odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le", "UTF-16 (little-endian)"
    if len(head) >= 4 and even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be", "UTF-16 (big-endian)"
    return "", ""


def _refuse_binary(head: str, name: str) -> None:
    """Refuse text with NULs or more than 1% control characters: binary content, not a CSV."""
    head = head[:8192]
    controls = sum(ord(c) < 32 and c not in "\t\n\x0c\r" for c in head)
    if "\x00" in head or controls > 0.01 * len(head):
        raise UploadError(f"{name} is a binary file, not a CSV: save or export it as CSV and upload that")


def _separator(text: str) -> str:
    lines = [line for line in text[:65536].splitlines()[:50] if line.strip()]
    sample = "\n".join(lines)
    try:
        found = csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
        if found in SEPARATORS:
            return found
    except csv.Error:
        pass
    # the sniffer gives up on ragged or one-line files: the separator the header line has most of
    counts = {s: lines[0].count(s) for s in SEPARATORS} if lines else {}
    best = max(counts, key=counts.get, default=",")
    return best if counts.get(best) else ","


def _column_names(columns) -> list[str]:
    names, seen = [], set()
    for i, raw in enumerate(columns):
        name = " ".join(str(raw).split())[:60]
        if not name or name.startswith("Unnamed: "):
            name = f"column {i + 1}"
        while name in seen:
            name += "'"
        seen.add(name)
        names.append(name)
    return names


def _why(e: Exception) -> str:
    text = " ".join(str(e).split()).replace("Error tokenizing data. C error: ", "")
    return text[:160] or type(e).__name__


# ---- columns ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """What one column holds: numbers or categories, its missing cells, and whether it is of use."""

    name: str
    kind: str  # "numeric", "categorical", or "dropped"
    missing: int  # empty or NA-like cells, and in a numeric column the cells that are not numbers
    non_numeric: int = 0  # text cells of a numeric column (counted as missing)
    values: np.ndarray | None = None  # numeric: float64 with NaN; categorical: codes with NaN
    categories: tuple[str, ...] = ()
    why: str = ""  # dropped: the reason, as shown


def column(name: str, cells: pd.Series) -> Column:
    """Type one feature column: numeric, categorical, or dropped (constant, ID-like, mostly missing)."""
    text, empty = _text(cells)
    n, filled = len(text), int((~empty).sum())
    if n - filled >= MOSTLY_MISSING * n:
        return Column(name, "dropped", n - filled, why=f"{(n - filled) / n:.0%} missing")
    numbers = _numbers(text.where(~empty), FLOAT32_MAX)
    numeric = np.isfinite(numbers)
    distinct = pd.unique(text[~empty])
    if len(distinct) <= 1:
        return Column(name, "dropped", n - filled, why="the same value in every row")
    if numeric.sum() >= NUMERIC_SHARE * filled:
        if _id_like(name, numbers, numeric, n):
            return Column(
                name, "dropped", n - filled, why="an identifier (a different whole number in every row)"
            )
        return Column(name, "numeric", int(n - numeric.sum()), int(filled - numeric.sum()), numbers)
    if len(distinct) == n:
        return Column(name, "dropped", 0, why="an identifier (a different value in every row)")
    if len(distinct) > MAX_CATEGORIES:
        return Column(
            name, "dropped", n - filled, why=f"{len(distinct):,} different texts: free text, not categories"
        )
    categories = tuple(sorted(str(v) for v in distinct))
    codes = pd.Categorical(text.where(~empty), categories=categories).codes.astype(np.float64)
    codes[codes < 0] = np.nan
    return Column(name, "categorical", n - filled, values=codes, categories=categories)


def _text(cells: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """The cells as text (None, NaN: pandas 3's astype(str) keeps them, as empty text), and which of
    them are missing (empty or an NA token)."""
    text = cells.astype(object).where(cells.notna(), "").astype(str)
    return text, text.str.lower().isin(MISSING).to_numpy()


def _numbers(cells: pd.Series, limit: float = np.inf) -> np.ndarray:
    """Each cell as a float64, NaN where it is not a (finite) number or one beyond ±limit."""
    values = np.array(pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    values[~(np.isfinite(values) & (np.abs(values) <= limit))] = np.nan
    return values


def _id_like(name: str, numbers: np.ndarray, numeric: np.ndarray, n: int) -> bool:
    # a whole number unique to each row that counts rows (1..n, in any order) or is named as an id
    if numeric.sum() != n or not np.all(numbers == np.round(numbers)) or len(np.unique(numbers)) != n:
        return False
    named = re.search(r"(^|[^a-z])(id|index|key|row|no)([^a-z]|$)", name.lower()) is not None
    return named or numbers.max() - numbers.min() == n - 1


# ---- the target and the problem type ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The target column's labels: the problem types it allows and the one inferred."""

    name: str
    kind: str  # the inferred problem type
    allowed: tuple[str, ...]  # the types it may be overridden to
    labels: tuple[str, ...]  # classes, sorted (numerically when they are numbers); () for regression
    why: str  # the inference in words


def infer_target(name: str, cells: pd.Series) -> Target:
    """Two values: binary; a few whole numbers or text labels: multiclass; many numbers: regression."""
    text, empty = _text(cells)
    filled = text[~empty]
    if filled.empty:
        raise UploadError(f"the target {cell(name)} has no values")
    numbers = _numbers(filled)
    numeric = bool(np.isfinite(numbers).all())
    distinct = pd.unique(numbers) if numeric else pd.unique(filled)
    k = len(distinct)
    if k < 2:
        raise UploadError(
            f"the target {cell(name)} has one value ({cell(filled.iloc[0])}) in every row: nothing to learn"
        )
    labels = _labels(distinct, numeric) if k <= MAX_CLASSES else ()
    whole = numeric and bool(np.all(np.asarray(distinct, float) == np.round(np.asarray(distinct, float))))
    allowed = tuple(
        kind
        for kind, ok in ((BINARY, k == 2), (MULTICLASS, 2 <= k <= MAX_CLASSES), (REGRESSION, numeric))
        if ok
    )  # fmt: skip
    if not allowed:
        raise UploadError(
            f"the target {cell(name)} has {k:,} different text labels: at most {MAX_CLASSES} classes can be "
            "learnt; pick a column with a few classes or with numbers"
        )
    if k == 2:
        return Target(name, BINARY, allowed, labels, "two values: binary classification")
    if numeric and not (whole and k <= FEW_CLASSES):
        return Target(name, REGRESSION, allowed, (), f"numbers with {k:,} different values: regression")
    what = f"{k} whole numbers" if numeric else f"{k} text labels"
    return Target(name, MULTICLASS, allowed, labels, f"{what}: multiclass classification")


def _labels(distinct, numeric: bool) -> tuple[str, ...]:
    if numeric:
        return tuple(_number(v) for v in sorted(float(v) for v in distinct))
    return tuple(sorted(str(v) for v in distinct))


def _number(v: float) -> str:
    return str(int(v)) if v == int(v) else repr(float(v))  # numpy 2's repr of np.float64 names its type


# ---- a file prepared for training -------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A file with its target chosen: raw features (numbers, category codes, NaN where missing), the
    labels, and what was dropped or will be imputed. Its `name` is its dataset's name in settings."""

    name: str
    filename: str
    target: str
    kind: str
    labels: tuple[str, ...]  # class i is labels[i]; () for regression
    x: np.ndarray  # float32 [rows, columns]: numeric columns first, then categorical codes
    y: np.ndarray  # float32: class indices, or the target's values
    numeric: tuple[str, ...]
    categorical: tuple[tuple[str, tuple[str, ...]], ...]  # (column, its categories)
    separator: str = ","
    rows_in_file: int = 0
    dropped: tuple[tuple[str, str], ...] = ()  # (column, why)
    imputed: tuple[tuple[str, int], ...] = ()  # (column, cells to impute)
    notes: tuple[str, ...] = ()  # one line each: reading, rows without a target, text in numeric columns
    inferred: str = ""  # the inference in words
    columns: tuple[str, ...] = ()  # every column's name as regviz reads it (blank and repeated ones renamed)
    encoding: str = "utf-8"  # how the file was read: see Table
    skipped: int = 0
    width: int = 0

    @property
    def read_csv_kwargs(self) -> dict:
        """pandas.read_csv's arguments that read the file as regviz did (what the listing spells out)."""
        return read_csv_kwargs(self.separator, self.encoding, self.skipped, self.width, self.columns)

    @property
    def classes(self) -> int:
        """Output classes: 2 for binary, 1 for regression."""
        return problems.of_dataset(self.name)[1]

    @property
    def features(self) -> int:
        """The network's input width: numeric columns and one column per category."""
        return len(self.numeric) + sum(len(c) for _, c in self.categorical)

    def lines(self) -> list[str]:
        """Every notice, one line each, as the page and the command line show them."""
        out = list(self.notes)
        out += [f"column {cell(name)} dropped: {why}" for name, why in self.dropped]
        out += [
            f"column {cell(name)}: {count:,} missing value{'s' * (count != 1)} imputed "
            f"({'median' if name in self.numeric else 'most frequent'} of each run's training rows)"
            for name, count in self.imputed
        ]
        return out

    def dataset(self) -> Dataset:
        """The dataset: rows shuffled once (files are often sorted), a fifth kept for the test, a
        quarter of the rest for hold-out validation; each run fits the transforms on its training rows."""
        n = len(self.y)
        order = np.random.default_rng(0).permutation(n)
        n_test = max(1, round(TEST_SHARE * n))
        n_val = max(1, round(VALIDATION_SHARE * (n - n_test)))
        test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
        x, y = DenseRows(self.x), self.y
        description = f"{self.filename} (uploaded; target {self.target}, {self.inferred or self.kind})"
        return Dataset(
            self.name, self.name, x.select(train), y[train], x.select(val), y[val], x.select(test), y[test],
            description, self.kind, self.classes, prepare=self.transform, features=self.features,
            scale_target=self.kind == REGRESSION,
        )  # fmt: skip

    def transform(self, train: DenseRows, *others: DenseRows) -> tuple[DenseRows, ...]:
        """The features of these rows, with the imputations, scaling and encoding fit on `train` only."""
        # in float64: centring a float32 column near its limits overflows; a row far outside the training
        # rows' spread saturates at float32's limit rather than becoming inf
        fitted = self.pipeline().fit(train.values.astype(np.float64))
        out = (
            np.clip(fitted.transform(r.values.astype(np.float64)), -FLOAT32_MAX, FLOAT32_MAX)
            for r in (train, *others)
        )
        return tuple(DenseRows(o.astype(np.float32)) for o in out)

    def pipeline(self):
        """scikit-learn's ColumnTransformer for these columns (unfitted); categories are the file's, so
        every fold has the same input width, and one unseen in a fold's training rows encodes as zeros."""
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        k = len(self.numeric)
        parts = []
        if k:
            numeric = make_pipeline(
                SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
            )
            parts.append(("numeric", numeric, list(range(k))))
        if self.categorical:
            codes = [list(range(len(c))) for _, c in self.categorical]
            categorical = make_pipeline(
                SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                OneHotEncoder(
                    categories=codes, handle_unknown="ignore", sparse_output=False, dtype=np.float32
                ),
            )  # fmt: skip
            parts.append(("categorical", categorical, list(range(k, k + len(self.categorical)))))
        return ColumnTransformer(parts)

    def to_payload(self) -> bytes:
        """The prepared file as bytes (what a worker process receives; never written to disk)."""
        meta = {
            "name": self.name, "filename": self.filename, "target": self.target, "kind": self.kind,
            "labels": self.labels, "numeric": self.numeric, "categorical": self.categorical,
            "separator": self.separator, "rows_in_file": self.rows_in_file, "dropped": self.dropped,
            "imputed": self.imputed, "notes": self.notes, "inferred": self.inferred, "columns": self.columns,
            "encoding": self.encoding, "skipped": self.skipped, "width": self.width,
        }  # fmt: skip
        buffer = io.BytesIO()
        np.savez(buffer, x=self.x, y=self.y, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_payload(cls, payload: bytes) -> Prepared:
        """Inverse of to_payload."""
        with np.load(io.BytesIO(payload), allow_pickle=False) as f:
            meta = json.loads(f["meta"].tobytes().decode())
            x, y = f["x"], f["y"]
        meta["categorical"] = tuple((name, tuple(c)) for name, c in meta["categorical"])
        for key in ("labels", "numeric", "notes", "columns"):
            meta[key] = tuple(meta[key])
        meta["dropped"] = tuple(tuple(d) for d in meta["dropped"])
        meta["imputed"] = tuple((name, int(count)) for name, count in meta["imputed"])
        return cls(x=x, y=y, **meta)


def prepare(table: Table, target: str, kind: str | None = None) -> Prepared:
    """The table ready to train on with `target` as the label (its problem type inferred unless given)."""
    if target not in table.frame.columns:
        raise UploadError(f"{table.filename} has no column {cell(target)}")
    labels = table.frame[target]
    inferred = infer_target(target, labels)
    kind = kind or inferred.kind
    if kind not in inferred.allowed:
        raise UploadError(
            f"the target {cell(target)} cannot be {kind}: it allows {', '.join(inferred.allowed)}"
        )
    y, keep, notes = _encode_target(labels, kind, inferred)
    frame = table.frame[keep]
    if len(frame) < MIN_ROWS:
        raise UploadError(
            f"{table.filename} has {len(frame)} row{'s' * (len(frame) != 1)} with a target; at least "
            f"{MIN_ROWS} are needed (a fifth is kept for the test and a quarter of the rest validates)"
        )
    columns = [column(name, frame[name]) for name in frame.columns if name != target]
    used = [c for c in columns if c.kind != "dropped"]
    dropped = tuple((c.name, c.why) for c in columns if c.kind == "dropped")
    if not used:
        reasons = "; ".join(f"{cell(n, 20)}: {why}" for n, why in dropped[:2])
        reasons += f"; {len(dropped) - 2} more dropped" if len(dropped) > 2 else ""  # one line, bounded
        raise UploadError(f"{table.filename} has no usable feature besides the target ({reasons})")
    numeric = [c for c in used if c.kind == "numeric"]
    categorical = [c for c in used if c.kind == "categorical"]
    width = len(numeric) + sum(len(c.categories) for c in categorical)
    if width > MAX_FEATURES:
        raise UploadError(
            f"{table.filename} has {width:,} features after one-hot encoding; at most {MAX_FEATURES:,} "
            "can be used"
        )
    x = np.column_stack([c.values for c in numeric + categorical]).astype(np.float32)
    notes = [*table.notes, *notes]
    notes += [
        f"column {cell(c.name)}: {c.non_numeric:,} text value{'s' * (c.non_numeric != 1)} among numbers read "
        "as missing"
        for c in numeric
        if c.non_numeric
    ]
    imputed = tuple((c.name, c.missing) for c in numeric + categorical if c.missing)
    labels_kept = inferred.labels if kind != REGRESSION else ()  # classification: at most MAX_CLASSES
    key = hashlib.sha256(f"{UPLOAD_VERSION}\n{table.digest}\n{target}\n{kind}".encode()).hexdigest()[:16]
    classes = {BINARY: 2, MULTICLASS: len(labels_kept), REGRESSION: 1}[kind]
    return Prepared(
        problems.upload_name(kind, classes, key), table.filename, target, kind, labels_kept, x, y,
        tuple(c.name for c in numeric), tuple((c.name, c.categories) for c in categorical), table.separator,
        len(table.frame), dropped, imputed, tuple(notes),
        inferred.why if kind == inferred.kind else f"{kind}, chosen (inferred: {inferred.why})",
        tuple(table.frame.columns), table.encoding, table.skipped, table.width,
    )  # fmt: skip


def _encode_target(cells: pd.Series, kind: str, target: Target):
    """(y, rows kept, notes): class indices or values; rows without a usable target are left out."""
    text, empty = _text(cells)
    notes = []
    if kind == REGRESSION:
        y = _numbers(text.where(~empty), FLOAT32_MAX)
        keep = np.isfinite(y)
    else:
        numbers = _numbers(text.where(~empty))
        names = np.array([_number(v) if np.isfinite(v) else "" for v in numbers], dtype=object)
        as_text = names if all(label_is_number(label) for label in target.labels) else text.to_numpy()
        index = {label: i for i, label in enumerate(target.labels)}
        y = np.array([index.get(str(v), -1) for v in as_text], dtype=np.float64)
        y[empty] = -1
        keep = y >= 0
        counts = np.bincount(y[keep].astype(int), minlength=len(target.labels))
        if counts.max(initial=0) < 2:
            raise UploadError(
                f"every class of the target {cell(target.name)} has one row: a classifier needs several rows "
                "per class (for a quantity, choose regression)"
            )
        single = [target.labels[i] for i in np.flatnonzero(counts == 1)]
        if single:
            shown = ", ".join(cell(s) for s in single[:5]) + (" ..." if len(single) > 5 else "")
            notes.append(f"{len(single)} class{'es' * (len(single) != 1)} with one row only: {shown}")
    missing = int((~keep).sum())
    if missing:
        notes.insert(0, f"{missing:,} row{'s' * (missing != 1)} without a target value left out")
    return y[keep].astype(np.float32), keep, notes


def label_is_number(label: str) -> bool:
    """True for a label written as a number (the class of a numeric target)."""
    try:
        return math.isfinite(float(label))
    except ValueError:
        return False


__all__ = ["Column", "Prepared", "Table", "Target", "UploadError", "column", "infer_target", "prepare",
           "read_table", "safe_filename"]  # fmt: skip
