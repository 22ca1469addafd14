"""What both stores of finished runs share (`store.py` for SQLite, `store_postgres.py`): the row key, the
records' encoding, what a damaged row raises, and how a repair is reported. Neither store imports the
other for these, so the two have no import circle."""

from __future__ import annotations

import hashlib
import json
import logging
import warnings

import regviz.training.version
from regviz.records import EpochRecord
from regviz.settings import Settings

ENV_VAR = "REGVIZ_STORE"
APPLICATION_ID = 0x52675A31  # "RgZ1" in the sqlite header; PostgreSQL's advisory lock id for set-up
BAD_ROW = (ValueError, TypeError, KeyError)  # what decoding a damaged records column can raise

log = logging.getLogger("regviz")


class StoreError(RuntimeError):
    """The store cannot be used where it is (unwritable place, newer schema); the message says what to do."""


def run_key(settings: Settings, data_version: str) -> str:
    """Row key; changes with the settings, the training code (TRAINING_VERSION) or the data, never stale."""
    # read at call time so a bumped TRAINING_VERSION takes effect without re-importing this module
    blob = json.dumps([settings.key(), regviz.training.version.TRAINING_VERSION, data_version])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def encode(records: list[EpochRecord]) -> str:
    """Records as a JSON list, in epoch order."""
    return json.dumps([r.to_dict() for r in sorted(records, key=lambda r: r.epoch)])


def decode(blob: str) -> list[EpochRecord]:
    """Inverse of encode; ValueError, TypeError or KeyError (BAD_ROW) when the JSON is not such a list."""
    items = json.loads(blob)
    if not isinstance(items, list):
        raise TypeError(f"expected a JSON list, found {type(items).__name__}")
    return sorted((EpochRecord.from_dict(d) for d in items), key=lambda r: r.epoch)


def warn(message: str) -> None:
    """A repair, said twice: the warning reaches a developer's console and pytest, the log a server's log."""
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)
