"""The plain-words reading: overfitting, comparisons and wording checked on hand-made curves."""

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pytest

from regviz import data
from regviz.reading import reading, regularizers
from regviz.records import EpochRecord, LayerStats, mean_records
from regviz.runs.inprocess import train_here  # the in-process trainer: the one place this module trains
from regviz.settings import PRESETS, Settings
from regviz.views import build

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


def test_a_small_rise_after_the_minimum_is_said_with_its_size():
    """A run ending 5 % above its minimum is said to start overfitting there, and by how much."""
    text = sentence(reading(curve(STEADY), curve(OVERFITTING), L2), "This run", "overfit")
    rise = round((0.42 / 0.40 - 1) * 100)
    assert text == (
        "This run starts to overfit after epoch 6: its validation loss is lowest there (0.4) and has turned "
        f"up since, {rise} % higher by epoch 8 (0.42)."
    )


def test_the_books_reuters_curve_reads_as_the_start_of_overfitting():
    """Lowest at epoch 12 (0.85), 0.92 at epoch 20 (the book's Reuters 64-64): it turns up after epoch 12."""
    vals = [1.9, 1.4, 1.2, 1.06, 0.99, 0.93, 0.9, 0.87, 0.87, 0.89, 0.87, 0.85]
    vals += [0.86, 0.93, 0.92, 0.9, 0.89, 0.91, 0.96, 0.92]
    text = sentence(reading(curve(vals), None, Settings(dataset="reuters")), "The baseline")
    rise = (vals[-1] / min(vals) - 1) * 100
    assert text.startswith("The baseline starts to overfit after epoch 12")
    assert f"lowest there (0.85) and has turned up since, {rise:.2g} % higher by epoch 20 (0.92)" in text
    assert "does not overfit" not in text


def test_a_rise_under_two_percent_is_still_said():
    """A curve 1 % above its minimum at the end turns up 'only slightly', with the numbers."""
    run = curve([0.5, 0.4, 0.402, 0.404])
    text = sentence(reading(run, curve(OVERFITTING), L2.replace(epochs=4)), "This run", "slightly")
    assert text == (
        "This run turns up only slightly after epoch 2: its validation loss is lowest there (0.4) and has "
        "turned up since, 1 % higher by epoch 4 (0.404)."
    )


def test_a_curve_back_at_its_lowest_has_levelled_off():
    """A last epoch equal to the minimum reached earlier is flat: neither overfitting nor still falling."""
    text = sentence(reading(curve([0.5, 0.3, 0.31, 0.3]), None, Settings(epochs=4)), "The baseline")
    assert text == "The baseline has levelled off: its validation loss at epoch 4 equals its lowest (0.3)."


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


def with_field(records, name, values):
    """The records with one field set epoch by epoch."""
    return [dataclasses.replace(r, **{name: v}) for r, v in zip(records, values, strict=True)]


KFOLD = Settings(dataset="houses", validation="kfold", folds=4, epochs=3)


def folds_of(rows, mae=None):
    """K-fold runs: one curve of validation losses per fold (and of validation MAE, else all 1.0)."""
    maes = mae or [[1.0] * len(r) for r in rows]
    return [with_field(curve(r), "val_mae", m) for r, m in zip(rows, maes, strict=True)]


def test_a_k_fold_rise_smaller_than_the_folds_spread_is_said_to_be_within_it():
    """The mean curve turns up by less than the folds' standard deviation at its end: said, with both."""
    folds = folds_of([[1.0, 0.5, 0.55], [1.2, 0.7, 0.60], [0.8, 0.3, 0.45], [1.0, 0.5, 0.52]])
    text = sentence(reading(mean_records(folds), None, KFOLD, (folds, None)), "The baseline")
    lows, ends = np.array([0.5, 0.7, 0.3, 0.5]), np.array([0.55, 0.60, 0.45, 0.52])
    rise = (ends.mean() / lows.mean() - 1) * 100
    assert ends.mean() - lows.mean() < np.std(ends)
    assert text.startswith("The baseline turns up after epoch 2, within the folds' spread")
    assert f"{rise:.2g} % higher by epoch 3 ({ends.mean():.2g})" in text
    assert f"smaller than the folds' standard deviation ({np.std(ends):.2g})" in text


