"""A process's one-time TensorFlow set-up, paid before anyone waits for a run."""

from __future__ import annotations

from regviz import data
from regviz.settings import Settings
from regviz.training import loop


def warm(dataset: str, settings: Settings | None = None) -> bool:
    """Load the dataset, train a tiny model on it once, trace the batches functions of its default batch
    size, and make the default run's tensors.

    Returns False when the dataset cannot be loaded (the page says so when someone asks for it).
    """
    settings = (settings or Settings()).replace(dataset=dataset)
    try:
        ds = data.load(dataset)
    except data.DatasetUnavailable:
        return False
    tiny = settings.replace(epochs=1, width=4)
    for _ in loop.fit(tiny, ds.x_train.take(256), ds.y_train[:256], ds.x_val.take(256), ds.y_val[:256]):
        pass
    if isinstance(ds.x_train, data.SparseRows):
        loop.warm_batches(ds.x_train, ds.y_train, settings.batch_size)
    loop.warm_rows(ds.training_rows(settings.train_fraction)[0], ds.x_val)
    return True
