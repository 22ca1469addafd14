"""Browser tests of the classroom: a presenter link on a projector's screen, a stored run replayed and
paused, and a paused streaming run resumed (issue 20 §1, §2)."""

from __future__ import annotations

import pytest

from tests import test_browser
from tests.test_browser import ARTIFACTS, DATASET, EPOCHS, UNCAUGHT, query, wait_finished

# the browser tests' fixtures (tests/test_browser.py): their server, browser and pages
browser, open_page, server = test_browser.browser, test_browser.open_page, test_browser.server

pytestmark = pytest.mark.browser

# a small run on the offline data: trained once by the first test, then served from the server's runs
SMALL = {"dataset": "synthetic", "width": "8", "epochs": "20", "l2": "0.001"}
FIRST_PAGE_TIMEOUT_MS = 600_000
SMALL_EPOCHS = 20
PAUSE_GONE_MS = 30_000  # longer than a whole replay at 1 s an epoch: a Pause not found by then is gone
SCREENS = ({"width": 1280, "height": 720}, {"width": 1920, "height": 1080})
MOST = 0.55  # the least share of the screen's height the loss chart takes (below two controls, headline)
# what the presenter view shows: boxes of the controls, headline and chart, and whether anything scrolls
LAYOUT = """() => {
  const box = sel => { const e = document.querySelector(sel); if (!e) return null;
    const r = e.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const main = document.querySelector("[data-testid='stMain']");
  const sidebar = document.querySelector("[data-testid='stSidebar']");
  return {controls: box(".st-key-present_controls"), headline: box(".st-key-present_headline"),
    chart: box(".st-key-present_chart .js-plotly-plot"),
    play: box(".st-key-play, .st-key-pause, .st-key-replay"),
    scrolls: main.scrollHeight > main.clientHeight + 1
      || document.documentElement.scrollHeight > innerHeight + 1,
    sidebar: !!sidebar && sidebar.offsetParent !== null && sidebar.getBoundingClientRect().width > 0,
    height: innerHeight, sliders: [...document.querySelectorAll("[data-testid='stSlider'] label")]
      .map(l => l.innerText.trim()),
    svg: Math.max(...[...document.querySelectorAll(".st-key-present_chart .main-svg")]
      .map(s => s.getBoundingClientRect().right)),
    headlineText: (document.querySelector(".st-key-present_headline") || {}).innerText};
}"""
# the loss chart drawn at the size of its box (plotly redraws when the box takes the screen's height)
SETTLED = """() => { const plot = document.querySelector('.st-key-present_chart .js-plotly-plot');
  return !!plot?._fullLayout && !!document.querySelector('.st-key-present_headline')
    && Math.abs(plot._fullLayout.height - plot.getBoundingClientRect().height) < 2; }"""
# the loss chart's points of this run's validation curve, sampled by the page's COLLECTOR (test_browser)
SHOWN = "window.__regviz.seen.length ? window.__regviz.seen[window.__regviz.seen.length - 1][0] : -1"


def drawn(page) -> int:
    """Points of this run's validation curve on the loss chart, as the page's sampler saw last."""
    return page.evaluate(SHOWN)


def button(page, name: str):
    """The playback button of that name (Play, Pause, Step, Replay, Restart)."""
    return page.get_by_role("button", name=name, exact=True)


def overlap(a: dict, b: dict) -> bool:
    return (
        a["top"] < b["bottom"] - 1
        and b["top"] < a["bottom"] - 1
        and a["left"] < b["right"]
        and b["left"] < a["right"]
    )


@pytest.fixture(scope="module")
def small_trained(server, browser):
    """SMALL and its baseline trained once in the server, as a class's earlier run would have been."""
    context = browser.new_context()
    page = context.new_page()
    # the fresh server's first page: a worker starts (TensorFlow, the data), then both runs train. A
    # bound against a hang, not a speed target: CI of f996ca4 beside two browser streams (load 15) took
    # 52 s to start the worker and ~165 s to the end, over the 150 s every later page gets
    page.set_default_timeout(FIRST_PAGE_TIMEOUT_MS)
    page.goto(server.url + query(SMALL))
    wait_finished(page, bars=2, timeout_ms=FIRST_PAGE_TIMEOUT_MS)
    context.close()
    return SMALL


