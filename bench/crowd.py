"""A class on one link, measured at the server: N visitors without rendering, one projector tab.

    python bench/crowd.py                      # 30 visitors, 5 minutes, server on 1 core, fresh store
    python bench/crowd.py --warm               # the same after `python -m regviz prefetch` filled the store
    python bench/crowd.py --quick              # 3 visitors, 30 s, 3 epochs: proves the script works (CI)
    python bench/crowd.py --visitors 10 --minutes 1 --out some.json

The server (`streamlit run app.py`) and every training worker it starts are confined to `--cores` cores
by CPU affinity (inherited by the workers); this script, its visitors and the projector's Chromium run on
the other cores. A visitor is a WebSocket client of the app's own endpoint (/_stcore/stream) speaking
Streamlit's protobuf messages as the browser does: it opens the teacher's link (a rerun with the query
string), sends widget changes as reruns, reruns the `run_every` fragments at the intervals the server
asks for (and stops when told, or when a full run starts), and reads the deltas: the progress line
("This run: training, epoch k of n" ...), the charts component's data (points of this run's validation
curve) and the page's link (which settings the page shows). Nothing is drawn. One real Chromium tab is
the projector: the teacher presses ArrowRight on L2 every so often; bench/live.py's page sampler times
keypress -> first epoch drawn and -> last epoch drawn.

The class script is seeded: every visitor opens the teacher's link at once; then each moves one control
every 10-20 s (uniform); 90 % of moves go one stop along L2, L1, dropout, width, depth or data size, or
to a book preset, 10 % to a random stop of any enabled slider; a tenth of the visitors switch once to the
Reuters or Boston preset. Per move: move -> first epoch of the new run received, -> run complete
received, from the store or trained, queue wait (move -> first line that is not "waiting for a free
trainer"). The percentiles are over the moves the visitor waited for: a move replaced by the visitor's
next move before it completed is counted apart (superseded), and its raw figures stay in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import live  # bench/live.py: the server, /proc sampling, the page sampler, the machine and checkout
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from regviz import settings as settings_table  # live.py put the repo on the path
from regviz.settings import PENALTY_STEPS, PRESETS, Settings

REPO = live.REPO
DEFAULT_OUT = REPO / "bench" / "results" / "crowd.json"
DATA = REPO.parent / "shared" / "data"
BOOK_FILES = {"REGVIZ_REUTERS_PATH": "reuters_r21578.npz", "REGVIZ_BOSTON_PATH": "boston_housing.npz"}
MOVE_EVERY_S = (10.0, 20.0)  # each visitor's gap between moves, uniform
NEIGHBOUR_SHARE = 0.9  # the rest: a random stop of any slider
NEIGHBOUR_CONTROLS = ("l2", "l1", "dropout", "width", "depth", "train_fraction", "preset")
CHAPTER4 = tuple(name for name, fields in PRESETS.items() if "dataset" not in fields)
OTHER_DATASETS = ("Reuters 64-64", "Boston 4-fold")  # the switch a few visitors make
SWITCHERS = 0.1  # share of the visitors who switch dataset once
SLIDERS = ("width", "depth", "last_width", "l2", "l1", "dropout", "train_fraction", "epochs",
           "learning_rate", "batch_size")  # fmt: skip
SELECT_SLIDERS = {"width", "last_width", "l2", "l1", "train_fraction", "learning_rate", "batch_size"}
DROPOUT_STEP = 0.05  # the page's dropout slider
INCOMPLETE_S = 60.0  # a move not complete this long after it was sent is lost
OPEN_DEADLINE_S = 600.0  # every visitor's first page complete (a cold server: worker start, two runs)
PROJECTOR_EVERY_S = 30.0  # the teacher presses ArrowRight on L2 this often (quick: 10 s)
LIMITS = {
    "warm_p95_complete_s": 1.0, "warm_projector_done_s": 1.5,
    "cold_p95_first_epoch_s": 2.0, "cold_p95_complete_s": 8.0, "incomplete_after_60_s": 0,
    "peak_rss_mb": 1500.0, "idle_server_cores": 0.3, "visitors_cores": 0.3,
}  # fmt: skip
PROGRESS = re.compile(
    r"^(?P<who>This run|Baseline): (?:(?P<store>from the store, all (?P<all>\d+) epochs)"
    r"|(?P<queued>waiting for a free trainer)"
    r"|training, epoch (?P<k>\d+) of (?P<n>\d+)|(?P<end>done|cancelled), (?P<dk>\d+) of (?P<dn>\d+) epochs"
    r"|(?P<failed>training failed|not trained))"
)
ANSWERS = ("store", "finished", "trained")
PRESS_FIGURES = ("params", "key_date_ms", "first_epoch_s", "last_epoch_s", "last_epoch_received_s")
LINK_CAPTION = "Link to this experiment"
RUN_TRACE = "validation (this run"  # the loss chart's trace of the page's run (K-fold: its mean)


# ---- the class script --------------------------------------------------------------------------------------


@dataclass
class Move:
    """One visitor's change of one control, and what the visitor received for it."""

    visitor: int
    control: str
    value: str  # as the widget sends it: a stop's label, a number, a preset's name
    target: dict  # the settings the page should show after it, as link parameters
    sent: float = 0.0  # time.time()
    first_epoch_s: float | None = None  # the page's run at >= 1 epoch (the progress line)
    complete_s: float | None = None  # the progress line says all epochs are in
    charts_first_s: float | None = None  # the charts' data hold >= 1 point of this run
    charts_complete_s: float | None = None  # ... all its epochs
    from_store: bool | None = None  # complete from the store's line ("from the store, all n epochs")
    answer: str | None = None  # store | finished (held done by the server, no epoch to wait for) | trained
    queued_seen: bool = False
    queue_wait_s: float | None = None  # move -> first line that is not "waiting for a free trainer"
    state: str | None = None  # the progress line's last state: training, done, from store, failed...
    baseline_complete_s: float | None = None  # the page's baseline (the run itself when unregularized)
    superseded: bool = False  # the visitor moved again before this one completed


