"""The app as a visitor sees it: a real server, headless Chromium, the page's own clock.

    python bench/live.py                  # every target, 20 epochs: 4-7 minutes on 2 cores
    python bench/live.py --quick          # 3 epochs, one timed keypress: proves the script works (CI)
    python bench/live.py --out some.json  # figures elsewhere (default bench/results/live.json)
    python bench/live.py --cores 1        # the server, its workers and the command line on core 0,
                                          # Chromium and this script on the rest (the browser is the
                                          # load generator: kept off the cores it measures)

What is measured, in the order the script does it:
  floor     an empty Streamlit page (one slider, one small Plotly chart): goto -> chart laid out, median of 3
  cli       `python -m regviz train ... --no-store` of every setting the pages train below, machine quiet
  target 5  a server just started: goto (as soon as /_stcore/health is ok) -> sidebar and the four chart
            frames laid out, while the training worker still warms up; minus the floor
  target 6  peak RSS of the server process, and of server and workers together, up to the default run done
  target 1  warm server, 16-16 trained with a penalty before: ArrowRight on L2 -> first epoch drawn
  target 2  the same keypresses -> last epoch drawn, 16-16 and 512-512, against the command line's time
Targets 3 and 4 (ten tabs on one run, and a stored run opened meanwhile) were replaced by bench/crowd.py
(issue 22): a class of visitors measured at the server, without rendering, and one real tab.
Page-side times come from a sampler in every page (each SAMPLE_MS: what the loss chart draws, with
performance.now() and Date.now()) and from a hook on the page's WebSocket that notes when a progress
line arrives ("This run: training, epoch k of n"), which splits a delay into server-and-network and
drawing. Server-side times come from the server's log (ms timestamps); CPU and memory from /proc
(server, its workers, Chromium, the whole machine). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import itertools
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from string import Template
from urllib.parse import urlencode

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from regviz.settings import Settings  # noqa: E402  (no tensorflow: the settings table only)

DEFAULT_OUT = REPO / "bench" / "results" / "live.json"
DEFAULT_IMDB = REPO.parent / "shared" / "data" / "imdb_acl.npz"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1400, "height": 1000}
PAGE_TIMEOUT_MS = 240_000  # a 512-512 baseline and run on a busy 2-core machine, with margin
SERVER_START_S = 90
SAMPLE_MS = 20  # the page sampler's period: page-side times are late by at most this
PROC_SAMPLE_S = 0.05  # /proc sampling period (RSS, CPU ticks)
LOSS_TITLE, RUN_VAL, BASE_VAL = "Loss per epoch", "validation (this run)", "validation (baseline)"
L2_LABEL = "L2 penalty"
# ArrowRight on L2 from 0 through these stops: the first trains 16-16 with a penalty, the rest are timed
L2_STOPS = ("1e-05", "3e-05", "0.0001", "0.0003")
WIDE_L2 = "1e-05"  # one ArrowRight from 0 at 512-512
FINISHED = r": (done, (\d+) of \2 epochs|from the store, all \d+ epochs)"
LOG_RUN = re.compile(r"^(\S+ \S+) INFO regviz\.runs\.manager: run (\w+) (.*)$", re.M)
LOG_READY = re.compile(
    r"^(\S+ \S+) INFO regviz\.runs\.local: training worker (\d+) ready in ([\d.]+) s", re.M
)
LIMITS = {
    "t5_fresh_page_over_floor_s": 1.5,
    "t1_first_epoch_s": 0.6,
    "t2_16_factor": 1.3, "t2_16_plus_s": 0.6, "t2_512_factor": 1.15,
    "t6_server_mb": 350.0, "t6_total_mb": 1300.0,
}  # fmt: skip

# runs in every page from its first script: each change of what the charts show, with both clocks
SAMPLER_JS = Template(r"""
window.__bench = {seen: [], keys: []};
document.addEventListener("keydown",
  e => window.__bench.keys.push({p: performance.now(), d: Date.now(), key: e.key}), true);
