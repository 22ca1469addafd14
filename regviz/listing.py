"""The Keras listing of a run's settings: the whole experiment as one plain script in the style of the
book's listings (Deep Learning with Python, chapters 3-4). Text only, so the page server needs no Keras.

The script loads the data (the file the app read, else `keras.datasets`; an uploaded CSV with pandas
and the app's scikit-learn transforms), prepares and splits it as the app does (regviz/data/,
regviz/splits.py), fits with the settings, prints the history and plots it when matplotlib is there.
Run as it is on the same data, it starts from the app's initial weights (`keras.utils.set_random_seed`,
which regviz's seeding equals) and trains on the app's batches (the rows in a new NumPy permutation
of the seed every epoch), so its curves are the app's to rounding (tests/test_listing.py).
Its network and compile step are at module level, so that `exec` of the listing gives `model`
without loading any data; the experiment runs under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from regviz import problems
from regviz.data.book import (
    BOSTON_PATH_ENV,
    BOSTON_VALIDATION,
    IMDB_PATH_ENV,
    REUTERS_PATH_ENV,
    REUTERS_VALIDATION,
    VALIDATION_SIZE,
)
from regviz.data.rows import NUM_WORDS
from regviz.noise import NOISE_STREAM
from regviz.settings import Settings
from regviz.splits import HOLDOUT, ITERATED

if TYPE_CHECKING:
    from regviz.data.csvfile import Prepared

INDENT = "    "


def keras_code(
    settings: Settings, num_features: int = NUM_WORDS, upload: Prepared | None = None, path: str | None = None
) -> str:
    """The whole experiment of these settings as a runnable script: data, preparation, split, fit,
    history and plot; for an uploaded file, one that reads it (from `path`, else its file name)."""
    if upload is not None and upload.name != settings.dataset:
        raise ValueError(f"the upload {upload.name} is not the settings' dataset {settings.dataset}")
    width = upload.features if upload is not None else num_features
    lines = [
        *_docstring(settings, upload),
        *_imports(upload),
        f"SEED = {settings.seed}  # the app's seed: initial weights, dropout and the order of the batches",
        "",
        "",
        *_build_code(settings, width),
        *_helpers_code(settings, upload, width),
        *_train_code(settings),
        *_report_code(settings),
        "model = build_model()  # the network on its own (model.summary()); each run below trains a new one",
        "",
        "",
        'if __name__ == "__main__":',
        *_indented(_main_code(settings, upload, path)),
    ]
    return "\n".join(lines) + "\n"


def _indented(lines: list[str]) -> list[str]:
    return [INDENT + line if line else "" for line in lines]


# ---- what the script is -----------------------------------------------------------------------------

DATA_NAMES = {
    "imdb": "IMDB reviews", "reuters": "Reuters newswires", "boston": "Boston Housing",
    "synthetic": "synthetic IMDB-shaped reviews", "topics": "synthetic Reuters-shaped newswires",
    "houses": "synthetic Boston-shaped tracts",
}  # fmt: skip


def _docstring(settings: Settings, upload: Prepared | None) -> list[str]:
    s = settings
    data = f"{upload.filename}, target {upload.target!r}" if upload else DATA_NAMES[s.dataset]
    penalties = [f"{name} {value!r}" for name, value in (("L1", s.l1), ("L2", s.l2)) if value]
    penalties += [f"dropout {s.dropout!r}"] if s.dropout else []
    facts = [
        f"{data} ({problems.of_dataset(s.dataset)[0].kind})",
        f"hidden layers {'-'.join(map(str, s.widths()))}, {', '.join(penalties) or 'no regularization'}",
        f"{s.optimizer} at learning rate {s.learning_rate!r}, batches of {s.batch_size}, {s.epochs} epochs",
        f"{_protocol_words(s)}, training data used {s.train_fraction:.0%}, seed {s.seed}",
    ]
    if s.label_noise:
        facts.append(f"label noise {s.label_noise!r}: that share of the training labels replaced")
    return [
        '"""The experiment regviz showed, as plain Keras in the style of Deep Learning with Python:',
        *[f"{fact}." for fact in facts],
        "Run it as it is (python experiment.py): it trains as the app did, prints the history and plots",
        'it when matplotlib is installed. Same data and seed: the app\'s curves, to rounding."""',
        "",
    ]


