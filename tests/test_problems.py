"""Problem types (regviz/problems.py): each dataset's head, loss and metrics, checked against plain Keras
and formulas written here; the offline multiclass dataset overfits; the book's Reuters findings."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import regviz_batches

from regviz import data, problems
from regviz.listing import keras_code
from regviz.model import build_model, build_optimizer
from regviz.settings import Settings
from regviz.training.loop import fit, train
from regviz.training.metrics import precision_recall, top_k, validation_metrics
from regviz.training.tf_private import seed_keras

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REUTERS = Path(os.environ.get(data.REUTERS_PATH_ENV) or SHARED / "reuters_r21578.npz")


@pytest.mark.parametrize(
    "dataset, units, activation, loss",
    [
        ("imdb", 1, "sigmoid", "binary_crossentropy"),
        ("synthetic", 1, "sigmoid", "binary_crossentropy"),
        ("reuters", 46, "softmax", "sparse_categorical_crossentropy"),
        ("topics", 46, "softmax", "sparse_categorical_crossentropy"),
    ],
)
def test_the_head_and_the_loss_follow_the_datasets_problem_type(dataset, units, activation, loss):
    """The model's output layer and the listing's head and loss, from the dataset's problem type."""
    settings = Settings.for_dataset(dataset)
    out = build_model(settings, 100).layers[-1]
    assert out.units == units and out.activation.__name__ == activation
    code = keras_code(settings, 100)
    assert f'layers.Dense({units}, activation="{activation}")' in code and f'loss="{loss}"' in code


def test_last_width_narrows_the_last_hidden_layer_only():
    """The book's bottleneck: Dense(64) -> Dense(4) -> Dense(46); 0 means as wide as the others."""
    model = build_model(Settings.for_dataset("reuters", last_width=4), 100)
    assert [layer.units for layer in model.layers] == [64, 4, 46]
    assert [layer.units for layer in build_model(Settings(depth=3, width=8), 100).layers] == [8, 8, 8, 1]
    assert "layers.Dense(4, activation=\"relu\")" in keras_code(Settings.for_dataset("reuters", last_width=4))


def test_each_dataset_declares_its_problem_type():
    for name in ("imdb", "synthetic"):
        assert problems.of_dataset(name)[0].kind == problems.BINARY
    for name in ("reuters", "topics"):
        assert problems.of_dataset(name) == (problems.PROBLEMS[problems.MULTICLASS], 46)
    topics = data.topics(n_train=1500, n_test=100)
    assert (topics.problem, topics.classes) == (problems.MULTICLASS, 46)
    assert set(np.unique(topics.y_train)) <= set(range(46)) and len(np.unique(topics.y_train)) > 20


def test_precision_recall_and_top_k_against_formulas_written_here():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500).astype(np.float32)
    called = rng.random(500) < 0.4
    tp = sum(1 for a, b in zip(y, called, strict=True) if a == 1 and b)
    assert precision_recall(y, called) == pytest.approx((tp / called.sum(), tp / (y == 1).sum()))
    assert precision_recall(np.zeros(3), np.zeros(3, bool)) == (None, None)
    p = rng.random((300, 46))
    labels = rng.integers(0, 46, 300)
    by_hand = np.mean([labels[i] in sorted(range(46), key=lambda c: -p[i, c])[:3] for i in range(300)])
    assert top_k(labels.astype(np.float32), p, 3) == pytest.approx(by_hand)
    metrics = validation_metrics("multiclass", labels.astype(np.float32), p)
    assert metrics["val_accuracy"] == pytest.approx(np.mean(p.argmax(1) == labels))
    assert metrics["val_auc"] is None


@pytest.fixture(scope="module")
def small_topics() -> data.Dataset:
    """A small offline multiclass set: 2000 training and 1000 validation newswires over 46 topics."""
    return data.topics(n_train=3000, n_test=200)


