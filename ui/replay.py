"""Play, pause, step and replay on the main page: the buttons, the tab's clock (regviz.playback) and the
runs cut to the epochs it shows. A replay draws records[:k] through the live page's polling fragment,
k moving with wall-clock time: it trains nothing and redraws no more often than a live run does."""

from __future__ import annotations

import time

import streamlit as st

from regviz import playback
from regviz.playback import Clock
from regviz.settings import Settings

CLOCK = "playback"  # session state: (the run's settings key, its Clock)
PACE = "pace"  # the pace control's key: seconds per epoch, 0 for the pace the run trained at


def clock(settings: Settings) -> Clock:
    """This tab's clock for the run of these settings: a new run starts live (or paused where the link
    said so, for the link's own run only)."""
    kept = st.session_state.get(CLOCK)
    if kept is None or kept[0] != settings.key():
        kept = (settings.key(), Clock(paused=st.session_state.pop("pause_link", None)))
        st.session_state[CLOCK] = kept
    return kept[1]


def _set(settings: Settings, new: Clock) -> None:
    st.session_state[CLOCK] = (settings.key(), new)


def _epochs(run) -> int:
    return len(run.records())


def _finished(runs) -> bool:
    return all(r.finished for r in runs)


def _pace(run) -> float:
    chosen = float(st.session_state.get(PACE) or 0.0)
    records = run.records()
    return chosen or playback.trained_pace(records[-1].seconds if records else 0.0, len(records))


def link_params(settings: Settings) -> dict[str, str]:
    """What the link holds of the playback: the epoch it is paused at, and a chosen pace."""
    params = {}
    kept = st.session_state.get(CLOCK)
    if kept is not None and kept[0] == settings.key() and kept[1].paused is not None:
        params["pause"] = str(kept[1].paused)
    elif kept is None and st.session_state.get("pause_link"):
        params["pause"] = str(st.session_state.pause_link)
    if st.session_state.get(PACE):
        params["pace"] = f"{st.session_state[PACE]:g}"
    return params


def polls(settings: Settings, run) -> bool:
    """Whether the page must poll for the playback's sake: a replay still has epochs to show."""
    return playback.moving(clock(settings), time.monotonic(), _epochs(run))


def controls(settings: Settings, run, runs, pace: bool = True) -> None:
    """Pause / Play / Step / Replay and (unless pace is False) the replay's pace, in one row above the
    charts."""
    c, n, done = clock(settings), _epochs(run), _finished(runs)
    k = playback.shown(c, time.monotonic(), n)
    cols = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
    if c.paused is not None:
        cols[0].button(
            "Play",
            key="play",
            icon=":material/play_arrow:",
            on_click=_resume,
            args=(settings, run, runs),
            help="Go on from here: a finished run replays at its pace, a live one catches up.",
        )
    elif done and not playback.moving(c, time.monotonic(), n):
        cols[0].button(
            "Replay",
            key="replay",
            icon=":material/replay:",
            on_click=_replay,
            args=(settings, run),
            disabled=n == 0,
            help="Show the finished run again, epoch by epoch, at the pace chosen.",
        )
    else:
        cols[0].button(
            "Pause",
            key="pause",
            icon=":material/pause:",
            on_click=_pause,
            args=(settings, run),
            help="Hold the charts at this epoch (training goes on).",
        )
    cols[1].button(
        "Step",
        key="step",
        icon=":material/skip_next:",
        on_click=_step,
        args=(settings, run),
        disabled=c.paused is not None and k >= n,
        help="Show one more epoch, then hold.",
    )
    if done and c.paused is None and not playback.moving(c, time.monotonic(), n):
        cols[2].button(
            "Restart",
            key="restart",
            icon=":material/first_page:",
            on_click=_restart,
            args=(settings,),
            help="Hold at the first epoch; Step and Play go on from there.",
        )
    if not pace:
        return
    options = [0.0, *playback.PACES]
    cols[3].select_slider(
        "Replay pace (seconds per epoch)",
        options,
        key=PACE,
        on_change=_repace,
        args=(settings, run),
        format_func=lambda p: f"{p:g} s" if p else f"as trained ({_pace_text(run)})",
        help=f"How fast a replay shows the epochs. As trained: the run's own pace, at most "
        f"{playback.MAX_REPLAY_S:g} s for the whole run.",
    )


