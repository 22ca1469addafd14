"""The book-style Keras listing of a run's settings: plain text, so the page server needs no Keras.

For an uploaded file the listing also reads it with pandas, splits it and spells out the app's
scikit-learn transforms (csvfile.Prepared.pipeline), so that it trains as it stands next to the file.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from regviz import problems
from regviz.settings import Settings

if TYPE_CHECKING:
    from regviz.data.csvfile import Prepared


def keras_code(
    settings: Settings, num_features: int = 10000, upload: Prepared | None = None, path: str | None = None
) -> str:
    """Runnable code in the style of the book's listings that builds and compiles this model; given the
    uploaded file of these settings, code that reads it (from `path`, else its file name) and trains."""
    if upload is not None and upload.name != settings.dataset:
        raise ValueError(f"the upload {upload.name} is not the settings' dataset {settings.dataset}")
    if upload is None:
        lines = ["import keras", "from keras import layers, regularizers", ""]
        lines += _model_code(settings, str(num_features))
    else:
        lines = _upload_code(upload, path or upload.filename, settings)
        lines += _model_code(settings, "x_train.shape[1]")
    problem = problems.of_dataset(settings.dataset)[0]
    lines += _compile_code(settings, problem) + _fit_code(settings, live=upload is not None)
    return "\n".join(lines) + "\n"


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


METRICS_CODE = {  # keras's names of each problem type's metrics
    "binary": '["accuracy", keras.metrics.AUC(), keras.metrics.Precision(), keras.metrics.Recall()]',
    "multiclass": '["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")]',
    "regression": '["mae"]',
}


def _compile_code(settings: Settings, problem) -> list[str]:
    names = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}
    opt = f"keras.optimizers.{names[settings.optimizer]}(learning_rate={settings.learning_rate!r})"
    return [
        f"model.compile(optimizer={opt},",
        f'              loss="{problem.keras_loss}",',
        f"              metrics={METRICS_CODE[problem.kind]})",
    ]


def _fit_code(settings: Settings, live: bool) -> list[str]:
    """The fit call: live when the listing defines the data (an uploaded file), else a comment."""
    mark = "" if live else "# "
    return [
        f"{mark}history = model.fit(x_train, y_train, epochs={settings.epochs},",
        f"{mark}                    batch_size={settings.batch_size},",
        f"{mark}                    validation_data=(x_val, y_val))",
    ]


# ---- an uploaded file: reading, target, split and transforms ----------------------------------------

UPLOAD_IMPORTS = [
    "import keras",
    "import pandas as pd",
    "from keras import layers, regularizers",
    "from sklearn.compose import ColumnTransformer",
    "from sklearn.impute import SimpleImputer",
    "from sklearn.model_selection import train_test_split",
    "from sklearn.pipeline import make_pipeline",
    "from sklearn.preprocessing import OneHotEncoder, StandardScaler",
    "",
]


def _upload_code(upload: Prepared, path: str, settings: Settings) -> list[str]:
    """Everything before the model: the file read, its target, the split and the fitted transforms."""
    return [
        *UPLOAD_IMPORTS,
        *_read_code(upload, path),
        *_target_code(upload),
        *_features_code(upload),
        *_split_code(upload, settings),
        *_transform_code(upload),
        "",
    ]


def _read_code(upload: Prepared, path: str) -> list[str]:
    from regviz.data.csvfile import MISSING

    return [
        "# every cell as text, stripped, the app's missing ones (in any case) empty; names as the app's",
        f"frame = pd.read_csv({path!r}, sep={upload.separator!r}, dtype=str, keep_default_na=False,",
        "                    skipinitialspace=True).apply(lambda column: column.str.strip())",
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


def _split_code(upload: Prepared, settings: Settings) -> list[str]:
    lines = [
        "# 20% kept for the test, a quarter of the rest validates (60/20/20, as the app; its shuffle",
        "# differs, so the rows in each part do)",
        "x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=0)",
        "x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.25, random_state=0)",
    ]
    if settings.validation != "holdout":
        times = f", {settings.repeats} times reshuffled" if settings.validation == "iterated" else ""
        lines.insert(
            0, f"# (the app validates these settings by {settings.folds}-fold K-fold{times}; here: hold-out)"
        )
    if upload.kind == problems.REGRESSION:
        lines += [
            "scale = y_train.std()  # the app divides the target by its training spread (MAE * scale: units)",
            "y_train, y_val, y_test = y_train / scale, y_val / scale, y_test / scale",
        ]
    return lines


def _transform_code(upload: Prepared) -> list[str]:
    """The ColumnTransformer of Prepared.pipeline(), on column names, fitted on the training rows only."""
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
            '        OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical),',
        ]
    return [
        *parts,
        "])",
        "x_train = features.fit_transform(x_train)  # imputed, scaled and encoded by the training rows only",
        "x_val, x_test = features.transform(x_val), features.transform(x_test)",
    ]