const state = () => {
  // chart slots: st.plotly_chart's, and those of the live charts' component (its frame is same-origin)
  const grids = [...document.querySelectorAll("iframe[title$$='live_charts']")]
    .map(f => f.contentDocument && f.contentDocument.getElementById("grid")).filter(g => g);
  const charts = [...document.querySelectorAll("[data-testid='stPlotlyChart']"),
    ...grids.flatMap(g => [...g.children])];
  const plots = charts
    .map(c => c.classList.contains("js-plotly-plot") ? c : c.querySelector(".js-plotly-plot")).filter(p => p);
  const skel = [...document.querySelectorAll("[data-testid='stSkeleton']")]
    .filter(e => e.offsetParent !== null);
  const app = document.querySelector("[data-testid='stApp']");
  const loss = plots.find(p => p.layout && p.layout.title && String(p.layout.title.text).includes($title));
  const trace = name => (loss && loss.data || []).find(t => t.name === name);
  const run = trace($run), base = trace($base);
  return {charts: charts.length, laid: plots.filter(p => p._fullLayout).length, skel: skel.length,
    side: document.querySelectorAll("[data-testid='stSidebar'] [data-testid='stSlider']").length,
    run: run ? run.x.length : 0, base: base ? base.x.length : 0, y0: run && run.y.length ? run.y[0] : null,
    script: app ? app.dataset.testScriptState : null};
};
setInterval(() => {
  const now = state(), seen = window.__bench.seen, last = seen[seen.length - 1];
  if (!last || Object.keys(now).some(k => last[k] !== now[k]))
    seen.push({...now, p: performance.now(), d: Date.now()});
}, $period);
// every message that carries this run's progress line: when it arrived, and the epochs it reports
window.__bench.msgs = [];
const Native = window.WebSocket, decoder = new TextDecoder();
const PROGRESS =
  /This run: (?:training, epoch (\d+) of \d+|done, (\d+) of \d+ epochs|from the store, all (\d+))/;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", m => {
      const hit = m.data instanceof ArrayBuffer && decoder.decode(m.data).match(PROGRESS);
      if (hit) window.__bench.msgs.push(
        {p: performance.now(), d: Date.now(), k: +(hit[1] || hit[2] || hit[3]), done: hit[1] === undefined});
    });
  }
};
""")


def sampler(period_ms: int) -> str:
    """The page sampler's script, sampling every period_ms."""
    names = {"title": LOSS_TITLE, "run": RUN_VAL, "base": BASE_VAL}
    return SAMPLER_JS.substitute({k: json.dumps(v) for k, v in names.items()}, period=period_ms)


# true once the script is idle and every progress line says its run is complete (also tests/test_browser.py)
ALL_FINISHED = """
([pattern, bars]) => {
  const app = document.querySelector("[data-testid='stApp']");
  if (!app || app.dataset.testScriptState !== "notRunning") return false;
  const lines = [...document.querySelectorAll("[data-testid='stProgress']")].map(e => e.innerText);
  return lines.length === bars && lines.every(t => new RegExp(pattern).test(t));
}
"""
FLOOR_APP = """
import plotly.graph_objects as go
import streamlit as st

st.slider("a slider", 0, 10, 5)
st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])))
"""
# predicates over one sample of the page (a JS expression of `e`)
CHART_DRAWN = "e.laid >= 1 && e.laid === e.charts && e.skel === 0"
FRAMES_DRAWN = "e.side > 0 && e.charts === 4 && e.laid === 4 && e.skel === 0"


# ---- processes: the server, its log, /proc ---------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """True when streamlit's health endpoint answers ok."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except (urllib.error.URLError, OSError):
        return False


def log_time(stamp: str) -> float:
    """Seconds since the epoch of a logging timestamp like '2026-12-01 10:28:40,734' (local time)."""
    whole, ms = stamp.split(",")
    return time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000


