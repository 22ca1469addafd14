"""Browser tests of the charts' layout: the live page's figures and the sweep's, built from hand-made
records, drawn by the live charts' component (ui/live_charts/index.html, plotly.js's basic bundle) in
headless Chromium at the widths the app gives them at 1280×720 and at 390 px; no text of a chart (title,
axis titles, tick labels, legend entries, annotations, colour bar) covers another or leaves the chart,
and every legend entry shows without scrolling. test_browser.py checks the same in the running app."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests import test_browser

# the browser tests' fixture (tests/test_browser.py): Debian's headless Chromium
browser = test_browser.browser

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
COMPONENT = ROOT / "ui" / "live_charts" / "index.html"
SHOTS = ROOT / "test-artifacts"
# the component's frame width in the app (layout="wide"): at 1280×720 beside the open sidebar, and at
# 390 px (the sidebar collapsed), measured in headless Chromium (test_browser.py checks the app itself)
SCREENS = {"1280x720": ({"width": 1280, "height": 720}, 820), "390": ({"width": 390, "height": 844}, 358)}

# every text box of every chart in the document, and what is wrong with them: a box that covers another,
# a box outside its chart, a legend that scrolls
OVERLAPS = """
() => {
  const TEXT = [["title", ".g-gtitle text"], ["xtitle", ".g-xtitle text"], ["ytitle", ".g-ytitle text"],
    ["xtick", ".xtick text"], ["ytick", ".ytick text"], ["legend", ".legend .traces"],
    ["legend", ".legend .legendtitletext"], ["annotation", ".annotation"],
    ["colorbar", ".colorbar .cbtitle text"], ["colorbar", ".colorbar .cbaxis text"]];
  const problems = [];
  for (const plot of document.querySelectorAll(".js-plotly-plot")) {
    const chart = plot.getBoundingClientRect();
    const name = (plot.querySelector(".g-gtitle text") || {}).textContent || "untitled chart";
    const boxes = [];
    for (const [kind, selector] of TEXT) {
      for (const e of plot.querySelectorAll(selector)) {
        const r = e.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) boxes.push({kind, text: e.textContent.slice(0, 50), r});
      }
    }
    const inside = r => r.left >= chart.left - 1 && r.right <= chart.right + 1 && r.top >= chart.top - 1
      && r.bottom <= chart.bottom + 1;
    const meet = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1
      && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
    boxes.forEach((a, i) => {
      if (!inside(a.r)) problems.push(`${name}: ${a.kind} '${a.text}' leaves the chart`);
      boxes.slice(i + 1).forEach(b => {
        if (meet(a.r, b.r)) problems.push(`${name}: ${a.kind} '${a.text}' covers ${b.kind} '${b.text}'`);
      });
    });
    const bar = plot.querySelector(".legend .scrollbar");
    if (bar && bar.getBoundingClientRect().height > 0) problems.push(`${name}: the legend scrolls`);
  }
  return problems;
}
"""


def fold_records(fold: int, epochs: int = 300) -> list:
    """A Boston fold's records in its units: mean squared error from ~550 down to ~10, turning up."""
    from tests.test_figures import record

    shift = 1 + 0.1 * fold
    return [
        _regression(record(e, shift * (10 + 500 * math.exp(-e / 3) + 0.05 * max(0, e - 20) ** 2)), e)
        for e in range(1, epochs + 1)
    ]


def _regression(r, epoch):
    import dataclasses

    return dataclasses.replace(
        r, data_loss=r.val_data_loss * (1 - epoch / 60), mae=r.val_data_loss ** 0.5 * 0.8,
        val_mae=r.val_data_loss ** 0.5, val_auc=None, accuracy=0.0, val_accuracy=0.0,
    )  # fmt: skip


def live_figures() -> dict[str, list]:
    """The live page's four charts for the cases that crowd them most: IMDB with a penalty, its
    baseline and two pins (binary: five metrics each); Boston's four folds against their baseline."""
    from regviz import figures
    from regviz.settings import Settings
    from tests.test_figures import curve

    imdb = Settings(l2=1e-3, epochs=20)
    run = curve([0.5 - 0.02 * e + 0.0015 * e * e for e in range(20)])
    base = curve([0.45 - 0.03 * e + 0.003 * e * e for e in range(20)])
    pins = (("L2 0.0001", curve([0.47 - 0.025 * e + 0.002 * e * e for e in range(20)])),
            ("dropout 0.5", curve([0.48 - 0.02 * e + 0.001 * e * e for e in range(20)])))  # fmt: skip
    boston = Settings(dataset="boston", l2=1e-3, epochs=300)  # its default
    folds, base_folds = [fold_records(f) for f in range(4)], [fold_records(f + 1) for f in range(4)]
    from regviz.records import mean_records

    mean, base_mean = mean_records(folds), mean_records(base_folds)
    return {
        "imdb": [
            figures.loss_figure(run, base, imdb, pinned=pins),
            figures.metrics_figure(run, base, imdb, pinned=pins),
            figures.weights_histogram(run[-1], base[-1]), figures.weight_norms_figure(run, base, 20),
        ],
        "boston": [
            figures.loss_figure(mean, base_mean, boston, folds=(folds, base_folds)),
            figures.metrics_figure(mean, base_mean, boston),
            figures.weights_histogram(mean[-1], base_mean[-1]),
            figures.weight_norms_figure(mean, base_mean, 300),
        ],
    }  # fmt: skip


def sweep_figures() -> dict[str, list]:
    """The sweep page's charts: a 4×3 heatmap and a 4-value validation curve with its best starred."""
    from regviz import sweep_figures as sf

    grid = {"l2": [0.0, 1e-4, 1e-3, 1e-2], "dropout": [0.0, 0.25, 0.5]}
    values = [0.30 + 0.004 * i for i in range(12)]
    states = ["done"] * 12
    return {
        "heatmap": [sf.heatmap(grid, values, states, "min_val_loss")],
        "curve": [sf.validation_curve("l2", grid["l2"], [0.31, 0.29, 0.30, 0.34], "min_val_loss")],
    }


def render(page, figs) -> None:
    """Hand the figures to the component as Streamlit would, and wait until all are laid out."""
    page.evaluate(
        "figures => window.postMessage({type: 'streamlit:render', args: {figures}}, '*')",
        [f.to_json(validate=False) for f in figs],
    )
    page.wait_for_function(
        "n => document.querySelectorAll('.js-plotly-plot').length === n"
        " && [...document.querySelectorAll('.js-plotly-plot')].every(p => p._fullLayout)",
        arg=len(figs),
    )


def drawn(browser, figs, screen: str, shot: str):
    """A page of the component at the frame's width for that screen, with the figures drawn."""
    viewport, width = SCREENS[screen]
    context = browser.new_context(viewport={"width": width, "height": viewport["height"]})
    page = context.new_page()
    page.goto(COMPONENT.as_uri())
    render(page, figs)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SHOTS / f"layout-{shot}-{screen}.png", full_page=True)
    return page


@pytest.mark.parametrize("screen", list(SCREENS))
@pytest.mark.parametrize("case", ["imdb", "boston", "heatmap", "curve"])
def test_no_chart_text_covers_another_or_leaves_its_chart(browser, case, screen):
    """At 1280×720 and at 390 px, the live page's and the sweep's charts: no overlapping text boxes."""
    figs = {**live_figures(), **sweep_figures()}[case]
    page = drawn(browser, figs, screen, case)
    problems = page.evaluate(OVERLAPS)
    page.context.close()
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
