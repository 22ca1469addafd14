"""The Keras model a run's settings describe, its penalty, and the book-style code shown for it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers, regularizers

from regviz.listing import keras_code
from regviz.model import build_model, build_optimizer
from regviz.settings import Settings

FEATURES = 300  # small input keeps these models quick to build

CASES = {
    "book-default": Settings(),
    "l1-only": Settings(depth=1, width=4, l1=1e-3),
    "l2-only-dropout": Settings(depth=3, width=8, l2=1e-3, dropout=0.5),
    "l1-l2-dropout": Settings(depth=4, width=32, l1=1e-4, l2=3e-3, dropout=0.2),
    "one-unit-adam": Settings(depth=2, width=1, dropout=0.8, optimizer="adam", learning_rate=0.01),
    "sgd-l2-big": Settings(depth=2, width=64, l2=0.1, optimizer="sgd", learning_rate=0.3),
}


def dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, layers.Dense)]


def factor(reg, name: str) -> float | None:
    """A regularizer's factor as a Python float (keras keeps L1's and L2's as tensors)."""
    value = getattr(reg, name, None)
    return None if value is None else float(value)


def describe(model) -> list[tuple]:
    """Each layer as plain values: kind, units, activation, regularizer class and factors, dropout rate."""
    out = []
    for layer in model.layers:
        if isinstance(layer, layers.Dense):
            reg = layer.kernel_regularizer
            factors = None if reg is None else (type(reg).__name__, factor(reg, "l1"), factor(reg, "l2"))
            out.append(("Dense", layer.units, layer.get_config()["activation"], factors,
                        layer.bias_regularizer, layer.activity_regularizer))
        elif isinstance(layer, layers.Dropout):
            out.append(("Dropout", layer.rate))
        else:
            out.append((type(layer).__name__,))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_dense_stack_depth_width_and_activations(case):
    """depth hidden Dense(width, relu) layers and one Dense(1, sigmoid) out, on num_features inputs."""
    s = CASES[case]
    model = build_model(s, FEATURES)
    dense = dense_layers(model)
    assert len(dense) == s.depth + 1
    assert [d.units for d in dense] == [s.width] * s.depth + [1]
    assert [d.get_config()["activation"] for d in dense] == ["relu"] * s.depth + ["sigmoid"]
    assert model.input_shape == (None, FEATURES)
    assert model.output_shape == (None, 1)


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_regularizer_class_and_factors(case):
    """l1 only -> L1, l2 only -> L2, both -> L1L2, with their factors; none when 0; never on the output."""
    s = CASES[case]
    dense = dense_layers(build_model(s, FEATURES))
    for layer in dense[:-1]:
        reg = layer.kernel_regularizer
        if s.l1 and s.l2:
            assert type(reg) is regularizers.L1L2
            assert (factor(reg, "l1"), factor(reg, "l2")) == pytest.approx((s.l1, s.l2), rel=1e-7)
        elif s.l1:
            assert type(reg) is regularizers.L1 and factor(reg, "l1") == pytest.approx(s.l1, rel=1e-7)
        elif s.l2:
            assert type(reg) is regularizers.L2 and factor(reg, "l2") == pytest.approx(s.l2, rel=1e-7)
        else:
            assert reg is None
        assert layer.bias_regularizer is None and layer.activity_regularizer is None
    assert dense[-1].kernel_regularizer is None


@pytest.mark.parametrize("case", list(CASES))
def test_dropout_after_every_hidden_layer(case):
    """With dropout > 0 a Dropout(rate) follows every hidden Dense layer (not the output); none when 0."""
    s = CASES[case]
    kinds = [type(layer).__name__ for layer in build_model(s, FEATURES).layers]
    expected = (["Dense", "Dropout"] if s.dropout else ["Dense"]) * s.depth + ["Dense"]
    assert kinds == expected
    rates = [layer.rate for layer in build_model(s, FEATURES).layers if isinstance(layer, layers.Dropout)]
    assert rates == pytest.approx([s.dropout] * len(rates))


@pytest.mark.parametrize("case", list(CASES))
def test_penalty_is_l2_sum_of_squares_plus_l1_sum_of_abs_of_hidden_kernels(case):
    """sum(model.losses) equals l2*sum(w^2) + l1*sum(|w|) over the hidden kernels, computed in NumPy."""
    s = CASES[case]
    model = build_model(s, FEATURES)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    weights = model.get_weights()  # kernel, bias per Dense layer, output last
    hidden_kernels = [w.astype(np.float64) for w in weights[:-2:2]]
    assert len(hidden_kernels) == s.depth
    expected = sum(s.l2 * np.sum(k**2) + s.l1 * np.sum(np.abs(k)) for k in hidden_kernels)
    got = float(sum(float(loss) for loss in model.losses))
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert (got > 0) == bool(s.l1 or s.l2)


@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_kind_and_learning_rate(case):
    """build_optimizer gives the named optimizer with the settings' learning rate."""
    s = CASES[case]
    opt = build_optimizer(s)
    names = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    assert type(opt) is names[s.optimizer]
    assert float(opt.learning_rate) == pytest.approx(s.learning_rate, rel=1e-6)


def run_code(code: str):
    namespace: dict = {}
    exec(compile(code, "<keras_code>", "exec"), namespace)
    return namespace["model"]


@pytest.mark.parametrize("case", list(CASES))
def test_keras_code_builds_the_same_model_and_compiles(case):
    """The shown code, executed, builds the layers build_model builds and compiles with the same optimizer."""
    s = CASES[case]
    code = keras_code(s)
    model = run_code(code)
    assert describe(model) == describe(build_model(s, 10000))
    assert model.input_shape == (None, 10000)
    assert model.compiled
    assert model.loss == "binary_crossentropy"
    assert type(model.optimizer) is type(build_optimizer(s))
    assert float(model.optimizer.learning_rate) == pytest.approx(s.learning_rate, rel=1e-6)
    assert f"epochs={s.epochs}" in code and f"batch_size={s.batch_size}" in code


def test_keras_code_uses_the_given_input_width():
    """keras_code(settings, num_features) builds a model for that many inputs."""
    model = run_code(keras_code(Settings(l2=1e-3), FEATURES))
    assert model.input_shape == (None, FEATURES)
    assert describe(model) == describe(build_model(Settings(l2=1e-3), FEATURES))


def test_keras_code_keeps_every_digit_of_the_factors():
    """A penalty, dropout rate or learning rate between slider stops is shown exactly, not rounded."""
    s = Settings(l1=1.23456789e-4, l2=0.00123456789, dropout=0.123456789, learning_rate=0.000123456789)
    model = run_code(keras_code(s, FEATURES))
    assert describe(model) == describe(build_model(s, FEATURES))
    assert float(model.optimizer.learning_rate) == pytest.approx(s.learning_rate, rel=1e-7)


def test_model_builds_when_keras_clears_its_session_mid_build(monkeypatch):
    """Streamlit clears the Keras session after every script run, also while a worker builds a model.

    That resets Keras's layer-name counter; a model built across the reset still has unique layer names.
    """
    import regviz.model

    real = regviz.model.regularizer

    def clearing(settings):
        keras.backend.clear_session(free_memory=False)  # as streamlit's script runner does, between layers
        return real(settings)

    monkeypatch.setattr(regviz.model, "regularizer", clearing)
    model = build_model(Settings(depth=3, width=4, l2=1e-3, dropout=0.5), 20)
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names) == 7