class Server:
    """`streamlit run <script>` on a free port; stderr (streamlit's and regviz's log) to a file."""

    def __init__(
        self, script: Path, cwd: Path, env: dict[str, str], logs: Path, cores: set[int] | None = None
    ):
        self.script, self.cwd, self.env, self.logs, self.cores = script, cwd, env, logs, cores
        self.log = logs / f"{script.stem}.stderr.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, spawned=None) -> float:
        """Start it (spawned(pid) is called at once) and poll /_stcore/health every 20 ms; returns
        time.time() of the first ok."""
        for _ in range(3):  # another process may take the free port before streamlit binds it
            port = free_port()
            command = [
                sys.executable, "-m", "streamlit", "run", str(self.script), "--server.headless", "true",
                "--server.port", str(port), "--browser.gatherUsageStats", "false",
                "--server.fileWatcherType", "none",
            ]  # fmt: skip
            with open(self.logs / f"{self.script.stem}.stdout.log", "w") as out, open(self.log, "w") as err:
                self.proc = subprocess.Popen(command, cwd=self.cwd, env=self.env, stdout=out, stderr=err,
                                             preexec_fn=pinned(self.cores))  # fmt: skip
            if spawned is not None:
                spawned(self.proc.pid)
            self.url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + SERVER_START_S
            while self.proc.poll() is None and time.monotonic() < deadline:
                if healthy(f"{self.url}/_stcore/health"):
                    return time.time()
                time.sleep(0.02)  # poll interval, bounded by the deadline
            self.stop()
            if "already in use" not in self.text():
                break
        raise RuntimeError(f"streamlit did not become healthy:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        """Terminate the server (its workers follow it); kill it if it does not stop in 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def events(self, key: str) -> list[tuple[float, str]]:
        """(time, what) of every log line of run `key`: 'started: ...', 'done after 20 of 20 epochs'..."""
        return [(log_time(s), what) for s, k, what in LOG_RUN.findall(self.text()) if k == key]

    def event(self, key: str, starts: str, timeout_s: float = 60.0, after: float = 0.0) -> float:
        """Time of the first log line of run `key` starting with `starts`, logged after `after`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [t for t, what in self.events(key) if what.startswith(starts) and t >= after]
            if found:
                return found[0]
            time.sleep(0.1)  # poll interval, bounded by the deadline
        raise RuntimeError(f"run {key} never logged '{starts}': {self.events(key)}")

    def ready(self, timeout_s: float = 180.0) -> tuple[float, float]:
        """(log time, seconds it reported) of 'training worker 0 ready in ... s', waiting for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [(log_time(s), float(sec)) for s, i, sec in LOG_READY.findall(self.text()) if i == "0"]
            if found:
                return found[0]
            time.sleep(0.1)  # poll interval, bounded by the deadline
        raise RuntimeError(f"training worker 0 never became ready:\n{self.text()[-3000:]}")


def _stat(pid: int) -> list[str]:
    # the fields after the command name, which may itself hold spaces and parentheses
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Every process below pid (the server's training workers), from the ppid fields in /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(_stat(int(stat.parent.name))[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def rss_kb(pid: int) -> int:
    """VmRSS of a process in kB; 0 once it has gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks; None once it has gone."""
    try:
        fields = _stat(pid)
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def machine_ticks() -> int:
    """Clock ticks all cores spent busy (not idle, not waiting for I/O) since boot, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4]


def chromium_pids() -> list[int]:
    """This script's Chromium processes (not any other browser on the machine)."""
    found = []
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().startswith("chrom"):
                found.append(pid)
    return found


class _Counter:
    """CPU seconds of a changing set of processes: each one's ticks counted from when it was first seen
    (the set is rescanned twice a second, so a new process's first ticks are counted too)."""

    def __init__(self):
        self.last: dict[int, int] = {}
        self.total = 0

    def read(self, pids: list[int]) -> float:
        for pid in pids:
            ticks = cpu_ticks(pid)
            if ticks is not None:
                self.total += max(0, ticks - self.last.get(pid, 0))
                self.last[pid] = ticks
        return self.total / ProcSampler.TICK


class ProcSampler(threading.Thread):
    """Every PROC_SAMPLE_S: RSS of the server and of server plus workers; CPU seconds of the server, its
    workers, this script's Chromium and the whole machine."""

    TICK = os.sysconf("SC_CLK_TCK")
    COLUMNS = ("time", "server_kb", "total_kb", "server", "workers", "chromium", "machine")

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.halt = pid, [], threading.Event()

    def run(self) -> None:
        workers, browser, counters = [], [], (_Counter(), _Counter())
        for n in itertools.count():
            if n % 10 == 0:  # scanning all of /proc costs more than reading a few files: twice a second
                workers, browser = descendants(self.pid), chromium_pids()
            server = cpu_ticks(self.pid)
            if server is None:
                return  # the server is gone
            rss = rss_kb(self.pid)
            self.samples.append((
                time.time(), rss, rss + sum(rss_kb(p) for p in workers), server / self.TICK,
                counters[0].read(workers), counters[1].read(browser), machine_ticks() / self.TICK,
            ))  # fmt: skip
            if self.halt.wait(PROC_SAMPLE_S):
                return

    def peaks_mb(self, t0: float, t1: float) -> tuple[float, float]:
        """Peak RSS in MB (1e6 bytes) of the server and of server plus workers between t0 and t1."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        return max(s[1] for s in inside) * 1024 / 1e6, max(s[2] for s in inside) * 1024 / 1e6

    def at(self, t: float, column: str) -> float:
        """A cumulative CPU column (seconds) at time t, interpolated between samples."""
        i = self.COLUMNS.index(column)
        before = max((s for s in self.samples if s[0] <= t), key=lambda s: s[0])
        after = min((s for s in self.samples if s[0] >= t), key=lambda s: s[0], default=before)
        if after[0] == before[0]:
            return before[i]
        return before[i] + (after[i] - before[i]) * (t - before[0]) / (after[0] - before[0])

    def cores(self, t0: float, t1: float) -> dict[str, float]:
        """Average cores used between t0 and t1: by the server, its workers, Chromium, the machine."""
        names = ("server", "workers", "chromium", "machine")
        return {name: (self.at(t1, name) - self.at(t0, name)) / (t1 - t0) for name in names}


# ---- the page side ----------------------------------------------------------------------------------------

# what the sidebar shows: each slider's label and thumb value, and the seed
SHOWN = """
() => {
  const shown = {};
  for (const s of document.querySelectorAll("[data-testid='stSidebar'] [data-testid='stSlider']")) {
    const label = s.querySelector("[data-testid='stWidgetLabel']");
    const value = s.querySelector("[data-testid='stSliderThumbValue']");
    if (label && value) shown[label.innerText.trim()] = value.innerText.trim();
  }
  const seed = document.querySelector("[data-testid='stSidebar'] [data-testid='stNumberInput'] input");
  if (seed) shown.seed = seed.value;
  return shown;
}
"""
URL_SETTINGS = "() => Object.fromEntries([...new URLSearchParams(location.search)].sort())"


class Spoiled(Exception):
    """The page did not hold the settings it should have, before or after a keypress (see the report)."""


def open_tab(browser, url: str | None = None):
    """A fresh context (its own Streamlit session) with the sampler; goes to url (not waiting) if given."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(sampler(SAMPLE_MS))
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    if url:
        page.goto(url, wait_until="commit")
    return page


def first_sample(page, predicate: str, after_ms: float = -1.0, deadline: float | None = None) -> dict | None:
    """The first sample of the page (performance.now() > after_ms) where `predicate` holds; waits for it,
    until time.time() reaches `deadline` if given (then None)."""
    finder = f"() => window.__bench.seen.find(e => e.p > {after_ms} && ({predicate})) || null"
    if deadline is None:
        return page.wait_for_function(finder, polling=50).json_value()
    found = page.evaluate(finder)  # past the deadline (an earlier tab used it up) this is the only look
    if found or time.time() >= deadline:
        return found
    try:
        return page.wait_for_function(
            finder, polling=50, timeout=(deadline - time.time()) * 1000
        ).json_value()
    except PlaywrightTimeout:
        return None


def samples(page) -> list[dict]:
    return page.evaluate("window.__bench.seen")


def first_message(page, predicate: str, after_ms: float) -> dict | None:
    """The first progress message (after after_ms) where `predicate` (a JS expression of `m`) holds."""
    return page.evaluate(f"() => window.__bench.msgs.find(m => m.p > {after_ms} && ({predicate})) || null")


def _after(entry: dict | None, key: dict) -> float | None:
    return None if entry is None else (entry["p"] - key["p"]) / 1000


def bars(params: dict[str, str]) -> int:
    """Progress lines of a page: the run, and its baseline unless the run is the baseline."""
    return 1 if Settings.from_params(params).is_baseline else 2


def wait_finished(page, params: dict[str, str]) -> None:
    """Every progress line complete, the script idle, the last sample with every chart laid out."""
    page.wait_for_function(ALL_FINISHED, arg=[FINISHED, bars(params)], polling=100)
    last = "window.__bench.seen[window.__bench.seen.length - 1]"
    page.wait_for_function(
        f"() => {{ const e = {last}; return e && e.charts === 4 && {CHART_DRAWN}; }}", polling=50
    )


def expected_shown(params: dict[str, str]) -> dict[str, str]:
    """What the sidebar shows for these settings (the app's formats), for the controls checked."""
    s = Settings.from_params(params)
    return {
        "Units per layer": str(s.width), "Hidden layers": str(s.depth), "Epochs": str(s.epochs),
        "L2 penalty": "0" if s.l2 == 0 else f"{s.l2:g}", "Training data used": f"{s.train_fraction:.0%}",
        "seed": str(s.seed),
    }  # fmt: skip


def check_shown(page, params: dict[str, str]) -> None:
    """Raise Spoiled unless the sidebar shows these settings."""
    shown, expected = page.evaluate(SHOWN), expected_shown(params)
    wrong = {k: shown.get(k) for k, v in expected.items() if shown.get(k) != v}
    if wrong:
        raise Spoiled(f"sidebar shows {wrong} on a page of {params or 'the defaults'} ({page.url})")


def check_url(page, params: dict[str, str], timeout_ms: float = 15_000) -> None:
    """Wait until the page's URL holds exactly these settings; raise Spoiled if it does not in time."""
    expected = dict(sorted(Settings.from_params(params).to_params().items()))
    try:
        page.wait_for_function(f"e => JSON.stringify(({URL_SETTINGS})()) === JSON.stringify(e)",
                               arg=expected, polling=50, timeout=timeout_ms)  # fmt: skip
    except PlaywrightTimeout:
        raise Spoiled(
            f"after the keypress the URL holds {page.evaluate(URL_SETTINGS)}, not {expected}"
        ) from None


def glitch(page, params: dict[str, str], within_ms: float = 2000) -> str | None:
    """Diagnostic: whether the sidebar stops showing the page's settings within `within_ms`."""
    expected = expected_shown(params)
    try:
        page.wait_for_function(
            f"e => {{ const s = ({SHOWN})(); return Object.keys(e).some(k => s[k] !== e[k]); }}",
            arg=expected, polling=50, timeout=within_ms,
        )  # fmt: skip
    except PlaywrightTimeout:
        return None
    shown = page.evaluate(SHOWN)
    return json.dumps({k: shown.get(k) for k, v in expected.items() if shown.get(k) != v})


def press(page, label: str, key: str = "ArrowRight") -> dict:
    """Focus the slider labelled `label`, press `key`; returns the page's keydown sample {p, d}."""
    thumb = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
    thumb.focus()
    n = page.evaluate("window.__bench.keys.length")
    page.keyboard.press(key)
    return page.wait_for_function(f"() => window.__bench.keys[{n}] || null").json_value()


def link(url: str, params: dict[str, str]) -> str:
    return f"{url}/?{urlencode(params)}" if params else f"{url}/"


def key_of(params: dict[str, str]) -> str:
    """The identity the server logs a run under."""
    return Settings.from_params(params).key()


# ---- the measurements -------------------------------------------------------------------------------------


def measure_floor(browser, logs: Path, env: dict[str, str], cores: set[int] | None, repeats: int = 3) -> dict:
    """Target 0: goto -> the one chart laid out, on a page with a slider and a small chart."""
    app_dir = Path(tempfile.mkdtemp(prefix="floor-", dir=logs))
    (app_dir / "floor_app.py").write_text(FLOOR_APP)
    server = Server(app_dir / "floor_app.py", app_dir, env, logs, cores)
    server.start()
    times = []
    try:
        for _ in range(repeats):
            page = open_tab(browser)
            t0 = time.time()
            page.goto(server.url + "/", wait_until="commit")
            times.append(first_sample(page, CHART_DRAWN)["d"] / 1000 - t0)
            page.context.close()
    finally:
        server.stop()
    return {"seconds": times, "median_s": statistics.median(times)}


def run_cli(params: dict[str, str], env: dict[str, str], cores: set[int] | None = None) -> dict:
    """`python -m regviz train <params> --no-store`: its last epoch's "seconds", and its wall time."""
    flags = [arg for k, v in params.items() for arg in (f"--{k.replace('_', '-')}", v)]
    command = [sys.executable, "-m", "regviz", "train", *flags, "--no-store"]
    t0 = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
                          preexec_fn=pinned(cores))  # fmt: skip
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    epochs = [r for r in lines if "epoch" in r]
    return {
        "params": params, "epochs": len(epochs), "seconds": epochs[-1]["seconds"],
        "first_epoch_seconds": epochs[0]["seconds"], "wall_seconds": wall,
    }  # fmt: skip


def fresh_start(browser, server: Server, base: dict[str, str], spawned) -> dict:
    """Target 5: goto as soon as the server is healthy -> sidebar and the four chart frames laid out;
    then the default run trained to its end."""
    page = open_tab(browser)  # the context exists before the server does: its set-up is not timed
    healthy_at = server.start(spawned)
    t0 = time.time()
    page.goto(link(server.url, base), wait_until="commit")
    drawn = first_sample(page, FRAMES_DRAWN)
    ready_at, ready_s = server.ready()
    result = {
        "health_ok_to_goto_s": t0 - healthy_at, "seconds": drawn["d"] / 1000 - t0,
        "worker_ready_after_goto_s": ready_at - t0, "worker_ready_reported_s": ready_s,
    }  # fmt: skip
    result["drawn_before_worker_ready"] = result["seconds"] < result["worker_ready_after_goto_s"]
    wait_finished(page, base)
    result["sidebar_glitch_after_first_run"] = glitch(page, base)
    page.context.close()
    return result


def trained(browser, server: Server, params: dict[str, str]) -> str | None:
    """Open a tab on params, wait for its runs to finish, close it; returns any sidebar glitch seen."""
    page = open_tab(browser, link(server.url, params))
    wait_finished(page, params)
    seen = glitch(page, params)
    page.context.close()
    return seen


def keypress_run(browser, server: Server, proc, before: dict, after: dict, attempts: int = 3) -> dict:
    """A fresh tab on `before` (finished), ArrowRight on L2 to `after`: keypress -> first and last epoch
    drawn; tried again in a new tab when the page did not hold the settings it should (Spoiled)."""
    spoiled = []
    for _ in range(attempts):
        page = open_tab(browser, link(server.url, before))
        try:
            wait_finished(page, before)
            check_shown(page, before)
            timed = timed_keypress(page, after)
            wait_finished(page, after)
        except Spoiled as e:
            spoiled.append(str(e))
            continue
        finally:
            page.context.close()
        key_s = timed["key_date_ms"] / 1000
        started = server.event(key_of(after), "started", after=key_s - 1)
        done = server.event(key_of(after), "done", after=started)
        return {
            **timed, "key_to_started_s": started - key_s, "server_training_s": done - started,
            "cores_while_training": proc.cores(started, done), "spoiled": spoiled,
        }  # fmt: skip
    raise RuntimeError(f"{attempts} tabs in a row did not hold their settings: {spoiled}")


def timed_keypress(page, after: dict[str, str]) -> dict:
    """ArrowRight on L2; keypress -> first and -> last epoch of the new run drawn (page clock), and
    -> the progress lines of those epochs received."""
    epochs = Settings.from_params(after).epochs
    key = press(page, L2_LABEL)
    check_url(page, after)
    old = [e for e in samples(page) if e["p"] < key["p"]][-1]
    new = f"e.run >= 1 && e.y0 !== {json.dumps(old['y0'])}"  # a new run draws a different first point
    first = first_sample(page, new, after_ms=key["p"])
    last = first_sample(page, f"{new} && e.run === {epochs}", after_ms=key["p"])
    return {
        "params": after, "key_date_ms": key["d"],
        "first_epoch_s": _after(first, key), "last_epoch_s": _after(last, key),
        "first_epoch_received_s": _after(first_message(page, "m.k >= 1", key["p"]), key),
        "last_epoch_received_s": _after(first_message(page, f"m.done && m.k === {epochs}", key["p"]), key),
        "drawn": drawn_after(page, key, last["p"]),
    }  # fmt: skip


def drawn_after(page, key: dict, until_ms: float) -> list[list]:
    """What the page drew after a keypress: [seconds after it, points of this run, of the baseline,
    charts laid out, script state] at each change, up to until_ms."""
    return [
        [round((e["p"] - key["p"]) / 1000, 3), e["run"], e["base"], e["laid"], e["script"]]
        for e in samples(page)
        if key["p"] < e["p"] <= until_ms
    ]


# ---- putting it together ----------------------------------------------------------------------------------


def machine() -> dict:
    """What the figures were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {}
    for name in ("tensorflow", "tensorflow-cpu", "keras", "streamlit", "plotly", "playwright"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "versions": versions, "load_avg_start": os.getloadavg(),
    }  # fmt: skip


def checkout() -> dict:
    """Which app was measured: the commit, and whether app.py or regviz/ differ from it."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "app.py", "regviz"], capture_output=True, text=True
    )
    return {"commit": head.strip(), "app_or_regviz_modified": bool(dirty.stdout.strip())}


