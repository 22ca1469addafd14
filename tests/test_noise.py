"""Label noise: which training labels it replaces and with what, chosen by the seed, on every protocol;
validation and test labels never change, and no noise trains today's runs bit for bit."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from regviz.noise import noisy_labels
from regviz.problems import BINARY, MULTICLASS, REGRESSION
from regviz.settings import Settings
from regviz.training.loop import fit, rows_of, train


def classes_of(n: int, classes: int, seed: int = 3) -> np.ndarray:
    """n float class labels drawn from 0..classes-1, as regviz holds them."""
    return np.random.default_rng(seed).integers(0, classes, n).astype(np.float32)


@pytest.mark.parametrize("kind, classes", [(BINARY, 2), (MULTICLASS, 46), (REGRESSION, 1)])
def test_the_same_seed_flips_the_same_labels_and_another_seed_others(kind, classes):
    """Two calls with one seed give equal labels; another seed changes other rows."""
    y = np.arange(500, dtype=np.float32) if kind == REGRESSION else classes_of(500, classes)
    first, again = noisy_labels(y, 0.2, 4, kind, classes), noisy_labels(y, 0.2, 4, kind, classes)
    other = noisy_labels(y, 0.2, 5, kind, classes)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(np.flatnonzero(first != y), np.flatnonzero(other != y))


@pytest.mark.parametrize("kind, classes", [(BINARY, 2), (MULTICLASS, 3), (MULTICLASS, 46)])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5])
def test_round_fraction_n_class_labels_each_become_another_class(kind, classes, fraction):
    """Exactly round(fraction * n) labels change, each to another valid class; the input is not modified."""
    y = classes_of(1001, classes)
    kept = y.copy()
    noisy = noisy_labels(y, fraction, 0, kind, classes)
    np.testing.assert_array_equal(y, kept)
    changed = np.flatnonzero(noisy != y)
    assert len(changed) == round(fraction * len(y))
    assert set(np.unique(noisy)) <= set(range(classes)) and noisy.dtype == y.dtype


def test_the_new_class_is_drawn_uniformly_among_the_others():
    """Over 40,000 flips of 4 classes, each other class is picked a third of the time (within 2 %)."""
    y = classes_of(80_000, 4)
    noisy = noisy_labels(y, 0.5, 1, MULTICLASS, 4)
    flipped = noisy != y
    for old in range(4):
        new = noisy[flipped & (y == old)]
        shares = [np.mean(new == c) for c in range(4) if c != old]
        assert np.mean(new == old) == 0 and max(abs(s - 1 / 3) for s in shares) < 0.02


def test_regression_targets_come_from_other_training_rows():
    """round(fraction * n) targets are replaced, each by the target of another row of the same labels."""
    y = np.random.default_rng(2).normal(size=400).astype(np.float32)  # distinct values: a value is its row
    noisy = noisy_labels(y, 0.3, 7, REGRESSION, 1)
    changed = np.flatnonzero(noisy != y)
    assert len(changed) == 120
    source = {float(v): i for i, v in enumerate(y)}
    assert all(source[float(noisy[i])] != i for i in changed)


def test_no_noise_returns_the_labels_themselves():
    """label_noise 0 leaves the very array alone (no copy, no draw): today's runs bit for bit."""
    y = classes_of(100, 2)
    assert noisy_labels(y, 0.0, 0, BINARY, 2) is y


PROTOCOLS = {
    "holdout": dict(train_fraction=0.5),
    "kfold": dict(validation="kfold", folds=4, fold=2),
    "iterated": dict(validation="iterated", folds=3, fold=1, repeat=1),
    "final": dict(final=1),
}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_every_protocol_noises_the_training_labels_and_never_the_validation_ones(protocol, small_dataset):
    """Hold-out, a K-fold fold, an iterated fold and the final run: the same rows, the validation (or
    test) labels equal, and exactly round(0.3 * n) training labels the other class."""
    clean = Settings(dataset="synthetic", **PROTOCOLS[protocol])
    x, y, x_val, y_val = rows_of(clean, small_dataset)
    nx, ny, nx_val, ny_val = rows_of(clean.replace(label_noise=0.3), small_dataset)
    np.testing.assert_array_equal(ny_val, y_val)
    np.testing.assert_array_equal(nx.indices, x.indices)
    np.testing.assert_array_equal(nx_val.indices, x_val.indices)
    assert np.sum(ny != y) == round(0.3 * len(y)) and np.all(ny[ny != y] == 1 - y[ny != y])
    if protocol == "final":
        np.testing.assert_array_equal(ny_val, small_dataset.y_test)


def comparable(records) -> list[dict]:
    """Records without their timing, the one field that differs between two equal runs."""
    return [{k: v for k, v in dataclasses.asdict(r).items() if k != "seconds"} for r in records]


def test_an_explicit_zero_trains_todays_records_under_todays_key(small_dataset):
    """label_noise=0 trains exactly the records of a run on the dataset's own labels, and its key is the
    hash of the other fields alone, as keys were before label noise existed."""
    s = Settings(dataset="synthetic", width=4, epochs=2, train_fraction=0.5, seed=3)
    x, y = small_dataset.training_rows(0.5)
    today = list(fit(s, x, y, small_dataset.x_val, small_dataset.y_val))
    explicit = list(train(s.replace(label_noise=0.0), dataset=small_dataset))
    assert comparable(explicit) == comparable(today)
    before = {k: v for k, v in s.as_dict().items() if k != "label_noise"}
    key = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert s.replace(label_noise=0.0).key() == s.key() == key
    assert s.replace(label_noise=0.3).key() != key


def test_a_noisy_run_trains_on_the_noisy_labels_and_validates_on_the_clean_ones(small_dataset):
    """A run with label noise 0.3 gives the records of the plain loop fed the noisy training labels
    and the dataset's own validation labels."""
    s = Settings(dataset="synthetic", width=4, epochs=2, train_fraction=0.5, seed=3, label_noise=0.3)
    x, y = small_dataset.training_rows(0.5)
    by_hand = fit(s, x, noisy_labels(y, 0.3, 3, BINARY, 2), small_dataset.x_val, small_dataset.y_val)
    assert comparable(train(s, dataset=small_dataset)) == comparable(by_hand)


def test_an_uploaded_files_training_targets_get_noise_and_its_validation_ones_not(tmp_path):
    """A regression upload on hold-out: its validation prices are untouched, and round(0.3 * n) training
    prices are replaced by prices of its other training rows."""
    from test_cli_csv import prepared_of, write_regression

    from regviz import data

    prepared = prepared_of(write_regression(tmp_path / "houses.csv", n=200), "price")
    data.add_upload(prepared, holder="test_noise")
    try:
        dataset = data.load(prepared.name)
        clean = Settings.for_dataset(prepared.name)
        _, y, _, y_val = rows_of(clean, dataset)
        _, noisy, _, noisy_val = rows_of(clean.replace(label_noise=0.3), dataset)
    finally:
        data.release_uploads("test_noise")
    np.testing.assert_array_equal(noisy_val, y_val)
    changed = np.flatnonzero(noisy != y)
    assert len(changed) <= round(0.3 * len(y)) and len(changed) > 0.25 * len(y)  # equal prices may repeat
    assert set(noisy[changed].tolist()) <= set(y.tolist())