def _protocol_words(s: Settings) -> str:
    if s.validation == HOLDOUT:
        return "hold-out validation"
    repeats = f", {s.repeats} times on reshuffled rows" if s.validation == ITERATED else ""
    return f"{s.folds}-fold K-fold validation{repeats}"


def _imports(upload: Prepared | None) -> list[str]:
    lines = ["import math", "", "import keras", "import numpy as np"]
    if upload is not None:
        lines.append("import pandas as pd")
    lines.append("from keras import layers, regularizers")
    if upload is not None:
        lines += [
            "from sklearn.compose import ColumnTransformer",
            "from sklearn.impute import SimpleImputer",
            "from sklearn.pipeline import make_pipeline",
            "from sklearn.preprocessing import OneHotEncoder, StandardScaler",
        ]
    return [*lines, ""]


# ---- the network ------------------------------------------------------------------------------------


def _build_code(settings: Settings, width: int) -> list[str]:
    problem = problems.of_dataset(settings.dataset)[0]
    return [
        "def build_model():",
        '    """The network of the settings, compiled; seeded as the app seeds every run (and fold), so it',
        '    starts from the app\'s initial weights and drops the units the app drops."""',
        "    keras.utils.set_random_seed(SEED)",
        *_indented(_model_code(settings, str(width))),
        *_indented(_compile_code(settings, problem)),
        "    return model",
        "",
        "",
    ]


def _model_code(settings: Settings, shape: str) -> list[str]:
    """The Sequential model on inputs of this shape (a number, or code that gives it)."""
    reg = _regularizer_code(settings)
    lines = ["model = keras.Sequential([", f"    keras.Input(shape=({shape},)),"]
    for units in settings.widths():
        lines.append(f'    layers.Dense({units}, activation="relu"{reg}),')
        if settings.dropout:
            lines.append(f"    layers.Dropout({settings.dropout!r}),")
    problem, classes = problems.of_dataset(settings.dataset)
    head = f", activation={problem.activation!r}" if problem.activation else ""
    return lines + [f"    layers.Dense({problem.units(classes)}{head}),".replace("'", '"'), "])"]


def _regularizer_code(settings: Settings) -> str:
    if settings.l1 and settings.l2:
        return f", kernel_regularizer=regularizers.l1_l2(l1={settings.l1!r}, l2={settings.l2!r})"
    if settings.l1:
        return f", kernel_regularizer=regularizers.l1({settings.l1!r})"
    if settings.l2:
        return f", kernel_regularizer=regularizers.l2({settings.l2!r})"
    return ""


METRICS_CODE = {  # keras's names of each problem type's metrics, named so that every fold's match
    "binary": [
        '"accuracy"', 'keras.metrics.AUC(name="auc")', 'keras.metrics.Precision(name="precision")',
        'keras.metrics.Recall(name="recall")',
    ],
    "multiclass": ['"accuracy"', 'keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")'],
    "regression": ['"mae"'],
}  # fmt: skip
DATA_LOSS_CODE = {  # the loss alone, as a metric: keras's loss and val_loss include the penalty
    "binary": 'keras.metrics.BinaryCrossentropy(name="data_loss")',
    "multiclass": 'keras.metrics.SparseCategoricalCrossentropy(name="data_loss")',
    "regression": 'keras.metrics.MeanSquaredError(name="data_loss")',
}


def _compile_code(settings: Settings, problem) -> list[str]:
    names = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}
    opt = f"keras.optimizers.{names[settings.optimizer]}(learning_rate={settings.learning_rate!r})"
    metrics = list(METRICS_CODE[problem.kind])
    if _penalised(settings):
        metrics.append(DATA_LOSS_CODE[problem.kind])
    one_line = f"    metrics=[{', '.join(metrics)}],"
    if len(one_line) <= WIDTH:
        listed = [one_line]
    else:
        listed = ["    metrics=[", *[f"        {metric}," for metric in metrics], "    ],"]
    why = "    # val_loss includes the penalty; val_data_loss, the loss alone, is the curve the app plots"
    return [
        "model.compile(",
        f"    optimizer={opt},",
        f'    loss="{problem.keras_loss}",',
        *([why] if _penalised(settings) else []),
        *listed,
        ")",
    ]