def split_cores(n: int) -> tuple[set[int], set[int]]:
    """(the server's cores, the benchmark's): the first n this process may use, and the rest."""
    mine = sorted(os.sched_getaffinity(0))
    if n < 1 or n > len(mine):
        raise SystemExit(f"error: --cores {n}: give 1 to {len(mine)}")
    server, rest = set(mine[:n]), set(mine[n:])
    return server, rest or server  # one core in all: the benchmark shares it (said in the results)


def confine(pid: int, cores: set[int]) -> None:
    """Set the affinity of every thread of pid (a process just started has one or two)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cores)


def pinned(cores: set[int] | None):
    """A preexec_fn that confines a child to cores before it runs (its own children inherit it)."""
    return None if cores is None else (lambda: os.sched_setaffinity(0, cores))


def environment(logs: Path, imdb: Path) -> dict[str, str]:
    """The server's and the command line's environment: a fresh store, the IMDB file, this checkout."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ, "REGVIZ_STORE": str(logs / "store" / "runs.sqlite"),
        "REGVIZ_IMDB_PATH": str(imdb) if imdb.is_file() else "", "PYTHONPATH": path,
        "TF_CPP_MIN_LOG_LEVEL": "2", "REGVIZ_PREFETCH": "0",  # the targets are about visitors' runs alone
    }  # fmt: skip