def test_a_k_fold_rise_beyond_the_folds_spread_is_overfitting():
    """A mean rise larger than the folds' standard deviation is overfitting, and the spread is named."""
    folds = folds_of([[1.0, 0.5, 0.9], [1.2, 0.7, 1.0], [0.8, 0.3, 0.8], [1.0, 0.5, 0.9]])
    text = sentence(reading(mean_records(folds), None, KFOLD, (folds, None)), "The baseline")
    ends = np.array([0.9, 1.0, 0.8, 0.9])
    assert text.startswith("The baseline overfits from epoch 2")
    assert text.endswith(f"more than the folds' standard deviation ({np.std(ends):.2g}).")


def test_without_folds_a_k_fold_mean_reads_like_a_hold_out_run():
    """A reading given no fold records (a hold-out run) never speaks of the folds' spread."""
    folds = folds_of([[1.0, 0.5, 0.55], [1.2, 0.7, 0.60], [0.8, 0.3, 0.45], [1.0, 0.5, 0.52]])
    lines = reading(mean_records(folds), None, KFOLD)
    assert not [line for line in lines if "folds" in line]


def test_the_main_metric_is_read_at_its_best_epoch_and_at_the_end():
    """Validation accuracy: each side's highest (epoch and value, as NumPy's argmax finds) and at the end."""
    accs, base_accs = [0.80, 0.86, 0.88, 0.87, 0.84], [0.82, 0.87, 0.85, 0.83, 0.81]
    run = with_field(curve(OVERFITTING[:5]), "val_accuracy", accs)
    base = with_field(curve(STEADY[:5]), "val_accuracy", base_accs)
    text = sentence(reading(run, base, L2.replace(epochs=5)), "Validation accuracy")
    ours, theirs = int(np.argmax(accs)), int(np.argmax(base_accs))
    assert text == (
        f"Validation accuracy at its best: {accs[ours] * 100:.1f} % (epoch {ours + 1}) for this run and "
        f"{base_accs[theirs] * 100:.1f} % (epoch {theirs + 1}) for the baseline; at epoch 5, "
        f"{accs[-1] * 100:.1f} % and {base_accs[-1] * 100:.1f} %."
    )


def test_a_k_fold_metric_stops_improving_once_what_is_left_is_within_the_folds_spread():
    """Mean MAE 5, 3, 2.5, 2.45, 2.4 with folds 0.2 either side: from epoch 3 only 0.1 is left to gain."""
    mean = np.array([5.0, 3.0, 2.5, 2.45, 2.4])
    maes = [list(mean + d) for d in (0.2, -0.2, 0.2, -0.2)]
    folds = folds_of([[1.0, 0.9, 0.8, 0.7, 0.6]] * 4, maes)
    settings = KFOLD.replace(epochs=5)
    text = sentence(reading(mean_records(folds), None, settings, (folds, None)), "Validation MAE")
    assert np.allclose(np.std(maes, axis=0), 0.2) and mean[2] - mean[2:].min() <= 0.2 < mean[1] - mean.min()
    assert text == (
        "Validation MAE is best at epoch 5 (2.4) and 2.4 at epoch 5. Beyond the folds' spread (their "
        "standard deviation), it stops improving after epoch 3."
    )


# ---- the book's presets on the shared data: each reading says what the book says of that experiment ----

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_FILES = {
    data.IMDB_PATH_ENV: "imdb_acl.npz",
    data.REUTERS_PATH_ENV: "reuters_r21578.npz",
    data.BOSTON_PATH_ENV: "boston_housing.npz",
}
# "overfits from epoch N", "starts to overfit after epoch N", "turns up ... after epoch N"
TURN = re.compile(r"(?:overfits from|overfit after|turns up (?:only slightly )?after) epoch (\d+)")
RISE = re.compile(r"([\d.]+) % higher by epoch")
FALLING = re.compile(r"still falling \([\d.]+ at epoch (\d+)\)")