def script_moves(rng: random.Random, seconds: float) -> list[float]:
    """When this visitor moves: every 10-20 s (uniform) from the class start, within `seconds`."""
    times, t = [], rng.uniform(*MOVE_EVERY_S)
    while t < seconds:
        times.append(t)
        t += rng.uniform(*MOVE_EVERY_S)
    return times


def choose(rng: random.Random, page: Settings, options: dict[str, list[str]], switch: bool):
    """(control, value as sent, target settings) of one move from the page's settings."""
    if switch:
        name = rng.choice(OTHER_DATASETS)
        return "preset", name, page.preset(name)
    if rng.random() < NEIGHBOUR_SHARE:
        control = rng.choice(NEIGHBOUR_CONTROLS)
        if control == "preset":
            name = rng.choice(CHAPTER4)
            return "preset", name, page.preset(name)
        value = neighbour(rng, control, page, options)
    else:
        control = rng.choice([s for s in SLIDERS if s in options or s not in SELECT_SLIDERS])
        value = anywhere(rng, control, page, options)
    return control, value, page.replace(**{control: decode(control, value)})


def neighbour(rng: random.Random, control: str, page: Settings, options: dict[str, list[str]]) -> str:
    """One stop left or right (the only way at an end) of the control's value on this page."""
    if control in SELECT_SLIDERS:
        stops = options[control]
        i = stops.index(label(control, getattr(page, control)))
        return stops[rng.choice([j for j in (i - 1, i + 1) if 0 <= j < len(stops)])]
    lo, hi, step = slider_range(control)
    value = getattr(page, control)
    near = [round(v, 2) for v in (value - step, value + step) if lo <= v <= hi + 1e-9]
    return repr(rng.choice(near))


def anywhere(rng: random.Random, control: str, page: Settings, options: dict[str, list[str]]) -> str:
    """A random stop of the slider other than its value now."""
    if control in SELECT_SLIDERS:
        now = label(control, getattr(page, control))
        return rng.choice([s for s in options[control] if s != now])
    lo, hi, step = slider_range(control)
    stops = [round(lo + i * step, 2) for i in range(round((hi - lo) / step) + 1)]
    return repr(rng.choice([s for s in stops if s != getattr(page, control)]))


def slider_range(control: str) -> tuple[float, float, float]:
    """(lo, hi, step) of a plain slider of the page (ui/common.py: ints by 1, floats by 0.05)."""
    meta = next(f.metadata for f in settings_table.fields() if f.name == control)
    return meta["lo"], meta["hi"], 1 if meta["kind"] is int else DROPOUT_STEP


def label(control: str, value) -> str:
    """A select slider's label for a value, as the page formats it (ui/common.py)."""
    if control == "train_fraction":
        return f"{value:.0%}"
    return "0" if value == 0 else f"{value:g}"


