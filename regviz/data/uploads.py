"""Uploaded files held by this process: the server's sessions' files, or those a worker was sent. Never
on disk; each is forgotten once every session holding it has ended."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from regviz.data.dataset import Dataset, DatasetInfo, DatasetUnavailable, describe

if TYPE_CHECKING:  # pandas, which csvfile reads with, is not the page server's to import at start
    from regviz.data.csvfile import Prepared


class UploadMissing(DatasetUnavailable):
    """A link or a run names an uploaded file this process does not hold (another session's, or gone)."""


@dataclass
class _Held:
    prepared: Prepared
    dataset: Dataset
    info: DatasetInfo  # described once: the page asks at every script run
    payload: bytes | None = None  # made when a worker first needs it
    holders: set[str] = field(default_factory=set)


_lock = threading.Lock()
_held: dict[str, _Held] = {}


def add_upload(prepared: Prepared | bytes, holder: str = "") -> Prepared:
    """Hold an uploaded file (prepared, or its payload as a worker receives it) for `holder` (a
    session), until every holder has released it or it is forgotten."""
    payload = bytes(prepared) if isinstance(prepared, bytes | bytearray) else None
    if payload is not None:
        from regviz.data.csvfile import Prepared

        prepared = Prepared.from_payload(payload)
    with _lock:
        held = _held.get(prepared.name)
    if held is None:  # prepared outside the lock: splitting a large file takes a moment
        dataset = prepared.dataset()
        with _lock:
            held = _held.setdefault(prepared.name, _Held(prepared, dataset, describe(dataset), payload))
    with _lock:
        held.holders.add(holder)
    return held.prepared


def release_uploads(holder: str) -> list[str]:
    """The holder (a session) ended: the files no one else holds are forgotten; their names."""
    gone = []
    with _lock:
        for name, held in list(_held.items()):
            held.holders.discard(holder)
            if not held.holders:
                gone.append(name)
                del _held[name]
    return gone


def forget_upload(name: str) -> None:
    """Drop an uploaded file, whoever holds it (a worker told its session ended)."""
    with _lock:
        _held.pop(name, None)


def _get(name: str) -> _Held | None:
    with _lock:
        return _held.get(name)


def uploaded(name: str) -> Prepared | None:
    """The uploaded file of this name, if this process holds it."""
    held = _get(name)
    return held.prepared if held else None


def upload_info(name: str) -> DatasetInfo | None:
    """The uploaded file's description, if this process holds it."""
    held = _get(name)
    return held.info if held else None


def upload_payload(name: str) -> bytes | None:
    """The bytes a worker needs to train on the uploaded file, if this process holds it."""
    held = _get(name)
    if held is None:
        return None
    if held.payload is None:
        held.payload = held.prepared.to_payload()
    return held.payload


def load_upload(name: str) -> Dataset:
    """The uploaded file's dataset; UploadMissing if this process does not hold it."""
    held = _get(name)
    if held is None:
        raise UploadMissing(
            "this run's data is a file uploaded in another session (uploaded data is never shared or "
            "kept); upload the same file to see its runs"
        )
    return held.dataset
