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
from regviz.settings import Settings

BASE_FRACTION = 0.5  # the baseline's share of the training data


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