def measure(args, browser, logs: Path) -> dict:
    """Every measurement, in order; returns the raw figures."""
    env, epochs = environment(logs, args.imdb), args.epochs
    base = {"epochs": str(epochs)} if epochs != 20 else {}
    if not args.imdb.is_file():
        base["dataset"] = "synthetic"  # every link and command line: the offline data set
    stops = L2_STOPS[: 1 + args.repeats]
    wide = {**base, "width": "512"}
    raw: dict = {"floor": measure_floor(browser, logs, env, args.server_cores)}
    print(f"floor: {raw['floor']['median_s']:.2f} s", flush=True)

    cli_settings = {"16_" + s: {**base, "l2": s} for s in stops[1:]}
    cli_settings["512"] = {**wide, "l2": WIDE_L2}
    raw["cli"] = {name: run_cli(params, env, args.server_cores) for name, params in cli_settings.items()}
    print("cli:", {n: round(c["seconds"], 2) for n, c in raw["cli"].items()}, flush=True)

    server, samplers = Server(REPO / "app.py", REPO, env, logs, args.server_cores), []
    try:
        raw["fresh"] = fresh_start(browser, server, base, lambda pid: samplers.append(sample(pid)))
        raw["default_run"] = {"started": server.event(key_of(base), "started")}
        raw["default_run"]["done"] = server.event(key_of(base), "done")
        print(f"fresh page: {raw['fresh']['seconds']:.2f} s; default run trained", flush=True)
        proc = samplers[-1]  # the sampler of the server that answered (a port taken means a retry)
        raw["default_run"]["cores"] = proc.cores(raw["default_run"]["started"], raw["default_run"]["done"])
        befores = [base, *({**base, "l2": stop} for stop in stops[:-1])]
        raw["l2"] = [
            keypress_run(browser, server, proc, b, {**base, "l2": s})
            for b, s in zip(befores, stops, strict=True)
        ]
        print("keypress -> first epoch:", [round(r["first_epoch_s"], 3) for r in raw["l2"]], flush=True)

        raw["wide_baseline_glitch"] = trained(browser, server, wide)
        raw["wide"] = keypress_run(browser, server, proc, wide, {**wide, "l2": WIDE_L2})
        print(f"512-512 keypress -> last epoch: {raw['wide']['last_epoch_s']:.2f} s", flush=True)
    finally:
        server.stop()
        for sampler in samplers:
            sampler.halt.set()
            sampler.join()
    raw["proc"] = samplers[-1]
    return raw


