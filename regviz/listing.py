"""The book-style Keras listing of a run's settings: plain text, so the page server needs no Keras."""

from __future__ import annotations

from regviz.settings import Settings


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