def _penalised(settings: Settings) -> bool:
    return bool(settings.l1 or settings.l2)


# ---- the script's helpers: preparing rows, training, the history ------------------------------------


def _helpers_code(settings: Settings, upload: Prepared | None, width: int) -> list[str]:
    return [*_rows_code(settings, upload, width), *_noise_code(settings)]


def _rows_code(settings: Settings, upload: Prepared | None, width: int) -> list[str]:
    if upload is not None:
        return []
    if problems.is_tabular(settings.dataset):
        return [
            "def standardize(train, *others):",
            '    """Each feature minus the training rows\' mean, over their standard deviation (the book\'s',
            '    Boston step), the other rows by the same statistics; a constant feature stays 0."""',
            "    mean, std = train.mean(axis=0), train.std(axis=0)",
            "    std[std == 0] = 1.0",
            "    return [(part - mean) / std for part in (train, *others)]",
            "",
            "",
        ]
    return [
        f"def vectorize_sequences(sequences, dimension={width}):",
        '    """Multi-hot, as the book\'s listing: a 1 at each word index of each sequence; indices beyond',
        '    the vocabulary (a file may keep every word) are left out, as the app leaves them."""',
        '    results = np.zeros((len(sequences), dimension), dtype="float32")',
        "    for i, sequence in enumerate(sequences):",
        "        sequence = np.asarray(sequence)",
        "        results[i, sequence[sequence < dimension]] = 1.0",
        "    return results",
        "",
        "",
    ]


def _noise_code(settings: Settings) -> list[str]:
    """def noisy(labels): the app's label noise (regviz/noise.py), step for step, so the same labels flip."""
    f = settings.label_noise
    if not f:
        return []
    problem, classes = problems.of_dataset(settings.dataset)
    if problem.kind == problems.REGRESSION:
        what = "another training row's target (an offset of 1 to n-1 rows)"
        replace = "noisy[rows] = flat[(rows + rng.integers(1, n, size=len(rows))) % n]"
    else:
        what = "another class, drawn uniformly (an offset of 1 to classes-1)"
        replace = f"noisy[rows] = (flat[rows] + rng.integers(1, {classes}, size=len(rows))) % {classes}"
    return [
        "def noisy(labels):",
        f'    """Label noise {f!r}, as the app adds it to a run\'s training labels (never to its validation',
        f"    ones): round({f!r} * n) of them, chosen by the seed, each replaced by",
        f'    {what}."""',
        "    n = len(labels)",
        f"    rng = np.random.default_rng([SEED, {NOISE_STREAM:#x}])  # the app's stream for the noise",
        f"    rows = rng.permutation(n)[: round({f!r} * n)]",
        "    flat = labels.reshape(n)  # binary labels are a column",
        "    noisy = flat.copy()",
        f"    {replace}",
        "    return noisy.reshape(labels.shape)",
        "",
        "",
    ]


def _train_code(settings: Settings) -> list[str]:
    b = settings.batch_size
    return [
        "def batches(x, y, batch_size):",
        '    """The training rows in batches, in a new order every epoch drawn by NumPy from the seed as the',
        '    app draws it (fit\'s own shuffle gives other batches, and curves apart by seed noise)."""',
        "    rng = np.random.default_rng(SEED)",
        "    while True:",
        "        order = rng.permutation(len(y))",
        "        for start in range(0, len(y), batch_size):",
        "            rows = order[start : start + batch_size]",
        "            yield x[rows], y[rows]",
        "",
        "",
        "def train(x_train, y_train, x_val, y_val, verbose=2):",
        '    """A new model fit on the training rows, validated on the others every epoch: its history."""',
        "    model = build_model()",
        "    fitted = model.fit(",
        f"        batches(x_train, y_train, batch_size={b}),",
        f"        steps_per_epoch=math.ceil(len(y_train) / {b}),",
        f"        epochs={settings.epochs},",
        "        validation_data=(x_val, y_val),",
        f"        validation_batch_size={b},",
        "        shuffle=False,  # the batches come in the app's order already",
        "        verbose=verbose,",
        "    )",
        "    return fitted.history",
        "",
        "",
    ]