def test_multiclass_learning_equals_plain_keras_fit_on_the_same_batches(small_topics):
    """Fed the same batches from the same initial weights, Keras's fit (softmax, sparse categorical
    cross-entropy, accuracy, top-3 accuracy) and regviz give the same epochs, to 1e-3."""
    settings = Settings.for_dataset("topics", width=32, epochs=3, batch_size=256)
    ds = small_topics
    ours = list(fit(settings, ds.x_train, ds.y_train, ds.x_val, ds.y_val))
    seed_keras(settings.seed)
    model = build_model(settings, ds.num_features)
    model.compile(
        optimizer=build_optimizer(settings), loss="sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")],
    )  # fmt: skip
    x, y = tf.constant(ds.x_train.to_dense()), tf.constant(ds.y_train.astype(np.int32))
    batches, steps = regviz_batches(x, y, settings)
    val = (ds.x_val.to_dense(), ds.y_val.astype(np.int32))
    theirs = model.fit(
        batches, epochs=settings.epochs, steps_per_epoch=steps, validation_data=val,
        shuffle=False, verbose=0,
    ).history  # fmt: skip
    assert theirs["val_loss"][-1] < theirs["val_loss"][0]  # keras learned something
    np.testing.assert_allclose([r.val_data_loss for r in ours], theirs["val_loss"], rtol=1e-3)
    np.testing.assert_allclose([r.val_accuracy for r in ours], theirs["val_accuracy"], atol=2e-3)
    np.testing.assert_allclose([r.val_top3 for r in ours], theirs["val_top3"], atol=2e-3)
    np.testing.assert_allclose([r.loss for r in ours], theirs["loss"], rtol=1e-3)
    np.testing.assert_allclose([r.accuracy for r in ours], theirs["accuracy"], atol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_the_offline_multiclass_dataset_overfits_with_the_books_network(seed):
    """topics, 64-64 (its default), 20 epochs: validation loss reaches its minimum, then rises >= 20 %."""
    records = list(train(Settings.for_dataset("topics", seed=seed)))
    val = [r.val_data_loss for r in records]
    best = int(np.argmin(val))
    assert best < 15 and max(val[best:]) >= 1.2 * val[best], val


@pytest.mark.slow
@pytest.mark.skipif(not REUTERS.is_file(), reason=f"no Reuters file at {REUTERS}")
def test_the_books_reuters_findings(monkeypatch):
    """Chapter 3 on the real newswires, on the mean of three seeds' curves: 64-64 overfits (validation
    loss lowest by epoch 12, then >= 8 % higher at epoch 20) and reaches validation accuracy >= 0.75;
    the 64-4 bottleneck's best validation accuracy is at least 4 points lower."""
    monkeypatch.setenv(data.REUTERS_PATH_ENV, str(REUTERS))

    def mean_curves(**fields):
        runs = [list(train(Settings.for_dataset("reuters", seed=seed, **fields))) for seed in range(3)]
        loss = np.mean([[r.val_data_loss for r in rs] for rs in runs], axis=0)
        accuracy = np.mean([[r.val_accuracy for r in rs] for rs in runs], axis=0)
        return loss, accuracy

    loss, accuracy = mean_curves()
    best = int(np.argmin(loss))
    assert best + 1 <= 12 and loss[-1] >= 1.08 * loss[best], loss
    assert accuracy.max() >= 0.75
    _, narrow = mean_curves(last_width=4)
    assert narrow.max() <= accuracy.max() - 0.04, (narrow.max(), accuracy.max())


BOSTON = Path(os.environ.get(data.BOSTON_PATH_ENV) or SHARED / "boston_housing.npz")


def test_a_regression_dataset_gets_one_linear_unit_and_the_mean_squared_error():
    settings = Settings.for_dataset("boston")
    out = build_model(settings, 13).layers[-1]
    assert out.units == 1 and out.activation.__name__ == "linear"
    code = keras_code(settings, 13)
    assert "layers.Dense(1)," in code and 'loss="mse"' in code and 'metrics=["mae"]' in code
    assert (settings.width, settings.batch_size, settings.validation) == (64, 16, "kfold")  # the book's


def test_standardising_uses_the_training_part_only():
    """Mean 0 and standard deviation 1 on the training part; the other parts get the training part's
    transform, whatever their own values: changing every validation row changes nothing on the
    training side."""
    rng = np.random.default_rng(0)
    train_rows = data.DenseRows(rng.normal(5.0, 3.0, (200, 4)).astype(np.float32))
    val_rows = data.DenseRows(rng.normal(-40.0, 9.0, (50, 4)).astype(np.float32))
    t, v = data.standardize(train_rows, val_rows)
    np.testing.assert_allclose(t.values.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(t.values.std(axis=0), 1.0, atol=1e-5)
    mean, std = train_rows.values.mean(axis=0), train_rows.values.std(axis=0)
    np.testing.assert_allclose(v.values, (val_rows.values - mean) / std, rtol=1e-5)
    t2, _ = data.standardize(train_rows, data.DenseRows(val_rows.values * 1000 + 7))
    np.testing.assert_array_equal(t.values, t2.values)


def test_a_runs_training_side_never_sees_its_validation_rows(monkeypatch):
    """Two datasets that differ only in their validation rows train the same training curve."""
    base = data.houses(n_train=300, n_test=50)
    other = dataclasses.replace(base, x_val=data.DenseRows(base.x_val.values * 3.0 + 100.0))
    settings = Settings.for_dataset("houses", epochs=3, validation="holdout")
    a, b = list(train(settings, dataset=base)), list(train(settings, dataset=other))
    assert [r.data_loss for r in a] == [r.data_loss for r in b] and [r.mae for r in a] == [r.mae for r in b]
    assert a[-1].val_data_loss != b[-1].val_data_loss


def test_regression_learning_equals_plain_keras_fit_on_the_same_batches():
    """Standardised houses, the same batches from the same initial weights: Keras's fit (mse, mae)
    and regviz's dense path give the same epochs, to 1e-3."""
    ds = data.houses()
    settings = Settings.for_dataset("houses", epochs=5, width=32, validation="holdout")
    x_train, x_val = data.standardize(ds.x_train, ds.x_val)
    ours = list(train(settings, dataset=ds))
    seed_keras(settings.seed)
    model = build_model(settings, 13)
    model.compile(optimizer=build_optimizer(settings), loss="mse", metrics=["mae"])
    x, y = tf.constant(x_train.values), tf.constant(ds.y_train)
    batches, steps = regviz_batches(x, y, settings)
    theirs = model.fit(
        batches, epochs=settings.epochs, steps_per_epoch=steps,
        validation_data=(x_val.values, ds.y_val), shuffle=False, verbose=0,
    ).history  # fmt: skip
    np.testing.assert_allclose([r.val_data_loss for r in ours], theirs["val_loss"], rtol=1e-3)
    np.testing.assert_allclose([r.val_mae for r in ours], theirs["val_mae"], rtol=1e-3)
    np.testing.assert_allclose([r.loss for r in ours], theirs["loss"], rtol=1e-3)
    np.testing.assert_allclose([r.mae for r in ours], theirs["mae"], rtol=1e-3)
    assert all(r.accuracy is None and r.val_accuracy is None for r in ours)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_the_offline_regression_dataset_overfits_with_the_books_network(seed):
    """houses with its defaults (64-64, batch 16, 4-fold K-fold, 300 epochs): the folds' mean
    validation loss reaches its minimum, then rises >= 20 % above it; on hold-out too."""
    settings = Settings.for_dataset("houses", seed=seed)
    folds = [[r.val_data_loss for r in train(fold)] for fold in settings.fold_runs()]
    holdout = [[r.val_data_loss for r in train(settings.replace(validation="holdout"))]]
    for curves in (folds, holdout):
        val = np.mean(curves, axis=0)
        best = int(np.argmin(val))
        assert best < 290 and val[best:].max() >= 1.2 * val[best], (best, val[best:].max() / val[best])


@pytest.mark.slow
@pytest.mark.skipif(not BOSTON.is_file(), reason=f"no Boston Housing file at {BOSTON}")
def test_boston_hold_out_reaches_the_books_error(monkeypatch):
    """Boston, the book's 64-64 at batch 16, 300 epochs, hold-out of 101 tracts: best validation MAE below 3.5
    ($3,500), the book's order of magnitude (its 4-fold mean is about 2.5)."""
    monkeypatch.setenv(data.BOSTON_PATH_ENV, str(BOSTON))
    records = list(train(Settings.for_dataset("boston", validation="holdout")))
    assert min(r.val_mae for r in records) < 3.5


@pytest.mark.slow
@pytest.mark.skipif(not BOSTON.is_file(), reason=f"no Boston Housing file at {BOSTON}")
def test_boston_four_fold_reaches_the_books_error(monkeypatch):
    """The book's Boston experiment: 4-fold K-fold, 64-64, batch 16, 100 epochs: the mean validation
    MAE at its best is below 3.5 ($3,500); each fold standardised on its own training part."""
    monkeypatch.setenv(data.BOSTON_PATH_ENV, str(BOSTON))
    settings = Settings.for_dataset("boston", validation="kfold", folds=4, epochs=100)
    folds = [list(train(fold)) for fold in settings.fold_runs()]
    mean = np.mean([[r.val_mae for r in records] for records in folds], axis=0)
    assert len(folds) == 4 and mean.min() < 3.5, mean.min()
