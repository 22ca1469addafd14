"""The book-style Keras listing of a run's settings: plain text, so the page server needs no Keras."""

from __future__ import annotations

from regviz import problems
from regviz.settings import Settings


def keras_code(settings: Settings, num_features: int = 10000) -> str:
    """Runnable code in the style of the book's listings that builds and compiles this model."""
    reg = _regularizer_code(settings)
    lines = ["import keras", "from keras import layers, regularizers", "", "model = keras.Sequential(["]
    lines.append(f"    keras.Input(shape=({num_features},)),")
    for units in settings.widths():
        lines.append(f'    layers.Dense({units}, activation="relu"{reg}),')
        if settings.dropout:
            lines.append(f"    layers.Dropout({settings.dropout!r}),")
    problem, classes = problems.of_dataset(settings.dataset)
    head = f", activation={problem.activation!r}" if problem.activation else ""
    lines += [f"    layers.Dense({problem.units(classes)}{head}),".replace("'", '"'), "])"]
    lines += _compile_code(settings, problem)
    return "\n".join(lines) + "\n"


def _regularizer_code(settings: Settings) -> str:
    if settings.l1 and settings.l2:
        return f", kernel_regularizer=regularizers.l1_l2(l1={settings.l1!r}, l2={settings.l2!r})"
    if settings.l1:
        return f", kernel_regularizer=regularizers.l1({settings.l1!r})"
    if settings.l2:
        return f", kernel_regularizer=regularizers.l2({settings.l2!r})"
    return ""


METRICS_CODE = {  # keras's names of each problem type's metrics
    "binary": '["accuracy", keras.metrics.AUC(), keras.metrics.Precision(), keras.metrics.Recall()]',
    "multiclass": '["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")]',
    "regression": '["mae"]',
}


def _compile_code(settings: Settings, problem) -> list[str]:
    names = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}
    opt = f"keras.optimizers.{names[settings.optimizer]}(learning_rate={settings.learning_rate!r})"
    return [
        f"model.compile(optimizer={opt},",
        f'              loss="{problem.keras_loss}",',
        f"              metrics={METRICS_CODE[problem.kind]})",
        f"# history = model.fit(x_train, y_train, epochs={settings.epochs},",
        f"#                     batch_size={settings.batch_size},",
        "#                     validation_data=(x_val, y_val))",
    ]