def _report_code(settings: Settings) -> list[str]:
    problem = problems.of_dataset(settings.dataset)[0]
    loss = "data_loss" if _penalised(settings) else "loss"
    plotted = (loss, problem.train_metric)
    return [
        "def print_history(history):",
        '    """One line per epoch: every loss and metric, training and validation."""',
        '    print("epoch", *(f"{name:>14}" for name in history))',
        "    for epoch, values in enumerate(zip(*history.values()), 1):",
        '        print(f"{epoch:5d}", *(f"{value:14.6g}" for value in values))',
        "",
        "",
        "def plot_history(history):",
        '    """The loss and the main metric: training as dots, validation as a line, as the book."""',
        "    try:",
        "        import matplotlib.pyplot as plt",
        "    except ImportError:  # the printed history is the whole result then",
        '        print("matplotlib is not installed: no plot")',
        "        return",
        '    epochs = range(1, len(history["loss"]) + 1)',
        f"    for name in {plotted!r}:".replace("'", '"'),
        "        plt.figure()",
        '        plt.plot(epochs, history[name], "bo", label=f"Training {name}")',
        '        plt.plot(epochs, history[f"val_{name}"], "b", label=f"Validation {name}")',
        '        plt.title(f"Training and validation {name}")',
        '        plt.xlabel("Epochs")',
        "        plt.ylabel(name)",
        "        plt.legend()",
        "    plt.show()",
        "",
        "",
    ]


# ---- the experiment: data, runs, split --------------------------------------------------------------


def _main_code(settings: Settings, upload: Prepared | None, path: str | None) -> list[str]:
    if upload is not None:
        data = _upload_code(upload, path or upload.filename)
    else:
        data = _book_data_code(settings.dataset)
    if problems.of_dataset(settings.dataset)[0].kind == problems.BINARY:
        data.append("y = y.reshape(-1, 1)  # a column, as the model's one output")
    return [
        *data,
        "",
        *_run_code(settings, upload),
        "",
        *_split_code(settings, upload),
        "",
        "print_history(history)",
        "plot_history(history)",
    ]


KERAS_NAMES = {"imdb": "imdb", "reuters": "reuters", "boston": "boston_housing"}
PATH_ENVS = {"imdb": IMDB_PATH_ENV, "reuters": REUTERS_PATH_ENV, "boston": BOSTON_PATH_ENV}
OFFLINE = {"synthetic", "topics", "houses"}


def local_file(dataset: str) -> str:
    """The local file the app reads this dataset from ($REGVIZ_IMDB_PATH and its kin), or ""."""
    return os.environ.get(PATH_ENVS.get(dataset, ""), "")


def _book_data_code(dataset: str) -> list[str]:
    """The training split as `train_data` (word-index sequences) or `x` (features), and `y`."""
    tabular = problems.is_tabular(dataset)
    if dataset in OFFLINE:
        lines = _offline_code(dataset, tabular)
    else:
        lines = _load_code(dataset)
        if tabular:
            lines.append('x = np.asarray(train_data, dtype="float32")')
    return [*lines, *([] if dataset in OFFLINE else ['y = np.asarray(train_labels, dtype="float32")'])]


def _load_code(dataset: str) -> list[str]:
    name, env = KERAS_NAMES[dataset], PATH_ENVS[dataset]
    path = local_file(dataset)
    if path:
        return [
            f"# {DATA_NAMES[dataset]} from the file the app read (${env}), in keras.datasets.{name}'s",
            "# shapes (keras.datasets checks its own file's hash, so it cannot be pointed at this one)",
            f"with np.load({path!r}, allow_pickle=True) as f:",
            '    train_data, train_labels = f["x_train"], f["y_train"]',
        ]
    words = "" if dataset == "boston" else f"num_words={NUM_WORDS}"
    return [
        f"# {DATA_NAMES[dataset]}, downloaded by keras the first time; the test split is not used here",
        f"(train_data, train_labels), _ = keras.datasets.{name}.load_data({words})",
    ]


