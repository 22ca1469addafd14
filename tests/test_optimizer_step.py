"""The fused optimizer step: the same updates as Keras's own `optimizer.apply`, and None where it has
no fused form."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, regularizers

from regviz.model import build_model, build_optimizer
from regviz.settings import Settings
from regviz.training.optimizer_step import fused_step

STEPS = 6


def twin_models(optimizer_factory):
    """Two identical small models, each with its own built optimizer of the same kind."""
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((20,)), layers.Dense(8, activation="relu"), layers.Dense(1)])
        optimizer = optimizer_factory()
        optimizer.build(model.trainable_variables)
        models.append((model, optimizer))
    return models


def gradient_sequence(variables, seed=0):
    """STEPS random gradient lists, of mixed scale so the slots matter, some entries exactly zero."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(STEPS):
        grads = []
        for v in variables:
            g = rng.normal(size=v.shape) * (10.0 ** rng.integers(-3, 2))
            g[rng.random(v.shape) < 0.2] = 0.0
            grads.append(tf.constant(g, tf.float32))
        steps.append(grads)
    return steps


@pytest.mark.parametrize(
    "factory",
    [
        lambda: keras.optimizers.RMSprop(),
        lambda: keras.optimizers.RMSprop(learning_rate=0.05, rho=0.8, epsilon=1e-4),
        lambda: keras.optimizers.Adam(),
        lambda: keras.optimizers.Adam(learning_rate=0.02, beta_1=0.7, beta_2=0.95, epsilon=1e-5),
    ],
    ids=["rmsprop", "rmsprop-options", "adam", "adam-options"],
)
def test_fused_step_equals_keras_apply(factory):
    """Six steps of the fused kernels leave weights, slots and iterations as Keras's apply does.

    To 1e-6 for RMSprop; to 2e-5 for Adam, whose kernel forms 1 - beta_2 in float32 (0.00099998713 for
    0.999, the nearest float32 steps apart) where Keras forms it in double: v differs by 1.3e-5 relative.
    """
    rtol = 2e-5 if isinstance(factory(), keras.optimizers.Adam) else 1e-6
    (ours, our_opt), (theirs, their_opt) = twin_models(factory)
    step = fused_step(our_opt, ours.trainable_variables)
    assert step is not None
    apply = tf.function(step, autograph=False)  # as training calls it: inside a traced function
    sequences = [gradient_sequence(m.trainable_variables) for m in (ours, theirs)]
    for ours_grads, theirs_grads in zip(*sequences, strict=True):
        apply(ours_grads)
        their_opt.apply(theirs_grads, theirs.trainable_variables)
    for a, b in zip(our_opt.variables + ours.variables, their_opt.variables + theirs.variables, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-7, err_msg=a.path)
    assert int(our_opt.iterations) == STEPS


@pytest.mark.parametrize(
    "factory",
    [
        lambda: keras.optimizers.SGD(),
        lambda: keras.optimizers.RMSprop(momentum=0.9),
        lambda: keras.optimizers.RMSprop(centered=True),
        lambda: keras.optimizers.Adam(amsgrad=True),
        lambda: keras.optimizers.RMSprop(clipnorm=1.0),
        lambda: keras.optimizers.Adam(weight_decay=0.01),
        lambda: keras.optimizers.RMSprop(use_ema=True),
        lambda: keras.optimizers.AdamW(),
    ],
    ids=["sgd", "momentum", "centered", "amsgrad", "clipnorm", "weight-decay", "ema", "adamw"],
)
def test_no_fused_step_where_keras_does_more(factory):
    """Optimizers and options the fused kernels do not implement get None: Keras's apply runs instead."""
    (model, optimizer), _ = twin_models(factory)
    assert fused_step(optimizer, model.trainable_variables) is None


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_the_app_s_optimizers_are_fused(optimizer):
    """The settings' RMSprop and Adam, with a penalty on the model, take the fused step."""
    settings = Settings(optimizer=optimizer, l1=1e-4, l2=1e-3, dropout=0.5, learning_rate=0.01)
    model = build_model(settings, 50)
    built = build_optimizer(settings)
    built.build(model.trainable_variables)
    assert fused_step(built, model.trainable_variables) is not None


def test_reset_clears_the_step_s_own_state():
    """After a step, reset() zeroes the momentum slot the RMSprop kernel keeps beside Keras's slots."""
    (model, optimizer), _ = twin_models(keras.optimizers.RMSprop)
    step = fused_step(optimizer, model.trainable_variables)
    step(gradient_sequence(model.trainable_variables)[0])
    assert any(np.abs(np.asarray(v)).sum() > 0 for v in step.variables)
    step.reset()
    assert all(not np.asarray(v).any() for v in step.variables)


def test_regularized_model_trains_the_same_with_either_step():
    """A penalised model, trained by GradientTape with the fused step or Keras's apply, ends equal (1e-5)."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.random((64, 20)) < 0.2, tf.float32)
    y = tf.constant(rng.random((64, 1)) < 0.5, tf.float32)
    ends = []
    for fused in (True, False):
        keras.utils.set_random_seed(5)
        model = keras.Sequential([
            keras.Input((20,)),
            layers.Dense(8, activation="relu", kernel_regularizer=regularizers.l1_l2(1e-3, 1e-3)),
            layers.Dense(1, activation="sigmoid"),
        ])  # fmt: skip
        optimizer = keras.optimizers.RMSprop(learning_rate=0.01)
        optimizer.build(model.trainable_variables)
        step = fused_step(optimizer, model.trainable_variables) if fused else None
        for _ in range(10):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(keras.losses.binary_crossentropy(y, model(x))) + tf.add_n(model.losses)
            grads = tape.gradient(loss, model.trainable_variables)
            step(grads) if step else optimizer.apply(grads, model.trainable_variables)
        ends.append([np.asarray(v) for v in model.trainable_variables])
    for a, b in zip(*ends, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