def sample(pid: int) -> ProcSampler:
    """A /proc sampler of pid, started."""
    sampler = ProcSampler(pid)
    sampler.start()
    return sampler


def targets(raw: dict, floor: float) -> dict:
    """Each target's figure, limit and verdict, from the raw measurements."""
    return {
        "t5_fresh_server_page": _target(
            raw["fresh"]["seconds"] - floor, LIMITS["t5_fresh_page_over_floor_s"], **raw["fresh"]
        ),
        "t1_keypress_to_first_epoch": _t1(raw["l2"]),
        "t2_keypress_to_last_epoch": _t2s(raw),
        "t6_memory": _t6(raw["proc"], raw["default_run"]),
    }


def _target(measured: float | None, limit: float, **details) -> dict:
    # None: nothing was measured in time (a page that never drew), which does not meet the target
    met = measured is not None and measured <= limit
    return {"measured": measured, "limit": limit, "met": met, **details}


def _t1(runs: list[dict]) -> dict:
    timed = runs[1:]  # the first L2 stop trains 16-16 with a penalty before anything is timed
    first = [r["first_epoch_s"] for r in timed]
    return {
        **_target(max(first), LIMITS["t1_first_epoch_s"]), "judged_on": "max",
        "median": statistics.median(first), "max": max(first), "runs": timed, "warm_up_run": runs[0],
    }  # fmt: skip


