"""Problem types (the workflow's first step): binary, multiclass, regression, and what follows from each:
the output layer, the loss (the data loss the charts show), and the metrics. No tensorflow here.

Every other module asks this one rather than testing a dataset's name: a new problem type is one row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"


@dataclass(frozen=True)
class Metric:
    """One validation metric of a record: its field, its label, which way is better, its format."""

    field: str  # EpochRecord attribute
    label: str
    higher_is_better: bool = True
    unit: str = ""  # written after the value, e.g. the target's unit


@dataclass(frozen=True)
class Problem:
    """A problem type: its head, its loss and its metrics (the first is the main one)."""

    kind: str
    loss: str  # the data loss, as the book names it
    keras_loss: str  # its name in keras, for the code listing
    activation: str | None  # the output layer's activation
    metrics: tuple[Metric, ...]
    train_metric: str | None  # the training-side counterpart of the main metric, an EpochRecord field

    def units(self, classes: int) -> int:
        """Output units: one per class for multiclass, else one."""
        return classes if self.kind == MULTICLASS else 1

    @property
    def main(self) -> Metric:
        """The metric a sweep, a reading and the command line's summary use."""
        return self.metrics[0]


PROBLEMS = {
    BINARY: Problem(
        BINARY, "binary cross-entropy", "binary_crossentropy", "sigmoid",
        (
            Metric("val_accuracy", "validation accuracy"),
            Metric("val_auc", "validation ROC AUC"),
            Metric("val_precision", "validation precision"),
            Metric("val_recall", "validation recall"),
        ),
        "accuracy",
    ),
    MULTICLASS: Problem(
        MULTICLASS, "categorical cross-entropy", "sparse_categorical_crossentropy", "softmax",
        (Metric("val_accuracy", "validation accuracy"), Metric("val_top3", "validation top-3 accuracy")),
        "accuracy",
    ),
    REGRESSION: Problem(
        REGRESSION, "mean squared error", "mse", None,
        (Metric("val_mae", "validation MAE", higher_is_better=False),),
        "mae",
    ),
}  # fmt: skip


# every dataset's problem type and number of classes, known without loading it (the model's head and
# the trainer's shape depend on them before any data is read)
DATASETS = {
    "imdb": (BINARY, 2),
    "synthetic": (BINARY, 2),
    "reuters": (MULTICLASS, 46),
    "topics": (MULTICLASS, 46),
    "boston": (REGRESSION, 1),
    "houses": (REGRESSION, 1),
}
# datasets of continuous features (dense rows, standardised on the training part), not multi-hot words
TABULAR = frozenset({"boston", "houses"})
# an uploaded file's dataset: its problem type and classes in the name, so that every process knows
# them without the file (a share link carries the name, never the data), then a hash of the file's
# content, its target and its type
UPLOAD = re.compile(r"csv-(binary|multiclass|regression)-([0-9]{1,3})-([0-9a-f]{16})")


def upload_name(kind: str, classes: int, key: str) -> str:
    """The dataset name of an uploaded file of this problem type, classes and content key."""
    return f"csv-{kind}-{classes}-{key}"


def is_upload(name: str) -> bool:
    """True for an uploaded file's dataset name (with classes its type can have)."""
    match = UPLOAD.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        return False
    classes = int(match[2])
    return classes == {BINARY: 2, REGRESSION: 1}.get(match[1], classes) and 1 <= classes <= 100


def is_tabular(name: str) -> bool:
    """Dense feature rows (the book's Boston, its offline twin, uploaded files), not multi-hot words."""
    return name in TABULAR or is_upload(name)


def problem(kind: str) -> Problem:
    """The Problem of a kind; raises KeyError for an unknown one."""
    return PROBLEMS[kind]


def of_dataset(name: str) -> tuple[Problem, int]:
    """A dataset's problem type and its number of classes (2 for binary, 1 for regression)."""
    if is_upload(name):
        match = UPLOAD.fullmatch(name)
        return PROBLEMS[match[1]], int(match[2])
    kind, classes = DATASETS[name]
    return PROBLEMS[kind], classes