@pytest.fixture(scope="module")
def book_readings() -> dict[str, list[str]]:
    """Each preset's reading, as the page builds it, from runs trained once here on the shared data."""
    paths = {env: Path(os.environ.get(env) or SHARED / name) for env, name in SHARED_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        pytest.skip(f"shared data not found: {', '.join(missing)}")
    trained: dict[Settings, list] = {}

    def folds(settings: Settings) -> list[list[EpochRecord]]:
        for fold in settings.fold_runs():
            if fold not in trained:
                trained[fold] = list(train_here(fold))
        return [trained[fold] for fold in settings.fold_runs()]

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for env, path in paths.items():
            mp.setenv(env, str(path))
        for name in PRESETS:
            settings = Settings().preset(name)
            run = folds(settings)
            base = None if settings.is_baseline else folds(settings.baseline())
            kfold = settings.validation != "holdout"
            view = build(
                mean_records(run), base and mean_records(base), settings, False,
                folds=(run if kfold else None, base if kfold and base else None),
            )  # fmt: skip
            out[name] = list(view.reading)
    return out


def overfitting(lines, who: str = "The baseline") -> str:
    """The reading's sentence on whether `who` overfits."""
    return next(line for line in lines if line.startswith(who) and "validation loss" in line)


def turn(lines, who: str = "The baseline") -> tuple[int, float]:
    """(best epoch, % rise by the last epoch) as the reading's overfitting sentence of `who` gives them."""
    text = overfitting(lines, who)
    if falling := FALLING.search(text):
        return int(falling[1]), 0.0
    return int(TURN.search(text)[1]), float(RISE.search(text)[1])


def best_accuracy(lines) -> float:
    """The best validation accuracy the reading names, in %."""
    text = next(line for line in lines if line.startswith("Validation accuracy"))
    return float(re.search(r"best at epoch \d+ \(([\d.]+) %\)", text)[1])


@pytest.mark.slow
def test_the_books_16_16_overfits_after_a_few_epochs(book_readings):
    """Original 16-16: the reading says it overfits from an early epoch (book: ~4), clearly (10 %+)."""
    lines = book_readings["Original 16-16"]
    best, rise = turn(lines)
    assert 2 <= best <= 8 and rise >= 10, lines
    assert "overfits from epoch" in overfitting(lines), lines


@pytest.mark.slow
def test_the_books_4_4_overfits_later_and_more_slowly(book_readings):
    """Smaller 4-4: its turn comes later than 16-16's, and its rise by the end is smaller."""
    small, base = turn(book_readings["Smaller 4-4"]), turn(book_readings["Original 16-16"])
    assert small[0] > base[0] and small[1] < base[1], (small, base)


@pytest.mark.slow
def test_the_books_512_512_overfits_almost_at_once_and_much_more(book_readings):
    """Bigger 512-512: it overfits no later than 16-16 and rises more by the end."""
    big, base = turn(book_readings["Bigger 512-512"]), turn(book_readings["Original 16-16"])
    assert "overfits from epoch" in overfitting(book_readings["Bigger 512-512"])
    assert big[0] <= min(base[0], 5) and big[1] > base[1], (big, base)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["L2 0.001", "Dropout 0.5", "L1 0.001"])
def test_the_books_regularizers_overfit_less_than_the_baseline(book_readings, name):
    """L2 0.001, dropout 0.5 (and L1 0.001): the run's rise by the end is smaller than the baseline's, and
    its validation loss at the end is lower."""
    lines = book_readings[name]
    ours, theirs = turn(lines, "This run"), turn(lines, "The baseline")
    assert ours[1] < theirs[1], lines
    end = next(line for line in lines if "instead of" in line)
    ours_end, theirs_end = map(float, re.search(r"is ([\d.]+) instead of ([\d.]+)\.", end).groups())
    assert ours_end < theirs_end, end