def _t2s(raw: dict) -> dict:
    runs = {}
    for r in raw["l2"][1:]:
        cli = raw["cli"]["16_" + r["params"]["l2"]]
        limit = LIMITS["t2_16_factor"] * cli["seconds"] + LIMITS["t2_16_plus_s"]
        runs["16-16 l2=" + r["params"]["l2"]] = _t2(r, cli, limit)
    cli = raw["cli"]["512"]
    runs["512-512 l2=" + WIDE_L2] = _t2(raw["wide"], cli, LIMITS["t2_512_factor"] * cli["seconds"])
    return {"met": all(r["met"] for r in runs.values()), "runs": runs}


def _t6(proc: ProcSampler, run: dict) -> dict:
    start, end = proc.samples[0][0], proc.samples[-1][0]
    up_to_default, whole = proc.peaks_mb(start, run["done"]), proc.peaks_mb(start, end)
    in_default = proc.peaks_mb(run["started"], run["done"])
    parts = {
        "server": _target(whole[0], LIMITS["t6_server_mb"], unit="MB", window="the whole script"),
        "server_and_workers": _target(
            up_to_default[1], LIMITS["t6_total_mb"], unit="MB", workers=1,
            window="server start to the default run's done (worker warm-up included)",
            default_run_only=in_default[1], whole_script=whole[1],
        ),
    }  # fmt: skip
    return {"met": all(p["met"] for p in parts.values()), **parts}


def _t2(run: dict, cli: dict, limit: float) -> dict:
    last = run["last_epoch_s"]
    return {
        **_target(last, limit), "cli_seconds": cli["seconds"], "cli_wall_seconds": cli["wall_seconds"],
        "ratio_to_cli": last / cli["seconds"], "ratio_to_cli_wall": last / cli["wall_seconds"],
        "server_training_s": run["server_training_s"], "first_epoch_s": run["first_epoch_s"],
        "key_to_started_s": run["key_to_started_s"], "last_epoch_received_s": run["last_epoch_received_s"],
        "cores_while_training": run["cores_while_training"], "drawn": run["drawn"],
    }  # fmt: skip


