"""Where settings meet data, training and the store: what the app and the command line call."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from regviz import data
from regviz.records import EpochRecord
from regviz.runs.manager import RunManager
from regviz.settings import Settings
from regviz.store import RunStore
from regviz.training import loop


def log_to_console(level: int = logging.INFO) -> None:
    """Show regviz's own log lines (runs started, cancelled, stored; files moved aside) on stderr."""
    log = logging.getLogger("regviz")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(level)


class RunService:
    """Trains runs, serves finished ones from the store, and shares trainings between sessions."""

    def __init__(self, store: RunStore | None = None, max_concurrent: int | None = None):
        self.store = store or RunStore()
        self.manager = RunManager(self._train, self.lookup, self.save, max_concurrent=max_concurrent)

    def lookup(self, settings: Settings) -> list[EpochRecord] | None:
        """All records of a finished run with these settings on this data, or None."""
        return self.store.get(settings, data.load(settings.dataset).version)

    def save(self, settings: Settings, records: list[EpochRecord]) -> None:
        """Keep a finished run for every later session."""
        self.store.put(settings, data.load(settings.dataset).version, records)

    def stream(self, settings: Settings, cancel: threading.Event | None = None) -> Iterator[EpochRecord]:
        """Records of a run: all at once from the store, else one per epoch as training goes (then stored)."""
        stored = self.lookup(settings)
        return iter(stored) if stored is not None else self.fresh(settings, cancel)

    def fresh(self, settings: Settings, cancel=None, save: bool = True) -> Iterator[EpochRecord]:
        """Train from scratch, one record per epoch; a complete run is stored when `save` is set."""
        records = []
        for record in self._train(settings, cancel):
            records.append(record)
            yield record
        if save and len(records) == settings.epochs:  # a cancelled run is never stored as finished
            self.save(settings, records)

    def warm_up(self, settings: Settings | None = None) -> threading.Thread:
        """In the background: load the dataset and run TensorFlow's one-time set-up on a tiny model."""
        thread = threading.Thread(
            target=self._warm, args=(settings or Settings(),), daemon=True, name="warm-up"
        )
        thread.start()
        return thread

    def _warm(self, settings: Settings) -> None:
        try:
            ds = data.load(settings.dataset)
        except data.DatasetUnavailable:
            return  # the page says so when someone asks for it
        tiny = settings.replace(epochs=1, width=4)
        # the first training in a process pays seconds of tensorflow start-up; pay it before anyone waits
        for _ in loop.fit(tiny, ds.x_train.take(256), ds.y_train[:256], ds.x_val.take(256), ds.y_val[:256]):
            pass
        loop.warm_rows(ds.training_rows(settings.train_fraction)[0], ds.x_val)  # the default run's rows

    def _train(self, settings: Settings, cancel: threading.Event | None) -> Iterator[EpochRecord]:
        return loop.train(settings, cancel, dataset=data.load(settings.dataset))