@pytest.mark.slow
def test_the_books_reuters_64_64_overfits_after_about_nine_epochs(book_readings):
    """Reuters 64-64: the reading says the validation loss turns up after an epoch near 9, never that it
    does not overfit."""
    lines = book_readings["Reuters 64-64"]
    best, rise = turn(lines)
    assert 6 <= best <= 14 and rise > 0, lines
    assert not [line for line in lines if "does not overfit" in line]


@pytest.mark.slow
def test_the_books_bottleneck_loses_accuracy(book_readings):
    """Reuters 64-4: the best validation accuracy read is well below 64-64's (book: ~71 % against ~80 %)."""
    bottleneck = best_accuracy(book_readings["Reuters bottleneck 64-4"])
    wide = best_accuracy(book_readings["Reuters 64-64"])
    assert bottleneck < wide - 5, (bottleneck, wide)


@pytest.mark.slow
def test_the_books_boston_k_fold_stops_improving_after_about_80_epochs(book_readings):
    """Boston 4-fold: validation MAE stops improving beyond the folds' spread well before 300 epochs
    (book: ~80), and the loss's later rise is weighed against the folds' spread."""
    lines = book_readings["Boston 4-fold"]
    mae = next(line for line in lines if line.startswith("Validation MAE"))
    stop = int(re.search(r"stops improving after epoch (\d+)", mae)[1])
    assert 10 <= stop <= 120, mae
    assert "the folds' s" in overfitting(lines), lines  # "the folds' spread" or "standard deviation"


# ---- label noise --------------------------------------------------------------------------------------

NOISY = Settings(label_noise=0.3, epochs=8)


def noise_sentence(lines) -> str:
    """The reading's sentence on label noise."""
    return sentence(lines, "30 % of the training labels are wrong")


def test_label_noise_with_falling_training_and_climbing_validation_reads_as_memorisation():
    """Training loss falling to 0.05 while validation climbs from its lowest: memorisation, Zhang et al."""
    trains = [0.69, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    text = noise_sentence(reading(curve(OVERFITTING, trains), None, NOISY))
    assert "the training loss falls from 0.69 to 0.05 by epoch 8" in text
    assert "while the validation loss climbs from 0.3 (epoch 4) to 0.42" in text
    assert "memorisation" in text and "regularization slows it" in text and "Zhang et al., 2017" in text


def test_label_noise_without_a_climb_says_validation_has_not_climbed_yet():
    """Validation loss still at its lowest at the last epoch: no memorisation claimed yet."""
    falling = [0.6, 0.55, 0.5, 0.45, 0.44, 0.43, 0.42, 0.41]
    text = noise_sentence(reading(curve(falling), None, NOISY))
    assert "the validation loss has not climbed yet" in text and "That is memorisation" not in text


def test_label_noise_with_a_flat_training_loss_says_it_is_not_fitted():
    """Training loss that does not fall: the network has not started to fit the noisy labels."""
    text = noise_sentence(reading(curve(OVERFITTING, [0.7] * 8), None, NOISY))
    assert "has not started to fit them" in text and "memorisation" not in text


def test_a_regularized_noisy_run_compares_its_training_loss_with_the_baselines():
    """With L2 on noisy labels, the reading gives both training losses at the last epoch."""
    run = curve(OVERFITTING, [0.69, 0.6, 0.55, 0.5, 0.45, 0.42, 0.4, 0.38])
    base = curve(OVERFITTING, [0.69, 0.5, 0.4, 0.3, 0.2, 0.1, 0.06, 0.03])
    text = noise_sentence(reading(run, base, NOISY.replace(l2=1e-3)))
    assert text.endswith("Here the training loss at epoch 8 is 0.38, the baseline's 0.03.")


def test_without_label_noise_the_reading_says_nothing_of_it():
    """label_noise 0: no sentence about wrong labels."""
    assert not any("label noise" in line for line in reading(curve(OVERFITTING), None, Settings(epochs=8)))
