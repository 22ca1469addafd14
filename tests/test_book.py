"""The book's findings (Deep Learning with Python, 4.4) reproduced by train() on real IMDB reviews."""

from __future__ import annotations

import numpy as np
import pytest

from regviz import data
from regviz.settings import Settings
from regviz.training.loop import train

pytestmark = pytest.mark.slow

RUNS = {
    "baseline": Settings(),  # the book's 16-16 network, 20 epochs, batch 512, rmsprop
    "l2": Settings(l2=0.001),
    "dropout": Settings(dropout=0.5),
    "small": Settings(width=4),
}


@pytest.fixture(scope="module")
def curves(imdb_path) -> dict[str, np.ndarray]:
    """Validation data loss per epoch of each run, each trained once for this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.IMDB_PATH_ENV, str(imdb_path))
        out = {}
        for name, settings in RUNS.items():
            records = list(train(settings))
            assert [r.epoch for r in records] == list(range(1, settings.epochs + 1))
            out[name] = np.array([r.val_data_loss for r in records])
        return out


def best_epoch(curve: np.ndarray) -> int:
    return int(np.argmin(curve)) + 1


def test_baseline_overfits_after_a_few_epochs(curves):
    """The unregularized 16-16 network is best by epoch 8 and ends at least 30 % above that minimum."""
    curve = curves["baseline"]
    assert best_epoch(curve) <= 8, curve.round(3)
    assert curve[-1] >= 1.3 * curve.min(), curve.round(3)


def test_l2_ends_below_the_baseline(curves):
    """With l2=0.001 the validation data loss at epoch 20 is lower than the baseline's."""
    assert curves["l2"][-1] < curves["baseline"][-1]


def test_dropout_ends_below_the_baseline(curves):
    """With dropout 0.5 the validation data loss at epoch 20 is lower than the baseline's."""
    assert curves["dropout"][-1] < curves["baseline"][-1]


def test_smaller_network_overfits_later(curves):
    """A 4-unit network reaches its minimum validation data loss later than the 16-unit one."""
    assert best_epoch(curves["small"]) > best_epoch(curves["baseline"])