def test_a_presenter_link_fits_a_projector_without_scrolling(server, browser, small_trained):
    """present=1&show=l2,dropout opened at 1280x720 and at 1920x1080: no sidebar; controls, headline and
    loss chart on screen in that order, none overlapping, nothing scrolling; the chart takes most of the
    screen's height at both sizes."""
    link = server.url + query({**small_trained, "present": "1", "show": "l2,dropout"})
    for screen in SCREENS:
        context = browser.new_context(viewport=screen)  # a projector's browser opens at its own size
        page = context.new_page()
        page.set_default_timeout(150_000)
        page.goto(link)
        page.wait_for_function(SETTLED)
        page.screenshot(path=ARTIFACTS / f"browser-present-{screen['width']}x{screen['height']}.png")
        shown = page.evaluate(LAYOUT)
        context.close()
        assert not shown["sidebar"] and not shown["scrolls"], shown
        assert shown["controls"]["bottom"] <= shown["headline"]["top"] + 1 <= shown["chart"]["top"] + 1, shown
        assert not any(
            overlap(shown[a], shown[b]) for a, b in (("controls", "headline"), ("headline", "chart"))
        )
        assert shown["chart"]["bottom"] <= screen["height"] and shown["headlineText"].strip(), shown
        assert shown["svg"] <= screen["width"], shown
        # the chart follows the screen: most of its height at either size, not a fixed 420 px
        assert shown["chart"]["bottom"] - shown["chart"]["top"] >= MOST * screen["height"], shown
        assert shown["sliders"] == ["L2 penalty", "Dropout rate"], shown
    assert UNCAUGHT not in server.log.read_text()


def test_a_stored_run_replays_epoch_by_epoch_and_pause_holds(server, open_page, small_trained):
    """Replay of a finished run: the loss chart grows through at least 3 epoch counts before the last,
    labelled a replay; a pause holds the count it shows."""
    # 1 s an epoch: a 20-s replay, so that a Pause reaches the server mid-way even on a loaded machine
    page = open_page(server.url + query({**small_trained, "pace": "1"}))
    wait_finished(page, bars=2)
    page.wait_for_function(f"() => {SHOWN} === {SMALL_EPOCHS}")
    held = SMALL_EPOCHS
    for _ in range(3):  # should the replay still end before the Pause reaches the server, again
        page.evaluate("window.__regviz.seen = []")
        button(page, "Replay").click()
        page.get_by_text("Replay of the", exact=False).first.wait_for()
        # at least three partial counts seen, each recorded by the sampler as it happened
        page.wait_for_function(
            f"() => new Set(window.__regviz.seen.map(s => s[0]).filter(k => k > 0 && k < {SMALL_EPOCHS}))"
            ".size >= 3"
        )
        assert "training" not in page.locator("[data-testid='stAlert']").first.inner_text()
        try:  # the button is gone once the replay has ended: then replay again
            button(page, "Pause").click(timeout=PAUSE_GONE_MS)
        except test_browser.sync_api.TimeoutError:
            button(page, "Replay").wait_for()
            continue
        button(page, "Play").wait_for()
        page.wait_for_function(
            "() => document.querySelector(\"[data-testid='stApp']\").dataset.testScriptState === 'notRunning'"
        )
        held = drawn(page)
        if held < SMALL_EPOCHS:
            break
        button(page, "Play").click()  # the replay ended before the pause: held at its end, so again
        button(page, "Replay").wait_for()
    assert 0 < held < SMALL_EPOCHS
    # the observation window: 3 epochs' worth of the replay's pace, sampled by the page every 50 ms
    page.evaluate("window.__regviz.seen = []; window.__heldSince = performance.now()")
    page.wait_for_function("() => performance.now() - window.__heldSince > 3000")
    assert {k for k, _ in page.evaluate("window.__regviz.seen")} <= {held}
    assert (
        f"paused at epoch {held} of {SMALL_EPOCHS}"
        in page.locator("[data-testid='stAlert']").first.inner_text()
    )
    button(page, "Play").click()
    page.wait_for_function(f"() => {SHOWN} === {SMALL_EPOCHS}")
    assert UNCAUGHT not in server.log.read_text()


def test_a_paused_streaming_run_resumes(server, open_page):
    """pause=1 on a training run: the chart holds at epoch 1 while training goes on; Play shows the rest."""
    page = open_page(server.url + query({**DATASET, "epochs": str(EPOCHS), "l2": "0.0001", "pause": "1"}))
    page.get_by_text("training goes on", exact=False).first.wait_for()
    page.wait_for_function(f"() => {SHOWN} === 1")
    # training goes on past the shown epoch: the progress line says epoch 3 or more (or done)
    page.wait_for_function(
        """() => [...document.querySelectorAll("[data-testid='stProgress']")].some(e =>
             /epoch ([3-9]|\\d\\d+) of|done/.test(e.innerText))"""
    )
    # nothing past the pause was ever drawn (0 is the empty chart drawn before the first epoch arrived)
    assert {k for k, _ in page.evaluate("window.__regviz.seen")} - {0} == {1}
    button(page, "Play").click()
    page.wait_for_function(f"() => {SHOWN} > 2")
    wait_finished(page, bars=2)
    page.wait_for_function(f"() => {SHOWN} === {EPOCHS}")
    assert UNCAUGHT not in server.log.read_text()