def _offline_code(dataset: str, tabular: bool) -> list[str]:
    lines = [
        f"# {DATA_NAMES[dataset]}, generated by regviz from a fixed seed (the app's stand-in when the",
        "# book's data cannot be had): this part needs regviz importable",
        "from regviz.data import offline",
        "",
        f"rows, y = offline.{dataset}().whole_training_split()  # the hold-out rows first, as in the app",
    ]
    if tabular:
        return [*lines, "x = rows.values"]
    return [
        *lines,
        "train_data = np.fromiter(  # each row's word indices, as keras.datasets gives them",
        "    (rows.indices[a:b] for a, b in zip(rows.indptr[:-1], rows.indptr[1:])),",
        "    dtype=object,",
        "    count=len(y),",
        ")",
    ]


def _run_code(settings: Settings, upload: Prepared | None) -> list[str]:
    """def run(train_rows, val_rows): one run as the app trains it, its preparation fit on its rows."""
    head = ["def run(train_rows, val_rows, verbose=2):"]
    if upload is not None:
        prepare = [
            "    x_train = features.fit_transform(x.iloc[train_rows])  # fit on the run's training rows only",
            "    x_val = features.transform(x.iloc[val_rows])",
        ]
    elif problems.is_tabular(settings.dataset):
        prepare = [
            "    # standardised by the run's own training rows (the book does it once before the folds;",
            "    # the app, and so this script, for each fold: no statistic of its validation rows leaks in)",
            "    x_train, x_val = standardize(x[train_rows], x[val_rows])",
        ]
    else:
        prepare = [
            "    x_train = vectorize_sequences(train_data[train_rows])",
            "    x_val = vectorize_sequences(train_data[val_rows])",
        ]
    doc = ['    """One run as the app trains it: a new model fit on these rows, validated on those."""']
    labels = ["    y_train = noisy(y[train_rows])  # label noise on the training rows only"]
    if not settings.label_noise:
        labels = ["    y_train = y[train_rows]"]
    if upload is None or upload.kind != problems.REGRESSION:
        fit = "    return train(x_train, y_train, x_val, y[val_rows], verbose)"
        return [*head, *doc, *prepare, *labels, fit]
    return [
        *head,
        *doc,
        *prepare,
        *labels,
        "    scale = y_train.std() or 1.0  # the app trains on the target over its training spread",
        "    history = train(x_train, y_train / scale, x_val, y[val_rows] / scale, verbose)",
        '    for name in ("mae", "val_mae"):  # absolute errors back in the target\'s unit, as the app shows',
        "        history[name] = [value * scale for value in history[name]]",
        "    return history",
    ]


def _split_code(settings: Settings, upload: Prepared | None) -> list[str]:
    lines = _upload_rows_code(settings) if upload is not None else []
    if settings.validation == HOLDOUT:
        lines += _holdout_code(settings, upload)
        return [*lines, *_fraction_code(settings), "history = run(train_rows, val_rows)"]
    return [*lines, *_kfold_code(settings, upload)]


def _upload_rows_code(settings: Settings) -> list[str]:
    return [
        "# the app shuffles the rows once, with seed 0 (files are often sorted); a fifth is kept for the",
        "# final test (not used here), a quarter of the rest validates and the rest trains",
        "order = np.random.default_rng(0).permutation(len(y))",
        "num_test = max(1, round(0.2 * len(y)))",
    ]


def _holdout_code(settings: Settings, upload: Prepared | None) -> list[str]:
    if upload is not None:
        return [
            "num_val = max(1, round(0.25 * (len(y) - num_test)))",
            "val_rows, train_rows = order[num_test : num_test + num_val], order[num_test + num_val :]",
        ]
    if settings.dataset in ("imdb", "synthetic"):
        first = [
            f"# hold-out: the first {VALIDATION_SIZE:,} reviews validate (half of a file of fewer than",
            f"# {int(1.5 * VALIDATION_SIZE):,}), the rest train",
            f"num_val = {VALIDATION_SIZE} if len(y) >= {int(1.5 * VALIDATION_SIZE)} else len(y) // 2",
        ]
    elif settings.dataset in ("reuters", "topics"):
        first = [
            f"num_val = {REUTERS_VALIDATION}  # hold-out: the first {REUTERS_VALIDATION:,} newswires "
            "validate, the rest train"
        ]
    else:
        n = BOSTON_VALIDATION
        first = [f"num_val = {n}  # hold-out: the first {n} tracts validate, the rest train"]
    return [*first, "val_rows, train_rows = np.arange(num_val), np.arange(num_val, len(y))"]


