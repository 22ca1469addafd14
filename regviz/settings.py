"""One run's settings: declared once, validated in one place, serialised for URL, CLI and store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from regviz import problems
from regviz.splits import HOLDOUT, ITERATED, KFOLD, PROTOCOLS

DATASETS = ("imdb", "reuters", "boston", "synthetic", "topics", "houses")  # problems.DATASETS: their types
OPTIMIZERS = ("rmsprop", "adam", "sgd")
# log-scale stops for the penalty sliders; 0 first so "off" is one step away
PENALTY_STEPS = (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
WIDTH_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BATCH_STEPS = (32, 64, 128, 256, 512, 1024, 2048)
FRACTION_STEPS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
RATE_STEPS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
# the book's experiments; each one keeps the seed (and the dataset, unless it names one) and resets the rest
PRESETS = {
    "Original 16-16": {"width": 16},
    "Smaller 4-4": {"width": 4},
    "Bigger 512-512": {"width": 512},
    "L2 0.001": {"l2": 0.001},
    "Dropout 0.5": {"dropout": 0.5},
    "L1 0.001": {"l1": 0.001},
    # chapter 3's multiclass example: Reuters' 46 topics, and its 4-unit information bottleneck
    "Reuters 64-64": {"dataset": "reuters", "width": 64},
    "Reuters bottleneck 64-4": {"dataset": "reuters", "width": 64, "last_width": 4},
    # chapter 3's regression: 4-fold K-fold; by 300 epochs the mean validation MAE has turned up
    "Boston 4-fold": {"dataset": "boston", "validation": "kfold", "folds": 4, "epochs": 300},
}


# the book's network for each dataset where it is not the IMDB one (chapter 3: Reuters 64-64); a run
# on the dataset starts from these, and its link leaves them out
# the book's Boston experiment: 64-64, batch 16, 4-fold K-fold; 300 epochs, enough for the mean
# validation loss (and MAE) to turn up
_TABULAR = {"width": 64, "batch_size": 16, "epochs": 300, "validation": "kfold"}
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "reuters": {"width": 64}, "topics": {"width": 64}, "boston": _TABULAR, "houses": _TABULAR,
}  # fmt: skip
# an uploaded file (unknown size): the book's tabular network on batches of 32, for 100 epochs, held out;
# the page suggests K-fold for a small file
UPLOAD_DEFAULTS: dict[str, Any] = {"width": 64, "batch_size": 32, "epochs": 100, "validation": HOLDOUT}
DATASET_FIELDS = sorted({name for fields in (*DATASET_DEFAULTS.values(), UPLOAD_DEFAULTS) for name in fields})


def dataset_defaults(dataset: str) -> dict[str, Any]:
    """The fields a dataset sets apart from the book's IMDB experiment."""
    return UPLOAD_DEFAULTS if problems.is_upload(dataset) else DATASET_DEFAULTS.get(dataset, {})


class SettingsError(ValueError):
    """A setting has the wrong type or is out of range; the message names field, value and what is allowed."""

    def __init__(self, name: str, value: Any, allowed: str):
        self.name, self.value, self.allowed = name, value, allowed
        shown = repr(_short(value)) if isinstance(value, str) else _short(value)
        super().__init__(f"{name}={shown} is not allowed: {allowed}")


def _spec(kind, default, help, lo=None, hi=None, choices=None, label=None, steps=None, effect="", hidden=0):
    # steps: the stops a slider offers (any in-range value stays valid, e.g. from a link or the CLI);
    # hidden: set by regviz itself (which fold of a K-fold run this is), never by a control or option
    meta = {"kind": kind, "lo": lo, "hi": hi, "choices": choices, "help": help, "label": label}
    return field(default=default, metadata=meta | {"steps": steps, "effect": effect, "hidden": hidden})


