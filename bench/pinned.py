"""A comparison of six pinned stored runs against the same page without pins, in real Chromium.

    python bench/pinned.py            # 20 epochs, 5 page loads of each kind, alternating: about a minute
    python bench/pinned.py --quick    # 3 epochs, 2 loads of each (CI: proves the script works)
    python bench/pinned.py --out f.json

Target (issue "Compare and tune"): a page with six pinned stored runs is drawn within 0.3 s of the
time the same page with the run and its baseline alone takes. Both kinds of page come from the store:
the eight runs (the run, its baseline, six pins) are trained first in one process and stored, then a
fresh server serves them. Each load is a fresh browser context (a new session): goto -> every chart
laid out with every curve at its last epoch (the pins' too), read from the page's own clock by the
sampler of bench/live.py. The loads alternate (plain, pinned, plain, ...) so that a drift of the
machine's speed touches both kinds alike; medians are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import live  # noqa: E402  (the live benchmark's server, sampler and machine description)

from regviz import pins  # noqa: E402  (no tensorflow: link texts only)
from regviz.settings import Settings  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "results" / "pinned.json"
LIMIT_S = 0.3
RUN = {"l2": "0.01"}
PINS = [
    {"l2": "0.0001"},
    {"l2": "0.0003"},
    {"l2": "0.001"},
    {"l2": "0.003"},
    {"dropout": "0.5"},
    {"l1": "0.0001"},
]
STORE_SCRIPT = """
import json, sys
from regviz import data
from regviz.settings import Settings
from regviz.store import RunStore
from regviz.training.loop import train
store = RunStore(sys.argv[1])
for params in json.loads(sys.argv[2]):
    settings = Settings.from_params(params)
    version = data.load(settings.dataset).version
    if store.get(settings, version) is None:
        store.put(settings, version, list(train(settings)))
"""
# every chart laid out, and each named loss-chart curve at n points
ALL_CURVES = """
([title, names, n]) => {
  // the live charts are drawn in their component's (same-origin) frame: ui/live_charts.py
  const frame = document.querySelector("iframe[title$='live_charts']");
  const grid = frame && frame.contentDocument && frame.contentDocument.getElementById("grid");
  const plots = grid ? [...grid.children] : [];  // each becomes its plot once drawn
  if (plots.length !== 4 || plots.some(p => !p._fullLayout)) return false;
  const loss = plots.find(p => p.layout && p.layout.title && String(p.layout.title.text).includes(title));
  return !!loss && names.every(name => (loss.data.find(t => t.name === name) || {x: []}).x.length === n);
}
"""


def link(url: str, params: dict[str, str], pinned: list[dict[str, str]]) -> str:
    query = [f"{k}={v}" for k, v in params.items()] + [
        f"pin={pins.encode(Settings.from_params(p))}" for p in pinned
    ]
    return url + "/?" + "&".join(query)


def load(browser, url: str, names: list[str], epochs: int) -> float:
    """Seconds from goto to every chart laid out with every named curve complete, on the page's clock."""
    page = live.open_tab(browser)
    try:
        t0 = time.time()
        page.goto(url, wait_until="commit")
        done = page.wait_for_function(ALL_CURVES, arg=[live.LOSS_TITLE, names, epochs], polling="raf")
        drawn_ms = page.evaluate("Date.now()")
        done.dispose()
        return drawn_ms / 1000 - t0
    finally:
        page.context.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 epochs, 2 loads of each kind (CI)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON figures (default {DEFAULT_OUT})")
    p.add_argument("--imdb", type=Path, default=Path(os.environ.get("REGVIZ_IMDB_PATH") or live.DEFAULT_IMDB))
    args = p.parse_args(argv)
    epochs, repeats = (3, 2) if args.quick else (20, 5)
    base = {"epochs": str(epochs)} if epochs != 20 else {}
    if not args.imdb.is_file():
        base["dataset"] = "synthetic"
    logs = Path(tempfile.mkdtemp(prefix="regviz-pinned-"))
    env = live.environment(logs, args.imdb)
    run, pinned = {**base, **RUN}, [{**base, **pin} for pin in PINS]
    everything = [run, {**base}, *pinned]  # the run, its baseline (every regularizer off), the pins
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-c", STORE_SCRIPT, env["REGVIZ_STORE"], json.dumps(everything)],
        env=env, cwd=REPO, check=True, capture_output=True, text=True,
    )  # fmt: skip
    stored_s = time.time() - t0
    reference = Settings.from_params(run).baseline()
    pin_names = [
        f"validation (pin {i + 1}: {pins.label(Settings.from_params(pin), reference)})"
        for i, pin in enumerate(pinned)
    ]
    own = [live.RUN_VAL, live.BASE_VAL]
    result = {
        "config": {"quick": args.quick, "epochs": epochs, "loads_each": repeats, "imdb": args.imdb.is_file()},
        "machine": live.machine(), "checkout": live.checkout(), "stored_in_s": stored_s,
    }  # fmt: skip
    server = live.Server(REPO / "app.py", REPO, env, logs)
    server.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=live.CHROMIUM, headless=True, args=live.CHROMIUM_ARGS
            )
            result["machine"]["chromium"] = browser.version
            # warm: the first visit starts the worker
            load(browser, link(server.url, run, pinned), own + pin_names, epochs)
            plain, with_pins = [], []
            for _ in range(repeats):
                plain.append(load(browser, link(server.url, run, []), own, epochs))
                with_pins.append(load(browser, link(server.url, run, pinned), own + pin_names, epochs))
            browser.close()
    finally:
        server.stop()
    result["machine"]["load_avg_end"] = os.getloadavg()
    plain_s, pinned_s = statistics.median(plain), statistics.median(with_pins)
    extra = pinned_s - plain_s
    result["loads"] = {"plain_s": plain, "pinned_s": with_pins}
    result["target"] = {
        "measured": extra, "limit": LIMIT_S, "met": extra <= LIMIT_S, "plain_median_s": plain_s,
        "pinned_median_s": pinned_s, "ratio": pinned_s / plain_s,
    }  # fmt: skip
    result["logs"] = str(logs)
    rows = [
        ("run + baseline", plain_s, plain),
        ("run + baseline + 6 pinned stored runs", pinned_s, with_pins),
    ]
    print(f"{'page':38}| median | loads")
    for name, median, loads in rows:
        print(f"{name:38}| {median:.2f} s | {', '.join(f'{x:.2f}' for x in loads)}")
    verdict = "met" if extra <= LIMIT_S else "NOT met"
    print(f"target: pinned page within {LIMIT_S} s of the plain one: {extra:+.2f} s ({verdict})")
    live.write(args.out, result, logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