def _fraction_code(settings: Settings) -> list[str]:
    f = settings.train_fraction
    if f >= 1:
        return []
    cut = f"train_rows = train_rows[: math.ceil({f!r} * len(train_rows))]"
    return [f"{cut}  # training data used: the first {f:.0%}"]


def _kfold_code(settings: Settings, upload: Prepared | None) -> list[str]:
    k = settings.folds
    rows = (
        "rows = order[num_test:]  # the whole training split: its validation rows, then the rest"
        if upload is not None
        else "rows = np.arange(len(y))  # the whole training split, in its order"
    )
    lines = [
        f"# {k}-fold K-fold: fold i validates on the i-th of {k} parts of the rows, a new model trains on",
        "# the others; the curves are the folds' mean",
        rows,
        f"bounds = np.linspace(0, len(rows), {k} + 1).round().astype(int)  # the parts' edges",
        "histories = []",
    ]
    fold = [
        f'print(f"fold {{fold + 1}} of {k}")',
        "val_rows = rows[bounds[fold] : bounds[fold + 1]]",
        "train_rows = np.concatenate([rows[: bounds[fold]], rows[bounds[fold + 1] :]])",
        *_fraction_code(settings),
        "histories.append(run(train_rows, val_rows, verbose=0))",
    ]
    loop = [f"for fold in range({k}):", *_indented(fold)]
    if settings.validation == ITERATED:
        loop = [
            f"for repeat in range({settings.repeats}):",
            "    # each repeat reshuffles the rows (seeded by the seed and the repeat), as the app does",
            f'    print(f"repeat {{repeat + 1}} of {settings.repeats}")',
            "    rows = whole[np.random.default_rng([SEED, repeat, 0x5EED]).permutation(len(whole))]",
            *_indented(loop),
        ]
        lines[2] = lines[2].replace("rows = ", "whole = ", 1)
        lines[3] = lines[3].replace("len(rows)", "len(whole)")
    mean = "history = {name: np.mean([h[name] for h in histories], axis=0).tolist() for name in histories[0]}"
    return [*lines, *loop, mean]


# ---- an uploaded file: reading, target, features and transforms -------------------------------------


def _upload_code(upload: Prepared, path: str) -> list[str]:
    """The file read, its target `y`, its features `x` and the app's `features` transform (unfitted)."""
    return [
        *_read_code(upload, path),
        *_target_code(upload),
        *_features_code(upload),
        *_transform_code(upload),
    ]


def read_csv_kwargs(upload: Prepared) -> dict:
    """pandas.read_csv's keyword arguments that read the file as the app read it."""
    # the file's own (separator, encoding, header) where the description has them, then every cell as text
    kwargs = dict(getattr(upload, "read_csv_kwargs", None) or {"sep": upload.separator})
    as_text = {"dtype": str, "keep_default_na": False, "skipinitialspace": True}
    return {**kwargs, **{k: v for k, v in as_text.items() if k not in kwargs}}


def _value_code(value) -> str:
    """A keyword argument's value as code: a type by its name (dtype=str), anything else by repr."""
    return value.__name__ if isinstance(value, type) else repr(value)


def _call_code(head: str, first: str, args: list[str]) -> list[str]:
    """`head(first, args...)` on one line, or with the other arguments packed on the lines after it,
    each at most WIDTH long (the first stays on the first line: the file read is plain to see)."""
    one = f"{head}({', '.join([first, *args])})"
    if len(one) <= WIDTH:
        return [one]
    rows, row = [], INDENT
    for arg in args:
        if row.strip() and len(row) + len(arg) + 1 > WIDTH:
            rows.append(row.rstrip())
            row = INDENT
        row += f"{arg}, "
    return [f"{head}({first},", *rows, row.rstrip(), ")"]