@dataclass(frozen=True)
class Settings:
    """Everything that decides a run's curves; defaults are the book's IMDB experiment."""

    dataset: str = _spec(
        str,
        "imdb",
        "dataset to train on",
        choices=DATASETS,
        label="Dataset",
        effect="IMDB reviews (binary), Reuters newswires (46 topics) and Boston house prices (regression) "
        "as in the book; 'synthetic', 'topics' and 'houses' are generated offline in their shapes and "
        "overfit the same way.",
    )
    depth: int = _spec(
        int,
        2,
        "number of hidden layers",
        1,
        4,
        label="Hidden layers",
        effect="More layers mean more capacity: the network can memorise the training set sooner.",
    )
    width: int = _spec(
        int,
        16,
        "units per hidden layer",
        1,
        512,
        label="Units per layer",
        steps=WIDTH_STEPS,
        effect="Capacity. The book's second remedy: a smaller network overfits later and less; "
        "512 units overfit almost at once.",
    )
    last_width: int = _spec(
        int,
        0,
        "units of the last hidden layer (0: as many as the others)",
        0,
        512,
        label="Units in the last layer",
        steps=(0, *WIDTH_STEPS),
        effect="The book's information bottleneck: a last layer much narrower than the classes (4 units "
        "for 46 topics) cannot carry what the others learnt, and validation accuracy drops.",
    )
    l1: float = _spec(
        float,
        0.0,
        "L1 penalty factor on hidden kernels (adds l1*sum|w|)",
        0.0,
        0.1,
        label="L1 penalty",
        steps=PENALTY_STEPS,
        effect="Adds l1 x sum|w| to the loss: pushes many weights to exactly zero (a sparse network).",
    )
    l2: float = _spec(
        float,
        0.0,
        "L2 penalty factor on hidden kernels (adds l2*sum w^2)",
        0.0,
        0.1,
        label="L2 penalty",
        steps=PENALTY_STEPS,
        effect="Adds l2 x sum w^2 to the loss: shrinks all weights, a simpler model that overfits less. "
        "The book uses 0.001.",
    )
    dropout: float = _spec(
        float,
        0.0,
        "dropout rate after every hidden layer",
        0.0,
        0.8,
        label="Dropout rate",
        effect="Zeroes this share of each hidden layer's outputs during training, so no unit can rely "
        "on chance patterns. The book uses 0.5.",
    )
    train_fraction: float = _spec(
        float,
        1.0,
        "fraction of the training split used for training",
        0.05,
        1.0,
        label="Training data used",
        steps=FRACTION_STEPS,
        effect="The book's first remedy: more training data. Less data overfits sooner.",
    )
    epochs: int = _spec(
        int,
        20,
        "training epochs",
        1,
        500,
        label="Epochs",
        effect="Longer training gives overfitting more time to show; the best epoch is where to stop.",
    )
    batch_size: int = _spec(
        int,
        512,
        "minibatch size",
        8,
        4096,
        label="Batch size",
        steps=BATCH_STEPS,
        effect="Smaller batches take more (noisier) steps per epoch, so overfitting comes in fewer epochs.",
    )
    optimizer: str = _spec(
        str,
        "rmsprop",
        "optimizer",
        choices=OPTIMIZERS,
        label="Optimizer",
        effect="How weights move; rmsprop as in the book. It changes how fast, not whether, "
        "a big network overfits.",
    )
    learning_rate: float = _spec(
        float,
        1e-3,
        "optimizer learning rate",
        1e-5,
        1.0,
        label="Learning rate",
        steps=RATE_STEPS,
        effect="Step size. Larger steps fit (and overfit) faster until training becomes unstable.",
    )
    validation: str = _spec(
        str,
        HOLDOUT,
        "evaluation protocol: holdout, kfold or iterated (K-fold repeated on reshuffled rows)",
        choices=PROTOCOLS,
        label="Validation",
        effect="Hold-out validates on fixed rows; K-fold trains one model per fold and shows their mean "
        "and spread, the book's choice for a dataset as small as Boston.",
    )
    folds: int = _spec(
        int,
        4,
        "folds of K-fold validation (kfold and iterated only)",
        2,
        10,
        label="Folds",
        effect="Each fold validates once on its share of the rows; more folds, more models, more data each.",
    )
    repeats: int = _spec(
        int,
        2,
        "repeats of iterated K-fold (iterated only), the rows reshuffled before each",
        2,
        5,
        label="Repeats",
        effect="Iterated K-fold averages over several shuffles: a steadier estimate, at that many times "
        "the cost.",
    )
    fold: int = _spec(int, -1, "which fold this run is (-1: the whole protocol)", -1, 9, hidden=True)
    repeat: int = _spec(int, 0, "which repeat of iterated K-fold this fold is in", 0, 4, hidden=True)
    final: int = _spec(int, 0, "1: trained on all training rows, tested on the test split", 0, 1, hidden=True)
    seed: int = _spec(
        int,
        0,
        "random seed for weights, shuffling and dropout",
        0,
        2**31 - 1,
        label="Seed",
        effect="Another seed gives another draw of initial weights and batches: see what is noise.",
    )

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))
        # what a protocol does not use keeps its default, so that one experiment has one identity
        if self.validation == HOLDOUT:
            object.__setattr__(self, "folds", 4)
            object.__setattr__(self, "fold", -1)
        if self.validation != ITERATED:
            object.__setattr__(self, "repeats", 2)
            object.__setattr__(self, "repeat", 0)
        if self.fold >= self.folds:
            raise SettingsError("fold", self.fold, f"an integer from -1 to {self.folds - 1}")
        if self.final:  # every training row trains; the test split is the only one evaluated
            for name, value in (("validation", HOLDOUT), ("folds", 4), ("repeats", 2), ("fold", -1),
                                ("repeat", 0), ("train_fraction", 1.0)):  # fmt: skip
                object.__setattr__(self, name, value)

    def final_run(self, epochs: int) -> Settings:
        """The workflow's last step for these settings: trained on the whole training split for this
        many epochs (the best epoch of the validation curve, usually), evaluated on the test split."""
        return self.replace(final=1, epochs=epochs)

    def fold_runs(self) -> list[Settings]:
        """The runs a K-fold experiment trains: one per fold (and repeat); a hold-out one is itself."""
        if self.validation == HOLDOUT:
            return [self]
        repeats = self.repeats if self.validation == ITERATED else 1
        return [self.replace(fold=f, repeat=r) for r in range(repeats) for f in range(self.folds)]

    @property
    def whole(self) -> Settings:
        """The experiment a fold run belongs to (itself when it is not a fold)."""
        return self.replace(fold=-1, repeat=0)

    def key(self) -> str:
        """Stable identity: a short hash of every field, the same in every process."""
        blob = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        """All fields with their typed values."""
        return dataclasses.asdict(self)

    @classmethod
    def for_dataset(cls, dataset: str = "imdb", **fields) -> Settings:
        """The dataset's defaults (DATASET_DEFAULTS over the book's IMDB ones), with these fields set."""
        return cls(**{**dataset_defaults(dataset), "dataset": dataset, **fields})

    def to_params(self) -> dict[str, str]:
        """Flat string dict of the fields that differ from the dataset's defaults (what a URL holds)."""
        default = Settings.for_dataset(self.dataset).replace(dataset=Settings().dataset)
        return {
            f.name: _format(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Settings:
        """Strict reading of a string dict: any unknown or invalid entry raises SettingsError."""
        settings, dropped = cls.read_lenient(params)
        if dropped:
            name, value, why = dropped[0]
            raise SettingsError(name, value, why)
        return settings

    @classmethod
    def read_lenient(cls, params: dict[str, Any]) -> tuple[Settings, list[tuple[str, Any, str]]]:
        """Valid settings from a possibly hostile dict, plus (name, value, reason) for each dropped entry."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kept, dropped = {}, []
        for name, raw in params.items():
            if name not in fields:
                dropped.append((str(name)[:40], _short(raw), "unknown setting"))
                continue
            try:
                kept[name] = _check(fields[name], raw)
            except SettingsError as e:
                dropped.append((name, _short(raw), e.allowed))
        dataset = kept.get("dataset", cls.dataset)
        protocol = kept.get("validation", dataset_defaults(dataset).get("validation", HOLDOUT))
        for name, applies in (("folds", (KFOLD, ITERATED)), ("repeats", (ITERATED,))):
            if name in kept and protocol not in applies:
                dropped.append((name, _short(params[name]), f"only with validation {' or '.join(applies)}"))
                del kept[name]
        dataset = kept.pop("dataset", cls.dataset)
        return cls.for_dataset(dataset, **kept), dropped

    def replace(self, **changes) -> Settings:
        """A copy with some fields changed (and validated)."""
        return dataclasses.replace(self, **changes)

    def baseline(self) -> Settings:
        """The same network, data and optimizer with every regularizer off."""
        return self.replace(l1=0.0, l2=0.0, dropout=0.0)

    def preset(self, name: str) -> Settings:
        """The book's experiment `name` on this dataset and seed."""
        fields = {"dataset": self.dataset, "seed": self.seed, **PRESETS[name]}
        return Settings.for_dataset(fields.pop("dataset"), **fields)

    def widths(self) -> list[int]:
        """Units of each hidden layer: `width`, the last one `last_width` when that is set."""
        return [self.width] * (self.depth - 1) + [self.last_width or self.width]

    @property
    def is_baseline(self) -> bool:
        """True when no penalty and no dropout is set."""
        return self == self.baseline()


def fields() -> list[dataclasses.Field]:
    """The settings a person sets, in order, with their metadata (kind, range, choices, help); not
    the hidden ones regviz sets itself (a fold run's fold and repeat)."""
    return [f for f in dataclasses.fields(Settings) if not f.metadata["hidden"]]


def allowed(f: dataclasses.Field) -> str:
    """Human description of what a field accepts."""
    m = f.metadata
    if f.name == "dataset":
        return "one of " + ", ".join(m["choices"]) + ", or an uploaded file's csv-... name"
    if m["choices"]:
        return "one of " + ", ".join(m["choices"])
    kind = "an integer" if m["kind"] is int else "a number"
    return f"{kind} from {_format(m['lo'])} to {_format(m['hi'])}"


def _check(f: dataclasses.Field, raw: Any) -> Any:
    m = f.metadata
    value = _coerce(f, raw)
    if f.name == "dataset" and problems.is_upload(value):
        return value  # an uploaded file's data: its problem type and classes are in its name
    if m["choices"] and value not in m["choices"]:
        raise SettingsError(f.name, raw, allowed(f))
    if m["lo"] is not None and not (m["lo"] <= value <= m["hi"]):
        raise SettingsError(f.name, raw, allowed(f))
    return value


def _coerce(f: dataclasses.Field, raw: Any) -> Any:
    kind = f.metadata["kind"]
    bad = SettingsError(f.name, raw, allowed(f))
    if isinstance(raw, bool):
        raise bad
    if kind is str:
        if not isinstance(raw, str):
            raise bad
        return raw.strip().lower()
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            raise bad from None
    if not isinstance(raw, (int, float)) or not _finite(raw):
        raise bad
    if kind is int:
        if raw != int(raw):
            raise bad
        return int(raw)
    return float(raw) + 0.0  # -0.0 becomes 0.0: equal settings must have equal keys


def _finite(x: int | float) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float (json.loads can make one)
        return False


def _format(value: Any) -> str:
    # repr is the shortest string that reads back as the same float: links keep every digit
    return repr(value) if isinstance(value, float) else str(value)


def _short(raw: Any) -> str:
    """A bounded, printable form of any value, for messages."""
    try:
        text = raw if isinstance(raw, str) else repr(raw)
    except ValueError:  # ints beyond python's digit limit refuse to print
        text = f"<int of {raw.bit_length()} bits>"
    return text if len(text) <= 40 else text[:37] + "..."


def to_wire(settings: Settings) -> dict[str, Any]:
    """The settings as plain JSON values, the one form they cross a process boundary in (pipe or Ray)."""
    return settings.as_dict()


def from_wire(wire: dict[str, Any]) -> Settings:
    """The Settings that to_wire gave (validated again on arrival, as every Settings is)."""
    return Settings(**wire)