def anomalies(raw: dict) -> dict:
    """Pages that did not hold their settings (see bench/README.md): glitches seen, tabs replaced."""
    return {
        "sidebar_glitch_after_first_run": {
            "default page": raw["fresh"]["sidebar_glitch_after_first_run"],
            "512-512 baseline page": raw["wide_baseline_glitch"],
        },
        "tabs_replaced_or_keypresses_redone": [s for r in [*raw["l2"], raw["wide"]] for s in r["spoiled"]],
    }


def table(result: dict) -> str:
    """One row per figure: target, measured, limit, met?"""
    t, floor = result["targets"], result["floor"]["median_s"]
    yes = {True: "yes", False: "NO"}
    rows = [
        ("0 floor: empty page goto -> chart, median of 3", f"{floor:.2f} s", "", ""),
        ("5 fresh server: goto -> sidebar + 4 frames, minus floor", _s(t["t5_fresh_server_page"]), "<= 1.5 s",
         yes[t["t5_fresh_server_page"]["met"]]),
        ("1 keypress -> first epoch drawn, max (median)",
         f"{t['t1_keypress_to_first_epoch']['max']:.2f} s ({t['t1_keypress_to_first_epoch']['median']:.2f})",
         "<= 0.6 s", yes[t["t1_keypress_to_first_epoch"]["met"]]),
    ]  # fmt: skip
    for name, r in t["t2_keypress_to_last_epoch"]["runs"].items():
        trained = f"CLI {r['cli_seconds']:.2f} s, worker {r['server_training_s']:.2f} s"
        what = f"2 {name}: keypress -> last epoch ({trained})"
        got = f"{r['measured']:.2f} s (x{r['ratio_to_cli']:.2f})"
        rows.append((what, got, f"<= {r['limit']:.2f} s", yes[r["met"]]))
    rows += [
        ("6 peak RSS, server process", f"{t['t6_memory']['server']['measured']:.0f} MB", "<= 350 MB",
         yes[t["t6_memory"]["server"]["met"]]),
        ("6 peak RSS, server + 1 worker, to default run done",
         f"{t['t6_memory']['server_and_workers']['measured']:.0f} MB", "<= 1300 MB",
         yes[t["t6_memory"]["server_and_workers"]["met"]]),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("target", "measured", "limit", "met")
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def _s(t: dict) -> str:
    return "never drawn" if t["measured"] is None else f"{t['measured']:.2f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 epochs, one timed L2 stop (CI)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON figures (default {DEFAULT_OUT})")
    p.add_argument("--imdb", type=Path, default=Path(os.environ.get("REGVIZ_IMDB_PATH") or DEFAULT_IMDB))
    p.add_argument("--cores", type=int, default=0,
                   help="pin the server, its workers and the command line to this many cores, and Chromium "
                        "and this script to the others (default 0: nothing pinned)")  # fmt: skip
    args = p.parse_args(argv)
    args.server_cores, bench_cores = split_cores(args.cores) if args.cores else (None, None)
    if bench_cores:
        os.sched_setaffinity(0, bench_cores)  # this script, and the Chromium it launches
    args.epochs, args.repeats = (3, 1) if args.quick else (20, 3)
    config = {
        "quick": args.quick, "epochs": args.epochs, "timed_l2_stops": args.repeats,
        "imdb": args.imdb.is_file(), "page_sample_ms": SAMPLE_MS, "proc_sample_s": PROC_SAMPLE_S,
        "cores": {"server_workers_cli": sorted(args.server_cores or []),
                  "chromium_and_script": sorted(bench_cores or [])},
    }  # fmt: skip
    result = {"config": config, "machine": machine(), "checkout": checkout()}
    logs = Path(tempfile.mkdtemp(prefix="regviz-live-"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        result["machine"]["chromium"] = browser.version
        raw = measure(args, browser, logs)
        browser.close()
    result["machine"]["load_avg_end"] = os.getloadavg()
    result["floor"], result["cli"], result["default_run"] = raw["floor"], raw["cli"], raw["default_run"]
    result["targets"] = targets(raw, raw["floor"]["median_s"])
    result["page_anomalies"] = anomalies(raw)
    result["logs"] = str(logs)
    print(table(result))
    write(args.out, result, logs)
    return 0


def write(out: Path, result: dict, logs: Path) -> None:
    """The figures as JSON (bench/results/ by default), and where they and the logs went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"figures written to {out}; server logs in {logs}")


if __name__ == "__main__":
    sys.exit(main())