def _read_code(upload: Prepared, path: str) -> list[str]:
    from regviz.data.csvfile import MISSING

    args = [f"{key}={_value_code(value)}" for key, value in read_csv_kwargs(upload).items()]
    return [
        "# the file as the app reads it: every cell as text, stripped, the app's missing ones (in any",
        "# case) empty; names as the app's",
        *_call_code("frame = pd.read_csv", repr(path), args),
        "frame = frame.apply(lambda column: column.str.strip())",
        f"missing = {sorted(MISSING)!r}",
        "frame = frame.mask(frame.apply(lambda column: column.str.lower().isin(missing)))",
        *_names_code(upload),
    ]


def _names_code(upload: Prepared) -> list[str]:
    """The app's column names: pandas' own, cleaned, unless the app renamed a blank or repeated one
    (pandas says "Unnamed: 3" and "a.1"), then every name written out."""
    renamed = any(re.fullmatch(r"column \d+|.*'", name) for name in upload.columns)
    if renamed:
        return _list_code("frame.columns", list(upload.columns), "  # as the app names them")
    return ['frame.columns = [" ".join(str(name).split())[:60] for name in frame.columns]']


def _target_code(upload: Prepared) -> list[str]:
    from regviz.data.csvfile import label_is_number

    column = f"frame[{upload.target!r}]"
    numbers = upload.kind == problems.REGRESSION or all(label_is_number(label) for label in upload.labels)
    lines = [f'target = pd.to_numeric({column}, errors="coerce")' if numbers else f"target = {column}"]
    if upload.kind != problems.REGRESSION:
        labels = [float(label) if numbers else label for label in upload.labels]
        lines += _list_code("labels", labels, "  # class i is labels[i], as in the app")
        lines.append("target = target.map({label: i for i, label in enumerate(labels)})")
    return [
        *lines,
        'frame, y = frame[target.notna()], target.dropna().to_numpy("float32")  # rows without a target: out',
    ]


def _features_code(upload: Prepared) -> list[str]:
    lines = [f"# dropped, as by the app: {name!r}, {why}" for name, why in upload.dropped[:SHOWN]]
    if len(upload.dropped) > SHOWN:
        lines.append(f"# ... and {len(upload.dropped) - SHOWN:,} more columns")
    lines += _list_code("numeric", list(upload.numeric))
    lines += _list_code("categorical", [name for name, _ in upload.categorical])
    lines.append("x = frame[numeric + categorical].copy()")
    if upload.numeric:
        lines.append(
            'x[numeric] = x[numeric].apply(pd.to_numeric, errors="coerce")  # text among numbers: missing'
        )
    return lines


SHOWN = 10  # dropped columns named in the listing
WIDTH = 100  # of the listing's lines of names


def _list_code(name: str, items: list, comment: str = "") -> list[str]:
    """`name = [...]` of these values' reprs, wrapped at WIDTH so a wide file's listing stays readable."""
    one = f"{name} = {items!r}{comment}"
    if len(one) <= WIDTH:
        return [one]
    rows, row = [], []
    for text in (f"{item!r}," for item in items):
        if row and len(" ".join(["   ", *row, text])) > WIDTH:
            rows.append(" ".join(["   ", *row]))
            row = []
        row.append(text)
    return [f"{name} = [{comment}", *rows, " ".join(["   ", *row]), "]"]


def _transform_code(upload: Prepared) -> list[str]:
    """The ColumnTransformer of Prepared.pipeline(), on column names, with the file's categories."""
    parts = ["features = ColumnTransformer(["]
    if upload.numeric:
        parts += [
            '    ("numeric", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),',
            "                              StandardScaler()), numeric),",
        ]
    if upload.categorical:
        parts += [
            '    ("categorical", make_pipeline(',
            '        SimpleImputer(strategy="most_frequent", keep_empty_features=True),',
            '        OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False),',
            "    ), categorical),",
        ]
        parts = [
            "# the file's categories, as the app takes them: every run has the same inputs, and a category",
            "# none of a run's training rows has is all zeros",
            "categories = [sorted(x[name].dropna().unique()) for name in categorical]",
            *parts,
        ]
    return [*parts, "])"]
