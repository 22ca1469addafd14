"""The plain-words reading: overfitting, comparisons and wording checked on hand-made curves."""

import pytest

from regviz.reading import reading, regularizers
from regviz.records import EpochRecord, LayerStats
from regviz.settings import Settings

L2 = Settings(l2=1e-3, epochs=8)
# lowest at epoch 4 (0.30), then 40 % above it by epoch 8
OVERFITTING = [0.50, 0.40, 0.35, 0.30, 0.33, 0.36, 0.39, 0.42]
# lowest at epoch 6 (0.40), ends 5 % above it: no overfitting
STEADY = [0.60, 0.50, 0.45, 0.42, 0.41, 0.40, 0.41, 0.42]


def curve(vals, trains=None):
    """Records for epochs 1..n with the given validation (and optionally training) data losses."""
    trains = trains or [v / 2 for v in vals]
    return [
        EpochRecord(
            epoch=i, data_loss=t, val_data_loss=v, penalty=0.0, loss=t, val_loss=v, accuracy=0.9,
            val_accuracy=0.8, val_auc=None, seconds=float(i), layers=(LayerStats(1.0, 0.0),), hist=(0,) * 60,
        )
        for i, (v, t) in enumerate(zip(vals, trains, strict=True), 1)
    ]  # fmt: skip


def sentence(lines, start, containing=""):
    """The one sentence that starts with `start` and contains `containing`."""
    (found,) = [line for line in lines if line.startswith(start) and containing in line]
    return found


def test_overfitting_epoch_detected():
    """The baseline overfits from its lowest validation loss, by how much it has risen at the end."""
    lines = reading(curve(STEADY), curve(OVERFITTING), L2)
    rise = round((0.42 / 0.30 - 1) * 100)
    text = sentence(lines, "The baseline")
    assert text == (
        "The baseline overfits from epoch 4: "
        f"its validation loss is lowest there and {rise} % higher by epoch 8."
    )


def test_steady_run_does_not_overfit():
    """A run ending within 10 % of its minimum is said not to overfit, naming its lowest point."""
    text = sentence(reading(curve(STEADY), curve(OVERFITTING), L2), "This run", "overfit")
    assert text.startswith("This run does not overfit")
    assert "0.42 at epoch 8, within 10 % of its lowest (0.4 at epoch 6)" in text


@pytest.mark.parametrize(("last", "overfits"), [(0.333, True), (0.327, False)])
def test_overfit_threshold_is_ten_percent(last, overfits):
    """A rise of 11 % above the minimum counts as overfitting, 9 % does not."""
    run = curve([0.4, 0.3, last] + [last] * 5)
    text = sentence(reading(run, curve(OVERFITTING), L2), "This run", "overfit")
    assert ("overfits from epoch 2" in text) is overfits


def test_instead_of_compares_last_epoch_values():
    """The 'instead of' sentence gives the run's and the baseline's validation loss at the last epoch."""
    run, base = curve(STEADY[:-1] + [0.43]), curve(OVERFITTING[:-1] + [0.49])
    lines = reading(run, base, L2)
    assert "With L2 = 0.001 the validation loss at epoch 8 is 0.43 instead of 0.49." in lines


def test_close_numbers_get_a_third_digit():
    """Two values that round to the same 2 digits are shown with 3, so they read differently."""
    run, base = curve(STEADY[:-1] + [0.431]), curve(OVERFITTING[:-1] + [0.434])
    assert "is 0.431 instead of 0.434." in sentence(reading(run, base, L2), "With L2")


def test_streaming_run_speaks_of_so_far():
    """With fewer records than planned epochs, comparisons use the last common epoch and say 'so far'."""
    lines = reading(curve(OVERFITTING[:6]), curve(STEADY), L2)
    assert sentence(lines, "So far this run").startswith("So far this run overfits from epoch 4")
    assert "20 % higher at epoch 6" in sentence(lines, "So far this run")
    assert "So far, with L2 = 0.001 the validation loss at epoch 6 is 0.36 instead of 0.4." in lines
    assert "at epoch 6" in sentence(lines, "So far the generalization gap")


def test_still_falling_run():
    """A run whose latest epoch is its best so far is said to be still falling."""
    text = sentence(reading(curve([0.5, 0.4]), curve(STEADY), L2), "So far this run")
    assert text == "So far this run does not overfit: its validation loss is still falling (0.4 at epoch 2)."


def test_gap_at_last_common_epoch():
    """The generalization gap compares val minus train loss of run and baseline at the same epoch."""
    run = curve(STEADY[:5], trains=[0.5, 0.4, 0.3, 0.3, 0.29])
    base = curve(OVERFITTING, trains=[0.4, 0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.06])
    text = sentence(reading(run, base, L2), "So far the generalization gap")
    assert "at epoch 5 is 0.12 for this run and 0.21 for the baseline." in text


def test_best_epoch_comparison():
    """Each side's best epoch and lowest validation loss are compared, as early stopping would keep them."""
    text = sentence(reading(curve(STEADY), curve(OVERFITTING), L2), "At its best epoch")
    assert "this run reaches 0.4 (epoch 6) and the baseline 0.3 (epoch 4)" in text


def test_run_that_is_baseline():
    """When the run is the baseline the reading says so and compares it with nothing."""
    run = curve(OVERFITTING)
    lines = reading(run, run, Settings(epochs=8))
    assert lines[0].startswith("This run is the baseline")
    assert not [line for line in lines if "instead of" in line or "this run reaches" in line]
    assert sentence(lines, "The baseline").startswith("The baseline overfits from epoch 4")
    assert sentence(lines, "The generalization gap").endswith("at epoch 8 is 0.21.")


def test_no_epochs_and_no_baseline():
    """An empty run and a missing baseline give a reading without errors."""
    assert "No epochs yet" in reading([], None, L2)[-1]
    lines = reading(curve(STEADY), None, L2)
    assert lines[-1].startswith("The baseline has no epochs yet")


def test_regularizers_in_words():
    """All switched-on regularizers are named with their values, none for the baseline."""
    assert regularizers(Settings(l1=1e-4, l2=1e-3, dropout=0.3)) == "L1 = 0.0001, L2 = 0.001 and dropout 0.3"
    assert regularizers(Settings(l2=3e-5)) == "L2 = 0.00003"
    assert regularizers(Settings()) == ""
    assert reading([], None, Settings(dropout=0.5))[0].startswith("This run adds dropout 0.5 to the baseline")


def test_network_named_only_when_not_default():
    """Width, depth and training share are described when they differ from the defaults."""
    plain = reading(curve(STEADY), None, L2)
    assert not [line for line in plain if "both use" in line]
    lines = reading(curve(STEADY), None, L2.replace(width=4, depth=1, train_fraction=0.5))
    text = sentence(lines, "Run and baseline")
    assert text == (
        "Run and baseline both use 1 hidden layer of 4 units (default 2 of 16) "
        "and 50 % of the training data (default all)."
    )