def _pace_text(run) -> str:
    records = run.records()
    if not records:
        return "its pace"
    return f"{playback.trained_pace(records[-1].seconds, len(records)):.2g} s"


def _pause(settings: Settings, run) -> None:
    _set(settings, playback.pause(clock(settings), time.monotonic(), _epochs(run)))


def _step(settings: Settings, run) -> None:
    _set(settings, playback.step(clock(settings), time.monotonic(), _epochs(run)))


def _resume(settings: Settings, run, runs) -> None:
    paced = Clock(**{**clock(settings).__dict__, "pace": _pace(run)})
    _set(settings, playback.resume(paced, time.monotonic(), _epochs(run), _finished(runs)))


def _replay(settings: Settings, run) -> None:
    paced = Clock(**{**clock(settings).__dict__, "pace": _pace(run)})
    _set(settings, playback.replay(paced, time.monotonic()))


def _restart(settings: Settings) -> None:
    _set(settings, Clock(paused=1, pace=clock(settings).pace))


def _repace(settings: Settings, run) -> None:
    # a replay under way goes on from the epoch it shows, at the new pace
    c, now, n = clock(settings), time.monotonic(), _epochs(run)
    if playback.moving(c, now, n):
        _set(settings, Clock(origin=now, start=playback.shown(c, now, n), pace=_pace(run)))


def shown(settings: Settings, run) -> int:
    """How many epochs of the run the charts show now."""
    return playback.shown(clock(settings), time.monotonic(), _epochs(run))


def cut(settings: Settings, run, base, pinned):
    """The run, its baseline and the pinned runs as the charts show them now: cut to the clock's epochs
    (the same objects when every epoch is shown)."""
    k = shown(settings, run)
    if k >= _epochs(run) and clock(settings).paused is None:
        return run, base, pinned
    shown_run = Cut(run, k)
    return shown_run, (shown_run if base is run else Cut(base, k)), [Cut(p, k) for p in pinned]


def line(settings: Settings, run, runs) -> str | None:
    """One line on what the charts show when it is not the whole live run: a replay (labelled as such,
    never as training) or a pause."""
    c, n = clock(settings), _epochs(run)
    k, total = playback.shown(c, time.monotonic(), n), run.total_epochs
    what = "stored run (trained before)" if run.from_store else "finished run"
    if _finished(runs) and (c.paused is not None or c.origin is not None) and k < n:
        if c.paused is not None:
            return f"Replay of the {what}, paused at epoch {k} of {n}: nothing trains."
        return f"Replay of the {what}: epoch {k} of {n}, {c.pace:.2g} s per epoch; nothing trains."
    if c.paused is not None and not _finished(runs):
        return f"Paused at epoch {k}: the charts stop here while training goes on ({n} of {total} epochs)."
    if c.paused is not None:
        return f"Paused at epoch {k} of {n}."
    return None


class Cut:
    """A run (manager Run or runs.group.FoldGroup) seen through its first k epochs; all else as it is."""

    def __init__(self, run, k: int):
        self.run, self.k = run, k
        self.key = run.key

    def snapshot(self):
        version, records = self.run.snapshot()
        kept = records[: self.k]
        # its first k epochs never change once there: one view for every tab at this epoch
        return (("cut", self.k) if len(kept) == self.k else ("cut", self.k, version)), kept

    def records(self):
        return self.run.records()[: self.k]

    def __getattr__(self, name):
        if name == "fold_records":  # a K-fold run's folds, cut alike
            folds = self.run.fold_records
            return lambda: [f[: self.k] for f in folds()]
        return getattr(self.run, name)
