"""The Keras model a run's settings describe (its listing as text is in listing.py)."""

from __future__ import annotations

import keras
from keras import layers, regularizers

from regviz import problems
from regviz.settings import Settings


def regularizer(settings: Settings) -> regularizers.Regularizer | None:
    """The kernel penalty: l1, l2, both (l1_l2) or none."""
    if settings.l1 and settings.l2:
        return regularizers.l1_l2(l1=settings.l1, l2=settings.l2)
    if settings.l1:
        return regularizers.l1(settings.l1)
    if settings.l2:
        return regularizers.l2(settings.l2)
    return None


def build_model(settings: Settings, num_features: int) -> keras.Sequential:
    """Dense(width, relu) x depth (the last one `last_width` wide when set), each with the penalty and
    followed by dropout; then the problem's head: one sigmoid unit (binary), a softmax over the classes
    (multiclass) or one linear unit (regression)."""
    # named here, not by keras's per-thread name counter: streamlit calls keras.backend.clear_session()
    # after every script run, which resets that counter under a model being built in a worker thread
    # (two layers named "dense" in one model); the input is a row's features whatever the dataset (a
    # review's or a newswire's multi-hot words, a house's standardised columns, an uploaded file's)
    stack = [keras.Input(shape=(num_features,), name="features")]
    for i, units in enumerate(settings.widths(), 1):
        penalty = regularizer(settings)
        stack.append(layers.Dense(units, activation="relu", kernel_regularizer=penalty, name=f"hidden_{i}"))
        if settings.dropout:
            stack.append(layers.Dropout(settings.dropout, name=f"dropout_{i}"))
    problem, classes = problems.of_dataset(settings.dataset)
    stack.append(layers.Dense(problem.units(classes), activation=problem.activation, name="output"))
    return keras.Sequential(stack, name="regviz")


def build_optimizer(settings: Settings) -> keras.optimizers.Optimizer:
    """The optimizer the settings name, with their learning rate."""
    kinds = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    return kinds[settings.optimizer](learning_rate=settings.learning_rate)


def hidden_layers(model: keras.Sequential) -> list[layers.Dense]:
    """The Dense layers that carry the penalty (all but the output)."""
    return [layer for layer in model.layers if isinstance(layer, layers.Dense)][:-1]