def decode(control: str, value: str):
    """The setting's value of a label or a number sent."""
    number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    kind = next(f.metadata["kind"] for f in settings_table.fields() if f.name == control)
    return int(number) if kind is int else number


# ---- a visitor: Streamlit's protocol without a browser -----------------------------------------------------


@dataclass
class Seen:
    """What one script run delivered: progress lines and chart points, when, and the link it showed."""

    fragment: bool
    lines: list = field(default_factory=list)  # (time, match)
    points: list = field(default_factory=list)  # (time, points of this run's curve)
    link: dict | None = None
    after_link: bool = False


class Visitor:
    """One student's browser tab, as far as the server can tell."""

    def __init__(self, number: int, url: str, query: str, clock):
        self.number, self.url, self.query, self.clock = number, url, query, clock
        self.widgets: dict[str, tuple[str, object]] = {}  # key -> (widget id, its element)
        self.states: dict[str, WidgetState] = {}  # key -> the widget's value here, sent with every rerun
        self.page: Settings | None = None  # what the page's link says it shows
        self.run: Seen | None = None
        self.moves: list[Move] = []
        self.exceptions: list[str] = []
        self.timers: dict[str, tuple[float, asyncio.Task]] = {}  # fragment id -> (interval, its task)
        self.ws = None

    # sending

    async def open(self) -> None:
        """Connect and ask for the page as a browser does on load."""
        host = self.url.split("://", 1)[1]
        self.ws = await connect(f"ws://{host}/_stcore/stream", subprotocols=["streamlit"], max_size=None)
        self.moves.append(Move(self.number, "open", self.query, _params(self.query), sent=time.time()))
        await self._rerun()

    async def move(self, control: str, value: str, target: Settings) -> None:
        """Change one widget, as the frontend does: a rerun with the new widget state."""
        wid, _ = self.widgets[control]
        self.states[control] = _state(control, wid, value)
        for old in self.moves:
            if old.complete_s is None and old.state not in ("failed", "refused"):
                old.superseded = True
        self.moves.append(Move(self.number, control, value, target.to_params(), sent=time.time()))
        await self._rerun()

    async def _rerun(self, fragment_id: str = "") -> None:
        msg = BackMsg()
        rerun = msg.rerun_script
        rerun.query_string, rerun.page_script_hash, rerun.page_name = self.query, "", ""
        rerun.widget_states.widgets.extend(self.states.values())
        if fragment_id:
            rerun.fragment_id, rerun.is_auto_rerun = fragment_id, True
        with contextlib.suppress(Exception):  # a closed connection: the reader reports it
            await self.ws.send(msg.SerializeToString())

    async def _every(self, fragment_id: str, interval: float) -> None:
        while True:  # setInterval: rerun the fragment whether or not the last one has finished
            await asyncio.sleep(interval)
            await self._rerun(fragment_id)

    def _stop_timers(self, ids=None) -> None:
        for fid in list(self.timers) if ids is None else ids:
            if fid in self.timers:
                self.timers.pop(fid)[1].cancel()

    # receiving

    async def read(self) -> None:
        """Handle every message until the connection closes."""
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                msg = ForwardMsg()
                msg.ParseFromString(raw)
                self.handle(msg, self.clock())

    def handle(self, msg: ForwardMsg, now: float) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self._new_run(bool(msg.metadata.run.fragment_ids))
        elif kind == "auto_rerun":
            fid, every = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
            if self.timers.get(fid, (None,))[0] != every:
                self._stop_timers([fid])
                self.timers[fid] = (every, asyncio.get_running_loop().create_task(self._every(fid, every)))
        elif kind == "stop_auto_rerun":
            self._stop_timers(list(msg.stop_auto_rerun.fragment_ids))
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            self._element(msg.delta.new_element, now)
        elif kind == "script_finished":
            self._end_run()

    def _new_run(self, fragment: bool) -> None:
        self._end_run()
        if not fragment:
            self._stop_timers()  # the frontend's cleanupAutoReruns at a full run
        self.run = Seen(fragment)

    def _element(self, element, now: float) -> None:
        kind = element.WhichOneof("type")
        sub = getattr(element, kind)
        wid = getattr(sub, "id", "")
        if wid.startswith("$$ID-"):
            key = wid.split("-", 2)[2]
            known = self.states.get(key)
            self.widgets[key] = (wid, sub)
            # as the frontend's widget manager: a widget's value from its element when it first shows (or
            # shows under a new id), or when the server sets it (a callback, a link); else this tab's own
            if known is None or known.id != wid or getattr(sub, "set_value", False):
                state = _shown_state(kind, wid, sub)
                if state is not None:
                    self.states[key] = state
        if self.run is None:
            return
        if kind == "progress" and (hit := PROGRESS.match(sub.text)):
            self.run.lines.append((now, hit))
        elif kind == "component_instance" and sub.component_name.endswith("live_charts"):
            self.run.points.append((now, _run_points(sub.json_args)))
        elif kind == "markdown" and sub.body.startswith(LINK_CAPTION):
            self.run.after_link = True
        elif kind == "code" and self.run.after_link and self.run.link is None:
            self.run.link = _params(sub.code_text.split("?", 1)[1] if "?" in sub.code_text else "")
        elif kind == "exception":
            self.exceptions.append(f"{sub.type}: {sub.message}"[:300])

    def _end_run(self) -> None:
        """Credit what the run delivered to the settings it showed (a full run: its link; a fragment
        run: the page's), then to the move that asked for them."""
        run, self.run = self.run, None
        if run is None:
            return
        if not run.fragment:
            if run.link is None:
                return  # interrupted by a newer rerun before it showed what it is
            self.page = Settings.from_params(run.link)
        if self.page is None or not self.moves:
            return
        last = self.moves[-1]
        if Settings.from_params(last.target) != self.page:
            return
        for t, hit in run.lines:
            _credit(last, t, hit)
        for t, points in run.points:
            _credit_points(last, t, points, self.page)

    def options(self) -> dict[str, list[str]]:
        """The select sliders' labels as the page offers them now."""
        return {k: list(el.options) for k, (_, el) in self.widgets.items() if k in SELECT_SLIDERS}

    async def close(self) -> None:
        self._stop_timers()
        if self.ws is not None:
            await self.ws.close()


