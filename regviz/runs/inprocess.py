"""Training in this process, for the command line and tests: the same training code the workers run.

Kept out of `service.py` so that the page server's modules never import the training loop: the app
trains in worker processes (`local.py`) or on Ray (`ray_cluster.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from regviz.records import EpochRecord
from regviz.runs.worker import train_here
from regviz.service import RunService
from regviz.settings import Settings

__all__ = ["HereService", "train_here"]


class HereService(RunService):
    """A RunService that can also train a run in this process and store it (the command line's path)."""

    def stream(self, settings: Settings, cancel: threading.Event | None = None) -> Iterator[EpochRecord]:
        """Records of a run: all at once from the store, else one per epoch as training goes (then stored)."""
        stored = self.lookup(settings)
        return iter(stored) if stored is not None else self.fresh(settings, cancel)

    def fresh(self, settings: Settings, cancel=None, save: bool = True) -> Iterator[EpochRecord]:
        """Train from scratch in this process, one record per epoch; a complete run is stored if `save`."""
        records = []
        for record in train_here(settings, cancel):
            records.append(record)
            yield record
        if save and len(records) == settings.epochs:  # a cancelled run is never stored as finished
            self.save(settings, records)
