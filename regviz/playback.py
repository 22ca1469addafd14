"""Play, pause and step through a run's epochs: how many epochs a tab shows at a given moment.

A live run shows every epoch it has, unless paused; a finished run (from the store, or trained earlier)
can be replayed, its epochs shown one by one at a pace, by wall-clock time since the replay started.
Pure: no streamlit, so the page's logic is tested without one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MAX_REPLAY_S = 5.0  # a default replay takes at most this long, however slowly the run trained
MIN_PACE_S = 0.02  # a run that trained faster is replayed at this pace: a browser draws no faster
PACES = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # seconds per epoch a teacher may choose
MAX_PAUSE = 10_000  # epochs: a link's pause beyond any run's length is refused


@dataclass(frozen=True)
class Clock:
    """Where a tab is in a run: paused at an epoch, replaying from `start` epochs at `origin`, or live."""

    paused: int | None = None  # epochs shown while paused
    origin: float | None = None  # time the replay (re)started; None: live, every epoch shown
    start: int = 0  # epochs shown at origin
    pace: float = 0.25  # seconds per epoch of a replay


def shown(clock: Clock, now: float, n: int) -> int:
    """How many of the n epochs there are to show at time now."""
    if clock.paused is not None:
        return min(n, clock.paused)
    if clock.origin is None:
        return n
    return min(n, clock.start + math.floor(max(0.0, now - clock.origin) / clock.pace))


def moving(clock: Clock, now: float, n: int) -> bool:
    """Whether a replay still has epochs to show (the page polls while it has)."""
    return clock.paused is None and clock.origin is not None and shown(clock, now, n) < n


def pause(clock: Clock, now: float, n: int) -> Clock:
    """Hold at the epoch shown now (at least the first)."""
    return replace(clock, paused=max(1, shown(clock, now, n)), origin=None)


def step(clock: Clock, now: float, n: int) -> Clock:
    """Pause one epoch further than shown now (no further than the n epochs there are)."""
    return replace(clock, paused=max(1, min(n, shown(clock, now, n) + 1)), origin=None)


def resume(clock: Clock, now: float, n: int, finished: bool) -> Clock:
    """Go on from a pause: a finished run replays from there at its pace, a live one shows all it has."""
    if clock.paused is None:
        return clock
    if finished:
        return replace(clock, paused=None, origin=now, start=min(n, clock.paused))
    return replace(clock, paused=None, origin=None, start=0)


def replay(clock: Clock, now: float) -> Clock:
    """Start showing the run again from its first epoch, at the clock's pace."""
    return replace(clock, paused=None, origin=now, start=1)


def trained_pace(seconds: float, n: int) -> float:
    """Seconds per epoch a replay takes by default: the pace the run trained at (its last record's
    `seconds` since it started), at most MAX_REPLAY_S for the whole run."""
    if n <= 0:
        return MIN_PACE_S
    return max(MIN_PACE_S, min(seconds / n, MAX_REPLAY_S / n))


def read_pause(raw: str) -> int:
    """A link's `pause`: the epoch to open paused at, 1 or more (ValueError with the allowed range)."""
    try:
        epoch = int(str(raw).strip())
    except ValueError:
        epoch = 0
    if not 1 <= epoch <= MAX_PAUSE:
        raise ValueError(f"an epoch from 1 to {MAX_PAUSE}")
    return epoch


def read_pace(raw: str) -> float:
    """A link's `pace`: seconds per epoch, one of PACES (ValueError with the allowed values)."""
    try:
        pace = float(str(raw).strip())
    except ValueError:
        pace = math.nan
    if pace not in PACES:
        raise ValueError(f"seconds per epoch, one of {', '.join(f'{p:g}' for p in PACES)}")
    return pace
