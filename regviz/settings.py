"""One run's settings: declared once, validated in one place, serialised for URL, CLI and store.

The table (each field's `spec`) also says how a setting is shown and offered: its sidebar section, its
name in a pin's label, whether a sweep varies it and on what axis, which protocol uses it. The sidebar
(ui/common.py), the sweep (sweep.py, sweep_figures.py) and the pins (pins.py) read it from here."""

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
NOISE_STEPS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
RATE_STEPS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
# the book's experiments; each one keeps the seed (and the dataset, unless it names one) and resets the rest
PRESETS = {
    "Original 16-16": {"width": 16},
    "Smaller 4-4": {"width": 4},
    "Bigger 512-512": {"width": 512},
    "L2 0.001": {"l2": 0.001},
    "Dropout 0.5": {"dropout": 0.5},
    "L1 0.001": {"l1": 0.001},
    # Zhang et al. (2017): with 30 % of the training labels wrong, the 16-16 network memorises them
    "Noisy labels 0.3": {"width": 16, "label_noise": 0.3},
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


@dataclass(frozen=True)
class Sweep:
    """How a sweep offers a setting: its place in the menu of settings to vary, the values picked when it
    is chosen, and the values offered (None: its slider's stops, or its choices)."""

    place: int
    picked: tuple
    menu: tuple | None = None


# how a field is shown and offered beyond its range; every key may be left out, these are the defaults
SHOWN: dict[str, Any] = {
    "group": None,  # (sidebar section, place in it), e.g. ("basic", 1); None: no control of its own
    "short": None,  # its name in a pin's label ("L2 0.001"); None: the field's own name
    "pin_rank": None,  # where a pin's label names it among the first (regularization first); None: after
    "sweep": None,  # a Sweep when a sweep may vary it
    "axis": "linear",  # "log" for values spread over decades: a sweep's curve reads them best on a log axis
    "protocols": None,  # the validation protocols that use it (its default is kept under the others)
    "percent": False,  # shown as a percentage: by its control, in a pin's label, on a sweep's axes
    "typed": False,  # typed into a number box: a range too wide for a slider
}
SECTIONS = ("basic", "protocol", "advanced")
# fields added after runs were stored: in a run's key only when set, so every earlier key stays valid
KEYED_IF_SET = ("label_noise",)  # the sidebar's sections of controls, in order


def spec(kind, default, help, lo=None, hi=None, choices=None, label=None, steps=None, effect="", hidden=0,
         **shown):  # fmt: skip
    """A field of the settings table: its type, default, range and help, and (SHOWN) how it is shown.
    steps: the stops a slider offers (any in-range value stays valid, e.g. from a link or the CLI);
    hidden: set by regviz itself (which fold of a K-fold run this is), never by a control or option."""
    if set(shown) - set(SHOWN):
        raise TypeError(f"unknown setting metadata: {', '.join(sorted(set(shown) - set(SHOWN)))}")
    if shown.get("group") and shown["group"][0] not in SECTIONS:
        raise TypeError(f"group {shown['group'][0]!r} is not one of the sidebar's {', '.join(SECTIONS)}")
    meta = {"kind": kind, "lo": lo, "hi": hi, "choices": choices, "help": help, "label": label}
    meta |= {"steps": steps, "effect": effect, "hidden": hidden}
    return field(default=default, metadata=meta | SHOWN | shown)


@dataclass(frozen=True)
class Settings:
    """Everything that decides a run's curves; defaults are the book's IMDB experiment."""

    dataset: str = spec(
        str,
        "imdb",
        "dataset to train on",
        choices=DATASETS,
        label="Dataset",
        effect="IMDB reviews (binary), Reuters newswires (46 topics) and Boston house prices (regression) "
        "as in the book; 'synthetic', 'topics' and 'houses' are generated offline in their shapes and "
        "overfit the same way.",
        group=("basic", 1),
        short="data set",
    )
    depth: int = spec(
        int,
        2,
        "number of hidden layers",
        1,
        4,
        label="Hidden layers",
        effect="More layers mean more capacity: the network can memorise the training set sooner.",
        group=("basic", 3),
        pin_rank=5,
        sweep=Sweep(6, (1, 2, 3), menu=(1, 2, 3, 4)),
    )
    width: int = spec(
        int,
        16,
        "units per hidden layer",
        1,
        512,
        label="Units per layer",
        steps=WIDTH_STEPS,
        effect="Capacity. The book's second remedy: a smaller network overfits later and less; "
        "512 units overfit almost at once.",
        group=("basic", 2),
        pin_rank=4,
        sweep=Sweep(4, (4, 16, 64, 256)),
        axis="log",
    )
    last_width: int = spec(
        int,
        0,
        "units of the last hidden layer (0: as many as the others)",
        0,
        512,
        label="Units in the last layer",
        steps=(0, *WIDTH_STEPS),
        effect="The book's information bottleneck: a last layer much narrower than the classes (4 units "
        "for 46 topics) cannot carry what the others learnt, and validation accuracy drops.",
        group=("basic", 4),
        sweep=Sweep(5, (0, 4, 16, 64)),
    )
    l1: float = spec(
        float,
        0.0,
        "L1 penalty factor on hidden kernels (adds l1*sum|w|)",
        0.0,
        0.1,
        label="L1 penalty",
        steps=PENALTY_STEPS,
        effect="Adds l1 x sum|w| to the loss: pushes many weights to exactly zero (a sparse network).",
        group=("basic", 6),
        short="L1",
        pin_rank=2,
        sweep=Sweep(2, (0.0, 1e-4, 1e-3, 1e-2)),
        axis="log",
    )
    l2: float = spec(
        float,
        0.0,
        "L2 penalty factor on hidden kernels (adds l2*sum w^2)",
        0.0,
        0.1,
        label="L2 penalty",
        steps=PENALTY_STEPS,
        effect="Adds l2 x sum w^2 to the loss: shrinks all weights, a simpler model that overfits less. "
        "The book uses 0.001.",
        group=("basic", 5),
        short="L2",
        pin_rank=1,
        sweep=Sweep(1, (0.0, 1e-4, 1e-3, 1e-2)),
        axis="log",
    )
    dropout: float = spec(
        float,
        0.0,
        "dropout rate after every hidden layer",
        0.0,
        0.8,
        label="Dropout rate",
        effect="Zeroes this share of each hidden layer's outputs during training, so no unit can rely "
        "on chance patterns. The book uses 0.5.",
        group=("basic", 7),
        pin_rank=3,
        sweep=Sweep(3, (0.0, 0.25, 0.5), menu=(0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
    )
    train_fraction: float = spec(
        float,
        1.0,
        "fraction of the training split used for training",
        0.05,
        1.0,
        label="Training data used",
        steps=FRACTION_STEPS,
        effect="The book's first remedy: more training data. Less data overfits sooner.",
        group=("basic", 8),
        short="training data",
        pin_rank=6,
        sweep=Sweep(7, (0.2, 0.5, 1.0)),
        percent=True,
    )
    label_noise: float = spec(
        float,
        0.0,
        "fraction of the training labels replaced, chosen by the seed (a class: another class; "
        "a target: another training row's); validation and test labels are never touched",
        0.0,
        0.5,
        label="Label noise",
        steps=NOISE_STEPS,
        effect="Replaces this share of the training labels with wrong ones. The network still fits them: "
        "its training loss falls toward zero while the validation loss climbs, memorisation "
        "(Zhang et al., 2017). Regularization slows it.",
        group=("basic", 10),
        short="label noise",
        pin_rank=7,
        percent=True,
    )
    epochs: int = spec(
        int,
        20,
        "training epochs",
        1,
        500,
        label="Epochs",
        effect="Longer training gives overfitting more time to show; the best epoch is where to stop.",
        group=("basic", 9),
        sweep=Sweep(8, (10, 20, 40), menu=(5, 10, 20, 30, 40, 60, 80, 100, 200, 500)),
    )
    batch_size: int = spec(
        int,
        512,
        "minibatch size",
        8,
        4096,
        label="Batch size",
        steps=BATCH_STEPS,
        effect="Smaller batches take more (noisier) steps per epoch, so overfitting comes in fewer epochs.",
        group=("advanced", 3),
        short="batch",
        sweep=Sweep(9, (128, 512, 2048)),
        axis="log",
    )
    optimizer: str = spec(
        str,
        "rmsprop",
        "optimizer",
        choices=OPTIMIZERS,
        label="Optimizer",
        effect="How weights move; rmsprop as in the book. It changes how fast, not whether, "
        "a big network overfits.",
        group=("advanced", 1),
        sweep=Sweep(10, OPTIMIZERS),
    )
    learning_rate: float = spec(
        float,
        1e-3,
        "optimizer learning rate",
        1e-5,
        1.0,
        label="Learning rate",
        steps=RATE_STEPS,
        effect="Step size. Larger steps fit (and overfit) faster until training becomes unstable.",
        group=("advanced", 2),
        short="rate",
        sweep=Sweep(11, (1e-4, 1e-3, 1e-2)),
        axis="log",
    )
    validation: str = spec(
        str,
        HOLDOUT,
        "evaluation protocol: holdout, kfold or iterated (K-fold repeated on reshuffled rows)",
        choices=PROTOCOLS,
        label="Validation",
        effect="Hold-out validates on fixed rows; K-fold trains one model per fold and shows their mean "
        "and spread, the book's choice for a dataset as small as Boston.",
        group=("protocol", 1),
    )
    folds: int = spec(
        int,
        4,
        "folds of K-fold validation (kfold and iterated only)",
        2,
        10,
        label="Folds",
        effect="Each fold validates once on its share of the rows; more folds, more models, more data each.",
        group=("protocol", 2),
        protocols=(KFOLD, ITERATED),
    )
    repeats: int = spec(
        int,
        2,
        "repeats of iterated K-fold (iterated only), the rows reshuffled before each",
        2,
        5,
        label="Repeats",
        effect="Iterated K-fold averages over several shuffles: a steadier estimate, at that many times "
        "the cost.",
        group=("protocol", 3),
        protocols=(ITERATED,),
    )
    fold: int = spec(
        int,
        -1,
        "which fold this run is (-1: the whole protocol)",
        -1,
        9,
        hidden=True,
        protocols=(KFOLD, ITERATED),
    )
    repeat: int = spec(
        int, 0, "which repeat of iterated K-fold this fold is in", 0, 4, hidden=True, protocols=(ITERATED,)
    )
    final: int = spec(int, 0, "1: trained on all training rows, tested on the test split", 0, 1, hidden=True)
    seed: int = spec(
        int,
        0,
        "random seed for weights, shuffling and dropout",
        0,
        2**31 - 1,
        label="Seed",
        effect="Another seed gives another draw of initial weights and batches: see what is noise.",
        group=("advanced", 4),
        sweep=Sweep(12, (0, 1, 2, 3), menu=tuple(range(10))),
        typed=True,
    )

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))
        # what a protocol does not use keeps its default, so that one experiment has one identity
        self._reset(lambda f: not used_by(f, self.validation))
        if self.fold >= self.folds:
            raise SettingsError("fold", self.fold, f"an integer from -1 to {self.folds - 1}")
        if self.final:  # every training row trains, held out by no protocol; the test split is evaluated
            self._reset(lambda f: f.name in ("validation", "train_fraction") or f.metadata["protocols"])

    def _reset(self, which) -> None:
        for f in dataclasses.fields(self):
            if which(f):
                object.__setattr__(self, f.name, f.default)

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
        """Stable identity: a short hash of every field, the same in every process (a field added
        since runs were first stored is left out at its default, so those runs keep their keys)."""
        values = {k: v for k, v in self.as_dict().items() if k not in KEYED_IF_SET or v != named(k).default}
        blob = json.dumps(values, sort_keys=True)
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
        # a link's folds under hold-out is noted; a fold run's own fold (hidden) is reset without a word
        given = [f.name for f in fields.values() if f.name in kept and not f.metadata["hidden"]]
        for name in [name for name in given if not used_by(fields[name], protocol)]:
            applies = " or ".join(fields[name].metadata["protocols"])
            dropped.append((name, _short(params[name]), f"only with validation {applies}"))
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


def fields(of: type = Settings) -> list[dataclasses.Field]:
    """The settings a person sets, in order, with their metadata (kind, range, choices, help); not
    the hidden ones regviz sets itself (a fold run's fold and repeat)."""
    return [f for f in dataclasses.fields(of) if not f.metadata["hidden"]]


def named(name: str, of: type = Settings) -> dataclasses.Field:
    """The field of this name, with its metadata."""
    return {f.name: f for f in dataclasses.fields(of)}[name]


def section(name: str, of: type = Settings) -> list[dataclasses.Field]:
    """The fields whose controls a sidebar section (SECTIONS) holds, in their places."""
    members = [f for f in dataclasses.fields(of) if f.metadata["group"] and f.metadata["group"][0] == name]
    return sorted(members, key=lambda f: f.metadata["group"][1])


def used_by(f: dataclasses.Field, protocol: str) -> bool:
    """Whether runs under this validation protocol use the field (folds: K-fold ones only)."""
    return f.metadata["protocols"] is None or protocol in f.metadata["protocols"]


def sweepable(of: type = Settings) -> list[dataclasses.Field]:
    """The fields a sweep may vary, in the order its menu offers them."""
    return sorted(
        (f for f in dataclasses.fields(of) if f.metadata["sweep"]), key=lambda f: f.metadata["sweep"].place
    )


def sweep_values(f: dataclasses.Field) -> tuple:
    """The values a sweep's menu offers for a field: its own menu, else its slider's stops or choices."""
    return f.metadata["sweep"].menu or f.metadata["steps"] or f.metadata["choices"]


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
