"""Uploaded files held by this process: the server's sessions' files, or those a worker was sent. Never
on disk; each is forgotten once every session holding it has ended.

Held compactly: a file in use is its prepared float32 matrix (its split into training, validation and
test rows is made only where a run trains on it, and the bytes a worker is sent only while sending); a
file being previewed is its table of text cells, until the session trains on it or ends. The total is
capped (REGVIZ_MAX_UPLOAD_MB): a new file over the cap is refused in one line. When a session ends, what
it alone held is dropped and the memory handed back to the system.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regviz.data.dataset import Dataset, DatasetInfo, DatasetUnavailable, describe

if TYPE_CHECKING:  # pandas, which csvfile reads with, is not the page server's to import at start
    from regviz.data.csvfile import Prepared

MAX_UPLOAD_MB_ENV = "REGVIZ_MAX_UPLOAD_MB"
MAX_UPLOAD_MB = 200.0  # all sessions' files together: ten 20 MB files previewed at once on a 1-2 GB host


class UploadMissing(DatasetUnavailable):
    """A link or a run names an uploaded file this process does not hold (another session's, or gone)."""


class UploadRefused(ValueError):
    """The server holds as much uploaded data as it may (REGVIZ_MAX_UPLOAD_MB); the message is one line."""


@dataclass
class _Held:
    prepared: Prepared
    info: DatasetInfo  # described once: the page asks at every script run
    dataset: Dataset | None = None  # split where a run trains on it (a worker, the command line)
    holders: set[str] = field(default_factory=set)

    @property
    def nbytes(self) -> int:
        """Memory held for the file: its matrix, labels and, once made, its split rows."""
        split = 0
        if self.dataset is not None:
            d = self.dataset
            split = sum(r.values.nbytes for r in (d.x_train, d.x_val, d.x_test))
        return self.prepared.x.nbytes + self.prepared.y.nbytes + split


@dataclass
class _Reading:
    key: Any  # which upload of the session (the uploader's file id)
    value: Any  # the file as read (a csvfile.Table)
    nbytes: int


_lock = threading.Lock()
_held: dict[str, _Held] = {}
_reading: dict[str, _Reading] = {}  # session -> the file its page previews


def max_upload_bytes(environ=None) -> int:
    """REGVIZ_MAX_UPLOAD_MB (a positive number) in bytes, else MAX_UPLOAD_MB."""
    raw = (os.environ if environ is None else environ).get(MAX_UPLOAD_MB_ENV, "").strip()
    try:
        mb = float(raw) if raw else MAX_UPLOAD_MB
    except ValueError:
        mb = MAX_UPLOAD_MB
    return int((mb if mb > 0 else MAX_UPLOAD_MB) * 2**20)


def held_bytes() -> int:
    """Memory held for uploaded files by this process: files in use and files being previewed."""
    with _lock:
        return _held_bytes()


def _held_bytes() -> int:
    return sum(h.nbytes for h in _held.values()) + sum(r.nbytes for r in _reading.values())


def _refuse_over_cap(nbytes: int, what: str) -> None:
    """Raise UploadRefused if `nbytes` more would pass the cap (call with the lock held)."""
    cap, held = max_upload_bytes(), _held_bytes()
    if held + nbytes > cap:
        raise UploadRefused(
            f"this server already holds {held / 2**20:.0f} MB of uploaded data and {what} needs "
            f"{nbytes / 2**20:.1f} MB more, over its limit of {cap / 2**20:.0f} MB ({MAX_UPLOAD_MB_ENV}); "
            "try again once other sessions have ended, or upload a smaller file"
        )


def hold_reading(holder: str, key: Any, value: Any, nbytes: int) -> None:
    """Hold the file a session's page previews (one per session: it replaces the previous one);
    UploadRefused, holding nothing, if it would pass the cap."""
    with _lock:
        _reading.pop(holder, None)
        _refuse_over_cap(nbytes, "this file")
        _reading[holder] = _Reading(key, value, nbytes)


def reading(holder: str, key: Any) -> Any | None:
    """The file the session's page previews, if it is the one of this key."""
    with _lock:
        held = _reading.get(holder)
    return held.value if held is not None and held.key == key else None


def drop_reading(holder: str) -> None:
    """The session's page previews no file any more (trained on it, or the uploader was emptied)."""
    with _lock:
        gone = _reading.pop(holder, None)
    if gone is not None:
        del gone
        give_back_memory()


def add_upload(prepared: Prepared | bytes, holder: str = "") -> Prepared:
    """Hold an uploaded file (prepared, or its payload as a worker receives it) for `holder` (a
    session), until every holder has released it or it is forgotten. A session's new file that would
    pass the cap is refused (UploadRefused); a worker holds what it is sent."""
    if isinstance(prepared, bytes | bytearray):
        from regviz.data.csvfile import Prepared

        prepared = Prepared.from_payload(bytes(prepared))
    with _lock:
        held = _held.get(prepared.name)
        if held is None and holder:
            _refuse_over_cap(prepared.x.nbytes + prepared.y.nbytes, "this file")
    if held is None:  # described outside the lock: splitting a large file takes a moment
        info = describe(prepared.dataset())  # the split is made for its sizes, then let go
        with _lock:
            held = _held.setdefault(prepared.name, _Held(prepared, info))
    with _lock:
        held.holders.add(holder)
    return held.prepared


def release_uploads(holder: str) -> list[str]:
    """The holder (a session) ended: the files no one else holds are forgotten, and the file its page
    previewed; their memory goes back to the system. The forgotten files' names."""
    gone = []
    with _lock:
        previewed = _reading.pop(holder, None)
        for name, held in list(_held.items()):
            held.holders.discard(holder)
            if not held.holders:
                gone.append(name)
                del _held[name]
    if gone or previewed is not None:
        del previewed
        give_back_memory()
    return gone


def forget_upload(name: str) -> None:
    """Drop an uploaded file, whoever holds it (a worker told its session ended)."""
    with _lock:
        gone = _held.pop(name, None)
    if gone is not None:
        del gone
        give_back_memory()


def give_back_memory() -> None:
    """Hand freed memory back to the system: a file's cells are many small objects, and both glibc's
    malloc and pyarrow's pool (pandas' text columns) keep freed memory for reuse unless told."""
    gc.collect()
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): its allocator decides
        pass


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
    """The bytes a worker needs to train on the uploaded file, if this process holds it (made for each
    sending, not kept: a file is sent once per worker)."""
    held = _get(name)
    return None if held is None else held.prepared.to_payload()


def load_upload(name: str) -> Dataset:
    """The uploaded file's dataset; UploadMissing if this process does not hold it."""
    held = _get(name)
    if held is None:
        raise UploadMissing(
            "this run's data is a file uploaded in another session (uploaded data is never shared or "
            "kept); upload the same file to see its runs"
        )
    if held.dataset is None:  # a run trains here: split once, kept while the file is
        dataset = held.prepared.dataset()
        with _lock:
            held.dataset = held.dataset or dataset
    return held.dataset