def _shown_state(kind: str, wid: str, el) -> WidgetState | None:
    """The value a widget's element shows, as the frontend reports it (None: a widget that reports
    nothing until used, such as a button)."""
    state, shown = WidgetState(id=wid), getattr(el, "set_value", False)
    if kind == "slider" and el.options:  # a select slider: the labels of its value
        labels = list(el.raw_value) if shown else [el.options[int(i)] for i in el.default]
        state.string_array_value.data.extend(labels)
    elif kind == "slider":
        state.double_array_value.data.extend(el.value if shown else el.default)
    elif kind == "selectbox":
        state.string_value = el.raw_value if shown else el.options[el.default]
    elif kind == "button_group":
        labels = list(el.raw_values) if shown else [el.options[i].content for i in el.default]
        state.string_array_value.data.extend(labels)
    elif kind == "checkbox":
        state.bool_value = el.value if shown else el.default
    elif kind == "number_input":
        number = el.value if el.HasField("value") else el.default
        if el.data_type == el.INT:
            state.int_value = int(number)
        else:
            state.double_value = number
    else:
        return None
    return state


def _state(control: str, wid: str, value: str) -> WidgetState:
    state = WidgetState(id=wid)
    if control == "preset" or control in SELECT_SLIDERS:
        state.string_array_value.data.append(value)  # pills and select sliders send their labels
    else:
        state.double_array_value.data.append(float(value))
    return state


def _params(query: str) -> dict:
    return {k: v for k, v in parse_qsl(query) if k != "pin"}


def _run_points(json_args: str) -> int:
    """Points of the page run's validation curve in the charts' data (the loss chart comes first)."""
    try:
        loss = json.loads(json.loads(json_args)["figures"][0])
    except (ValueError, KeyError, IndexError, TypeError):
        return 0
    return max((len(t.get("x", [])) for t in loss.get("data", []) if t.get("name", "").startswith(RUN_TRACE)),
               default=0)  # fmt: skip


def _credit(move: Move, t: float, hit) -> None:
    after = t - move.sent
    if hit["who"] == "Baseline":
        if (hit["store"] or hit["end"] == "done") and move.baseline_complete_s is None:
            move.baseline_complete_s = after
        return
    if hit["queued"]:
        move.queued_seen, move.state = True, "queued"
        return
    if move.queue_wait_s is None:
        move.queue_wait_s = after if move.queued_seen else 0.0
    if hit["failed"]:
        move.state = "failed" if hit["failed"] == "training failed" else "refused"
        return
    store = bool(hit["store"])
    epochs = int(hit["all"] or hit["k"] or hit["dk"] or 0)
    total = int(hit["all"] or hit["n"] or hit["dn"] or 0)
    complete = (store or hit["end"] == "done") and epochs == total
    move.state = "from store" if store else hit["end"] or "training"
    if move.answer is None:  # the first line that is not the queue's says how it is answered
        move.answer = "store" if store else "finished" if complete else "trained"
    if epochs >= 1 and move.first_epoch_s is None:
        move.first_epoch_s = after
    if complete and move.complete_s is None:
        move.complete_s, move.from_store = after, store
        if Settings.from_params(move.target).is_baseline:
            move.baseline_complete_s = after  # one progress line: the run is its own baseline


