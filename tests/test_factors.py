"""Penalty factors and dropout rate as variables (training/factors.py): Keras's arithmetic bit for bit,
and a trainer traced for one value trains any other value of the same structure without a new trace."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from regviz.model import build_model
from regviz.settings import Settings
from regviz.training import factors, trainers
from regviz.training.loop import train
from regviz.training.tf_private import seed_keras

N_COLS = 300


def randomised(settings: Settings):
    """The settings' Keras model with random (not initial) weights, drawn from a fixed seed."""
    seed_keras(settings.seed)
    model = build_model(settings, N_COLS)
    rng = np.random.default_rng(5)
    for v in model.trainable_variables:
        v.assign(rng.normal(0.0, 0.3, v.shape).astype("float32"))
    return model


def penalty(model) -> float:
    return float(tf.add_n(model.losses).numpy())


@pytest.mark.parametrize(
    "values",
    [{"l1": 3e-4}, {"l2": 1e-3}, {"l1": 1e-4, "l2": 3e-3}, {"l2": 0.1}],
    ids=["l1", "l2", "l1_l2", "big"],
)
def test_the_penalty_on_variables_is_keras_regularizers_penalty_bit_for_bit(values):
    settings = Settings(width=16, depth=3, **values)
    keras_model = randomised(settings)
    ours = randomised(settings)
    reference = penalty(keras_model)
    assert reference > 0
    factors.Factors(ours, settings)
    assert penalty(ours) == reference  # exactly: the same float32 operations in the same order


def test_the_penalty_follows_a_new_value_inside_one_traced_function():
    settings = Settings(width=16, l2=1e-3)
    model = randomised(settings)
    f = factors.Factors(model, settings)
    traced = tf.function(lambda: tf.add_n(model.losses))
    before = float(traced())
    f.assign(settings.replace(l2=1e-2))
    assert float(traced()) == pytest.approx(before * 10, rel=1e-6)
    assert traced.experimental_get_tracing_count() == 1
    assert penalty(randomised(settings.replace(l2=1e-2))) == float(traced())


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.7])
def test_dropout_on_variables_is_keras_dropout_bit_for_bit(rate):
    """The same kept units and the same scaled values as Keras's Dropout, step after step of its seed."""
    settings = Settings(width=16, depth=2, dropout=rate, seed=4)
    seed_keras(settings.seed)
    theirs = build_model(settings, N_COLS)
    seed_keras(settings.seed)
    ours = build_model(settings, N_COLS)
    factors.Factors(ours, settings)
    drop = [[la for la in m.layers if isinstance(la, layers.Dropout)][0] for m in (theirs, ours)]
    x = tf.constant(np.random.default_rng(0).normal(1.0, 1.0, (64, 16)).astype("float32"))
    calls = [tf.function(lambda x, la=la: la(x, training=True)) for la in drop]
    for _ in range(3):  # each call draws the next seed from the layer's generator
        a, b = (c(x).numpy() for c in calls)
        np.testing.assert_array_equal(a, b)
        assert 0 < (a == 0).mean() < 1
    np.testing.assert_array_equal(drop[1](x, training=False).numpy(), x.numpy())


def test_a_trainer_refuses_settings_of_another_structure():
    settings = Settings(width=16, l2=1e-3)
    f = factors.Factors(randomised(settings), settings)
    with pytest.raises(ValueError, match="do not fit"):
        f.assign(settings.replace(l1=1e-4))
    with pytest.raises(ValueError, match="do not fit"):
        f.assign(settings.replace(dropout=0.5))


def records(settings: Settings, dataset) -> list[dict]:
    out = [r.to_dict() for r in train(settings, dataset=dataset)]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in out]


def test_a_new_penalty_and_dropout_value_reuses_the_trained_trainer_and_gives_a_new_trainers_records(
    small_dataset,
):
    """The pool's key is the structure: a run with other values takes over the trainer (no new trace),
    and its records are exactly those of the same settings on a newly built trainer."""
    first = Settings(dataset="synthetic", epochs=2, batch_size=128, l1=1e-4, l2=1e-3, dropout=0.5)
    second = first.replace(l1=3e-4, l2=3e-3, dropout=0.2)
    n_cols = small_dataset.num_features
    trainers.pool.clear()
    fresh = records(second, small_dataset)  # on a newly built trainer
    trainers.pool.clear()
    records(first, small_dataset)
    [trainer] = trainers.pool.idle(second, n_cols)
    traces = trainer.run_steps.experimental_get_tracing_count()
    reused = records(second, small_dataset)
    assert trainers.pool.idle(second, n_cols) == [trainer]
    assert trainer.run_steps.experimental_get_tracing_count() == traces
    assert reused == fresh  # exactly
    assert reused != records(first, small_dataset)  # the values reached the training


def test_the_pool_key_names_which_factors_are_nonzero_not_their_values():
    s = Settings(l2=1e-3, dropout=0.5)
    key = trainers._architecture
    assert key(s, 10) == key(s.replace(l2=0.01, dropout=0.3), 10)
    assert key(s, 10) != key(s.replace(l2=0.0), 10)
    assert key(s, 10) != key(s.replace(l1=1e-4), 10)
    assert key(s, 10) != key(s.replace(dropout=0.0), 10)


def test_the_pool_evicts_past_an_architecture_whose_last_trainer_is_leased(monkeypatch):
    """A run that leases its architecture's last idle trainer leaves no empty entry behind: more
    architectures handed back meanwhile evict the least recently used trainer instead of failing
    (a class reached this within a minute: IndexError, and the worker's train thread died)."""

    class Stub:
        def __init__(self, settings, n_cols):
            self.width = settings.width

        def reset(self, settings):
            pass

    monkeypatch.setattr(trainers, "_Trainer", Stub)
    monkeypatch.setattr(trainers, "_architecture", lambda s, n: (s.width,))
    pool = trainers._Pool(2)
    wide = {w: Settings(width=w) for w in (4, 8, 16, 32)}
    with pool.lease(wide[4], N_COLS):
        pass
    with pool.lease(wide[4], N_COLS) as leased:  # the 4-unit architecture's last idle trainer
        for w in (8, 16, 32):
            with pool.lease(wide[w], N_COLS):
                pass
    assert [t.width for t in pool.idle(wide[32], N_COLS)] == [32]
    assert pool.idle(wide[4], N_COLS) == [leased]
    assert pool.idle(wide[8], N_COLS) == [] and pool.idle(wide[16], N_COLS) == []
