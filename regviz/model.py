"""The Keras model a run's settings describe, and the book-style code that builds it."""

from __future__ import annotations

import keras
from keras import layers, regularizers

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
    """Dense(width, relu) x depth, each with the penalty and followed by dropout; one sigmoid unit out."""
    # named here, not by keras's per-thread name counter: streamlit calls keras.backend.clear_session()
    # after every script run, which resets that counter under a model being built in a worker thread
    # (two layers named "dense" in one model)
    stack = [keras.Input(shape=(num_features,), name="reviews")]
    for i in range(1, settings.depth + 1):
        penalty = regularizer(settings)
        stack.append(
            layers.Dense(settings.width, activation="relu", kernel_regularizer=penalty, name=f"hidden_{i}")
        )
        if settings.dropout:
            stack.append(layers.Dropout(settings.dropout, name=f"dropout_{i}"))
    stack.append(layers.Dense(1, activation="sigmoid", name="output"))
    return keras.Sequential(stack, name="regviz")


def build_optimizer(settings: Settings) -> keras.optimizers.Optimizer:
    """The optimizer the settings name, with their learning rate."""
    kinds = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    return kinds[settings.optimizer](learning_rate=settings.learning_rate)


def hidden_layers(model: keras.Sequential) -> list[layers.Dense]:
    """The Dense layers that carry the penalty (all but the output)."""
    return [layer for layer in model.layers if isinstance(layer, layers.Dense)][:-1]


def keras_code(settings: Settings, num_features: int = 10000) -> str:
    """Runnable code in the style of the book's listings that builds and compiles this model."""
    reg = _regularizer_code(settings)
    lines = ["import keras", "from keras import layers, regularizers", "", "model = keras.Sequential(["]
    lines.append(f"    keras.Input(shape=({num_features},)),")
    for _ in range(settings.depth):
        lines.append(f'    layers.Dense({settings.width}, activation="relu"{reg}),')
        if settings.dropout:
            lines.append(f"    layers.Dropout({settings.dropout!r}),")
    lines += ['    layers.Dense(1, activation="sigmoid"),', "])"]
    lines += _compile_code(settings)
    return "\n".join(lines) + "\n"


def _regularizer_code(settings: Settings) -> str:
    if settings.l1 and settings.l2:
        return f", kernel_regularizer=regularizers.l1_l2(l1={settings.l1!r}, l2={settings.l2!r})"
    if settings.l1:
        return f", kernel_regularizer=regularizers.l1({settings.l1!r})"
    if settings.l2:
        return f", kernel_regularizer=regularizers.l2({settings.l2!r})"
    return ""


def _compile_code(settings: Settings) -> list[str]:
    names = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}
    opt = f"keras.optimizers.{names[settings.optimizer]}(learning_rate={settings.learning_rate!r})"
    return [
        f"model.compile(optimizer={opt},",
        '              loss="binary_crossentropy",',
        '              metrics=["accuracy"])',
        f"# history = model.fit(x_train, y_train, epochs={settings.epochs},",
        f"#                     batch_size={settings.batch_size},",
        "#                     validation_data=(x_val, y_val))",
    ]