def _credit_points(move: Move, t: float, points: int, page: Settings) -> None:
    after = t - move.sent
    if points >= 1 and move.charts_first_s is None:
        move.charts_first_s = after
    if points >= page.epochs and move.charts_complete_s is None:
        move.charts_complete_s = after


# ---- the class, in one event loop on the benchmark's cores -------------------------------------------------


async def _class(url: str, query: str, args, phases: dict) -> list[Visitor]:
    """Open every visitor, let them watch idle, then play the seeded script; returns the visitors."""
    visitors = [Visitor(i, url, query, time.time) for i in range(args.visitors)]
    await asyncio.gather(*(v.open() for v in visitors))
    readers = [asyncio.create_task(v.read()) for v in visitors]
    await _until(lambda: all(v.moves[0].complete_s is not None for v in visitors), OPEN_DEADLINE_S)
    phases["opened"] = time.time()
    say(f"{len(visitors)} visitors have the teacher's page; {args.idle_s:.0f} s of watching, nobody moving")
    await asyncio.sleep(args.idle_s)  # a measurement window: everyone watching, nobody moving
    phases["idle_end"] = time.time()
    rng = random.Random(args.seed)
    switchers = set(rng.sample(range(args.visitors), round(args.visitors * SWITCHERS)))
    plans = [(v, script_moves(rng, args.minutes * 60)) for v in visitors]
    switch_at = {v.number: rng.randrange(len(times)) for v, times in plans if times and v.number in switchers}
    start = time.monotonic()
    phases["class_start"] = time.time()
    say(f"the class: {sum(len(t) for _, t in plans)} moves over {args.minutes:g} min")
    await asyncio.gather(*(_play(v, times, start, random.Random(rng.random()), switch_at.get(v.number))
                           for v, times in plans))  # fmt: skip
    phases["class_end"] = time.time()
    say(f"the class is over: waiting up to {INCOMPLETE_S:.0f} s for the last moves' runs")
    await _until(lambda: all(_settled(m) for v in visitors for m in v.moves), INCOMPLETE_S)
    phases["drained"] = time.time()
    for v in visitors:
        await v.close()
    for r in readers:
        r.cancel()
    return visitors


async def _play(v: Visitor, times: list[float], start: float, rng: random.Random, switch: int | None) -> None:
    for i, t in enumerate(times):
        await asyncio.sleep(max(0.0, start + t - time.monotonic()))
        page = v.page if v.page is not None else Settings()
        try:
            control, value, target = choose(rng, page, v.options(), i == switch)
        except (KeyError, ValueError):
            continue  # the page shows no such control now (an error line instead): no move
        if control in v.widgets:
            await v.move(control, value, target)


def say(line: str) -> None:
    """A progress line of the benchmark, with the time."""
    print(time.strftime("%H:%M:%S"), line, flush=True)


def _settled(m: Move) -> bool:
    """Nothing more to wait for: replaced, run and baseline complete, failed, or lost."""
    complete = m.complete_s is not None and m.baseline_complete_s is not None
    lost = time.time() - m.sent > INCOMPLETE_S
    return m.superseded or complete or m.state in ("failed", "refused") or lost


