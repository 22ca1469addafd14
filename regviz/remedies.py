"""The book's four ways to fight overfitting, plus L1, each against one baseline (the remedies page).

Deep Learning with Python, chapter 4: get more training data, reduce the network's size, add weight
regularization, add dropout. The baseline is the book's 16-16 network trained on half of the
training data, so that "more data" is one of the changes (all of it); every other remedy changes one
thing of that baseline. The server trains these runs in the background when no visitor waits
(`RunManager.prefetch`), so the page opens from the store. No streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass

from regviz import problems
from regviz.records import EpochRecord, best_epoch
from regviz.settings import Settings

BASE_FRACTION = 0.5  # the baseline's share of the training data
# two validation losses less than this far apart (relative) read as the same: on IMDB two seeds of the
# same network differ by about that much at their best epochs
SAME_WITHIN = 0.02
COMPARE = (
    "On each chart, compare two numbers with the dashed baseline: the lowest validation loss (the star, "
    "where early stopping would stop) and the validation loss at the last epoch. A remedy that lowers "
    "the lowest one gives a better model; one that lowers only the last one overfits less, but is no "
    "better if you stop at the best epoch."
)


@dataclass(frozen=True)
class Remedy:
    title: str
    change: str  # what differs from the baseline, in words
    settings: dict  # the fields it changes


REMEDIES = (
    Remedy("More data", "all the training data, not half", {"train_fraction": 1.0}),
    Remedy("A smaller network", "4 units per layer, not 16", {"width": 4}),
    Remedy("Weight regularization", "L2 0.001 on the hidden weights", {"l2": 0.001}),
    Remedy("Dropout", "0.5 after each hidden layer", {"dropout": 0.5}),
    Remedy("L1 regularization", "L1 0.001 on the hidden weights", {"l1": 0.001}),
)


def baseline(dataset: str, seed: int) -> Settings:
    """The book's 16-16 network on half the training data, on this dataset and seed (an uploaded file,
    of any size, on its own batches and epochs: 20 epochs of 512 would barely train a small one)."""
    base = Settings(dataset=dataset, seed=seed, train_fraction=BASE_FRACTION)
    if problems.is_upload(dataset):
        own = Settings.for_dataset(dataset)
        base = base.replace(batch_size=own.batch_size, epochs=own.epochs)
    return base


def runs(dataset: str, seed: int) -> list[Settings]:
    """The baseline, then each remedy's settings, in REMEDIES' order."""
    base = baseline(dataset, seed)
    return [base, *(base.replace(**remedy.settings) for remedy in REMEDIES)]


def verdict(name: str, records: list[EpochRecord], baseline: list[EpochRecord]) -> str:
    """One line under a remedy's chart: its lowest validation loss and epoch, and its value at the last
    epoch, each against the baseline's (over the epochs both have, while they train), then what that
    means in words."""
    if not records:
        return f"{name}: waiting for its first epoch."
    if not baseline:
        return f"{name}: best {_best_and_end(records)} (the baseline has no epochs yet)."
    k = min(records[-1].epoch, baseline[-1].epoch)  # while they train: the last epoch both have
    ours, theirs = records[:k], baseline[:k]
    best, base_best = best_epoch(ours), best_epoch(theirs)
    low, base_low = ours[best - 1].val_data_loss, theirs[base_best - 1].val_data_loss
    end, base_end = ours[-1].val_data_loss, theirs[-1].val_data_loss
    at_best, at_end = _compared(low, base_low), _compared(end, base_end)
    (low_text, base_low_text), (end_text, base_end_text) = _pair(low, base_low, 3), _pair(end, base_end, 2)
    return (
        f"{name}: best {low_text} at epoch {best} (baseline {base_low_text} at epoch {base_best}): "
        f"{at_best}; at epoch {k}, {end_text} (baseline {base_end_text}): {at_end} — "
        f"{_meaning(name, at_best, at_end)}."
    )


def baseline_line(records: list[EpochRecord]) -> str:
    """The baseline's own line above the charts: its lowest validation loss and epoch, and its last."""
    if not records:
        return "Baseline (dashed in every chart): waiting for its first epoch."
    return f"Baseline: lowest validation loss {_best_and_end(records)}; dashed in every chart."


def _best_and_end(records: list[EpochRecord]) -> str:
    best, end = best_epoch(records), records[-1]
    low = records[best - 1].val_data_loss
    return f"{_num(low, 3)} at epoch {best}, {_num(end.val_data_loss, 2)} at epoch {end.epoch}"


def _num(x: float, digits: int) -> str:
    # trailing zeros kept (0.310 beside 0.309); a regression's large losses whole, without an exponent
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:.0f}"
    text = f"{x:#.{digits}g}"
    return text if "e" not in text else f"{x:.{digits}g}"


def _pair(a: float, b: float, digits: int) -> tuple[str, str]:
    # two different numbers should not read the same: a digit more until they differ (up to 6)
    while digits < 6 and _num(a, digits) == _num(b, digits) and a != b:
        digits += 1
    return _num(a, digits), _num(b, digits)


def _compared(value: float, base: float) -> str:
    if abs(value - base) <= SAME_WITHIN * abs(base):
        return "about the same"
    return "lower" if value < base else "higher"


MEANINGS = {
    ("lower", "lower"): "{name} helps, at the best epoch and at the end",
    ("lower", "about the same"): "{name} helps at the best epoch; at the end it is no better",
    ("lower", "higher"): "{name} helps the best epoch, but this run overfits more by the end",
    ("about the same", "lower"): "no better at its best epoch: it only overfits less by the end",
    ("about the same", "about the same"): "no clear difference from the baseline",
    ("about the same", "higher"): "no better at its best epoch, and it overfits more by the end",
    ("higher", "lower"): "worse at its best epoch, though it overfits less by the end",
    ("higher", "about the same"): "worse at its best epoch, and no better at the end",
    ("higher", "higher"): "worse, at its best epoch and at the end",
}  # fmt: skip


def _meaning(name: str, at_best: str, at_end: str) -> str:
    # the name starts a sentence in the line's head, but sits mid-sentence here ("more data helps"; an
    # abbreviation such as L1 keeps its capital)
    first = name.split()[0] if name.split() else ""
    inside = name if len(first) > 1 and first.isupper() else name[:1].lower() + name[1:]
    return MEANINGS[at_best, at_end].format(name=inside)