async def _until(done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # poll interval, bounded by the deadline


def run_class(url: str, query: str, args, phases: dict) -> tuple[list[Visitor], dict]:
    """The visitors' event loop in this thread; returns them, and the CPU the thread used over its time."""
    cpu, wall = time.thread_time(), time.monotonic()
    visitors = asyncio.run(_class(url, query, args, phases))
    cpu, wall = time.thread_time() - cpu, time.monotonic() - wall
    return visitors, {"cpu_s": cpu, "wall_s": wall, "cores": cpu / wall}


# ---- the projector: one real tab, the teacher's ------------------------------------------------------------


def projector(url: str, params: dict, every_s: float, stop: threading.Event, out: dict) -> None:
    """The teacher's page in Chromium: ArrowRight on L2 every `every_s` until stopped; each keypress
    timed by bench/live.py's sampler (first and last epoch drawn)."""
    from playwright.sync_api import sync_playwright

    out.update(presses=[], error=None)
    try:
        with sync_playwright() as pw:
            chromium = {"executable_path": live.CHROMIUM, "args": live.CHROMIUM_ARGS}
            browser = pw.chromium.launch(headless=True, **chromium)
            out["chromium"] = browser.version
            page = live.open_tab(browser, live.link(url, params))
            live.wait_finished(page, params)
            out["opened"] = time.time()
            before, stops = dict(params), [s for s in PENALTY_STEPS if s > Settings.from_params(params).l2]
            for stop_value in stops:
                if stop.wait(every_s):
                    break
                after = {**before, "l2": repr(stop_value)}
                timed = live.timed_keypress(page, after)
                out["presses"].append({k: timed[k] for k in PRESS_FIGURES})
                live.wait_finished(page, after)
                before = after
            browser.close()
    except Exception as e:  # reported in the results, never silently
        out["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


# ---- processes: affinity, the server, the prefetch ---------------------------------------------------------


def affinities(pid: int) -> dict[int, list[int]]:
    """The CPU affinity of the server and of every process below it."""
    out = {}
    for p in [pid, *live.descendants(pid)]:
        with contextlib.suppress(OSError):
            out[p] = sorted(os.sched_getaffinity(p))
    return out


def high_water_marks(pid: int) -> list[dict]:
    """Each of the server's processes now: its pid, command and peak RSS (VmHWM) in MB over its life."""
    out = []
    for p in [pid, *live.descendants(pid)]:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{p}/status").read_text()
            command = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120].strip()
            hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            out.append({"pid": p, "command": command, "peak_rss_mb": hwm * 1024 / 1e6})
    return out


def warm(env: dict, cores: set[int], params: dict, datasets: str) -> dict:
    """`python -m regviz prefetch` into the fresh store, on the server's cores; its time and summary."""
    epochs = ["--epochs", params["epochs"]] if "epochs" in params else []
    workers = ["--workers", str(len(cores))]
    command = [sys.executable, "-m", "regviz", "prefetch", "--dataset", datasets, *workers, *epochs]
    t0 = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, cores))  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"prefetch failed:\n{proc.stderr[-3000:]}")
    return {"seconds": time.monotonic() - t0, "summary": json.loads(proc.stdout.splitlines()[-1]),
            "command": " ".join(command[1:])}  # fmt: skip


def environment(logs: Path, args) -> dict[str, str]:
    """The server's environment: bench/live.py's (a fresh store, IMDB, this checkout), the book's other
    datasets from the shared folder, the store given, one training at a time, the app's prefetch on."""
    env = live.environment(logs, args.imdb)
    for var, name in BOOK_FILES.items():
        if not os.environ.get(var) and (DATA / name).is_file():
            env[var] = str(DATA / name)
    if args.store:
        env["REGVIZ_STORE"] = args.store
    env["REGVIZ_MAX_TRAININGS"] = str(args.max_trainings)
    env["REGVIZ_PREFETCH"] = "1"  # as deployed: the remedies page's runs train while nobody waits
    return env


# ---- figures -----------------------------------------------------------------------------------------------


def percentiles(values: list[float | None]) -> dict:
    """p50, p95 (nearest rank) and max; a move waited for but never complete (None) counts as longer
    than any, so a percentile that falls on one is None."""
    ordered = sorted(math.inf if v is None else v for v in values)
    if not ordered:
        return {"p50": None, "p95": None, "max": None, "n": 0}

    def rank(q: float):
        v = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        return None if math.isinf(v) else v

    return {"p50": rank(0.5), "p95": rank(0.95), "max": rank(1.0), "n": len(ordered)}


def figures(visitors: list[Visitor], proc, phases: dict, visitors_cpu: dict, projector_out: dict) -> dict:
    """Everything the report shows, from the raw moves and the /proc samples."""
    moves = [m for v in visitors for m in v.moves if m.control != "open"]
    waited = [m for m in moves if not m.superseded]  # the visitor's next move did not replace it
    opens = [v.moves[0] for v in visitors]
    answered = [m for m in moves if m.from_store is not None]
    lost = [m for m in moves if not m.superseded and m.state not in ("failed", "refused")
            and (m.complete_s is None or m.complete_s > INCOMPLETE_S)]  # fmt: skip
    class_s = phases["class_end"] - phases["class_start"]
    presses = projector_out.get("presses", [])
    return {
        "moves": len(moves),
        "moves_waited_for": len(waited),
        "first_epoch_s": percentiles([m.first_epoch_s for m in waited]),
        "complete_s": percentiles([m.complete_s for m in waited]),
        "queue_wait_s": percentiles([m.queue_wait_s for m in waited]),
        "charts_complete_s": percentiles([m.charts_complete_s for m in waited]),
        "open_complete_s": percentiles([m.complete_s for m in opens]),
        "incomplete_after_60_s": len(lost),
        "superseded": sum(m.superseded for m in moves),
        "failed_or_refused": sum(m.state in ("failed", "refused") for m in moves),
        "store_hit_share": sum(m.from_store for m in answered) / len(answered) if answered else None,
        "answered_without_training_share": _share([m.answer != "trained" for m in moves if m.answer]),
        "answers": {a or "unanswered": sum(m.answer == a for m in moves) for a in (*ANSWERS, None)},
        "exceptions": [e for v in visitors for e in v.exceptions],
        "cores_idle_watching": proc.cores(phases["opened"], phases["idle_end"]),
        "cores_class": proc.cores(phases["class_start"], phases["class_end"]),
        "peak_rss_mb": dict(zip(("server", "server_and_workers"),
                                proc.peaks_mb(proc.samples[0][0], proc.samples[-1][0]), strict=True)),
        "visitors_cores": visitors_cpu["cores"],
        "visitors_cpu": visitors_cpu,
        "class_seconds": class_s,
        "projector": {
            "presses": len(presses), "error": projector_out.get("error"),
            "first_epoch_drawn_s": percentiles([p["first_epoch_s"] for p in presses]),
            "done_drawn_s": percentiles([p["last_epoch_s"] for p in presses]),
        },
    }  # fmt: skip


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def table(f: dict, warm_store: bool) -> str:
    """One line per figure: the figure, p50 / p95 / max or the value, the issue's limit."""

    def ppp(p: dict) -> str:
        if not p["n"]:
            return "-"
        return " / ".join("incomplete" if p[k] is None else f"{p[k]:.2f}" for k in ("p50", "p95", "max"))

    proj, rss = f["projector"], f["peak_rss_mb"]
    first_limit = "" if warm_store else f"p95 <= {LIMITS['cold_p95_first_epoch_s']:.0f} s"
    done_limit = f"p95 <= {LIMITS['warm_p95_complete_s' if warm_store else 'cold_p95_complete_s']:.0f} s"
    rows = [
        (f"move -> first epoch received, s (p50 / p95 / max of {f['moves_waited_for']} waited for)",
         ppp(f["first_epoch_s"]), first_limit),
        ("move -> run complete received, s", ppp(f["complete_s"]), done_limit),
        ("move -> charts' data complete, s", ppp(f["charts_complete_s"]), ""),
        ("queue wait, s", ppp(f["queue_wait_s"]), ""),
        ("open the teacher's link -> complete, s", ppp(f["open_complete_s"]), ""),
        ("moves not complete within 60 s", str(f["incomplete_after_60_s"]), "0"),
        ("moves replaced by the next before complete", str(f["superseded"]), ""),
        ("answered from the store / without training", f"{_pct(f['store_hit_share'])} / "
         f"{_pct(f['answered_without_training_share'])}", ""),
        ("exceptions shown to visitors", str(len(f["exceptions"])), "0"),
        ("server cores, everyone watching, nobody moving", f"{f['cores_idle_watching']['server']:.2f}",
         "<= 0.3"),
        ("server / workers cores during the class",
         f"{f['cores_class']['server']:.2f} / {f['cores_class']['workers']:.2f}", ""),
        ("peak RSS server / + workers, MB", f"{rss['server']:.0f} / {rss['server_and_workers']:.0f}",
         "<= 1500"),
        ("visitors' CPU, cores", f"{f['visitors_cores']:.3f}", "<= 0.3"),
        (f"projector keypress -> first epoch drawn, s ({proj['presses']} presses)",
         ppp(proj["first_epoch_drawn_s"]), ""),
        ("projector keypress -> done drawn, s", ppp(proj["done_drawn_s"]), "<= 1.5 (warm)"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


# ---- putting it together -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--visitors", type=int, default=30)
    p.add_argument("--minutes", type=float, default=5.0, help="length of the class script (default 5)")
    p.add_argument("--cores", type=int, default=1, help="cores of the server and its workers (default 1)")
    p.add_argument("--store", help="the server's REGVIZ_STORE (default: a fresh one in a temporary folder)")
    p.add_argument("--warm", action="store_true", help="prefetch the neighbourhood into the store first")
    p.add_argument("--quick", action="store_true", help="3 visitors, 30 s, 3 epochs (CI)")
    p.add_argument("--seed", type=int, default=22, help="the class script's seed")
    p.add_argument("--max-trainings", type=int, default=1, help="the server's REGVIZ_MAX_TRAININGS")
    p.add_argument("--no-projector", action="store_true", help="no Chromium tab")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON figures (default {DEFAULT_OUT})")
    p.add_argument("--imdb", type=Path, default=Path(os.environ.get("REGVIZ_IMDB_PATH") or live.DEFAULT_IMDB))
    args = p.parse_args(argv)
    if args.quick:
        args.visitors, args.minutes = 3, 0.5
    if args.visitors < 1 or args.minutes <= 0:
        p.error("--visitors and --minutes must be positive")
    args.idle_s = 5.0 if args.quick else 20.0
    server_cores, bench_cores = live.split_cores(args.cores)
    params = {"epochs": "3"} if args.quick else {}
    if not args.imdb.is_file():
        params["dataset"] = "synthetic"  # the offline data set, as bench/live.py does
    logs = Path(tempfile.mkdtemp(prefix="regviz-crowd-"))
    env = environment(logs, args)
    result = {
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "teacher_params": params, "server_cores": sorted(server_cores),
                   "bench_cores": sorted(bench_cores),
                   "datasets_from": {k: env.get(k, "") for k in BOOK_FILES}},
        "machine": live.machine(), "checkout": live.checkout(),
    }  # fmt: skip
    if args.warm:
        datasets = "synthetic" if "dataset" in params else "imdb,reuters,boston"
        result["warm"] = warm(env, server_cores, params, datasets)
        print(f"prefetch: {result['warm']['seconds']:.1f} s, {result['warm']['summary']}", flush=True)
    raw = measure(args, env, logs, params, server_cores, bench_cores)
    result.update(raw)
    result["machine"]["load_avg_end"] = os.getloadavg()
    print(table(result["figures"], args.warm or bool(args.store)))
    for m in result["processes_peak_rss"]:
        print(f"peak RSS (VmHWM) {m['peak_rss_mb']:6.0f} MB  pid {m['pid']}: {m['command']}")
    live.write(args.out, result, logs)
    return 0


def measure(args, env, logs: Path, params: dict, server_cores: set[int], bench_cores: set[int]) -> dict:
    """Start the server on its cores, the projector and the visitors on the others; the raw figures."""
    server = live.Server(REPO / "app.py", REPO, env, logs)
    os.sched_setaffinity(0, bench_cores)  # this process, its visitors and Chromium
    samplers = []

    def spawned(pid: int) -> None:
        live.confine(pid, server_cores)  # before streamlit starts anything: its workers inherit it
        samplers.append(live.sample(pid))

    stop, projector_out, phases = threading.Event(), {}, {}
    try:
        server.start(spawned)
        say(f"server up at {server.url} on cores {sorted(server_cores)}")
        query = "&".join(f"{k}={v}" for k, v in params.items())
        tab = None
        if not args.no_projector:
            every = 10.0 if args.quick else PROJECTOR_EVERY_S
            # a daemon: a projector stuck on a page that never finishes (reported) does not keep us alive
            tab = threading.Thread(
                target=projector, args=(server.url, params, every, stop, projector_out), daemon=True
            )
            tab.start()
        visitors, cpu_s = run_class(server.url, query, args, phases)
        stop.set()
        if tab is not None:
            tab.join(timeout=live.PAGE_TIMEOUT_MS / 1000)
        pinned, marks = affinities(server.pid), high_water_marks(server.pid)
    finally:
        stop.set()
        server.stop()
        for sampler in samplers:
            sampler.halt.set()
            sampler.join()
    proc = samplers[-1]
    return {
        "phases": phases,
        "figures": figures(visitors, proc, phases, cpu_s, projector_out),
        "affinity": {"processes": {str(k): v for k, v in pinned.items()},
                     "all_on_server_cores": all(set(v) <= server_cores for v in pinned.values())},
        "processes_peak_rss": marks,
        "projector_presses": projector_out.get("presses", []),
        "moves": [asdict(m) | {"target": m.target} for v in visitors for m in v.moves],
        "visitors_pages": [v.page.to_params() if v.page else None for v in visitors],
        "server_log_tail": server.text()[-2000:],
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
