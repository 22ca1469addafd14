"""Browser test of a tab whose server died: its progress line says the connection is lost instead of a
stale "about 3 s left" (issue 19 §6)."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from tests import test_browser
from tests.test_browser import children, query, serve, shoot, wait_training

# the browser tests' fixtures (tests/test_browser.py): their browser and pages
browser, open_page = test_browser.browser, test_browser.open_page

pytestmark = pytest.mark.browser

# far more epochs than the test's few seconds of training can finish, however fast the machine
ENDLESS = {"dataset": "synthetic", "epochs": "500", "seed": "19"}
LINE = "[data-testid='stApp'] .st-key-progress [data-testid='stProgress']"
LOST = "connection to the server lost"
# the first progress line's text and the line above the charts (in the component's frame)
SHOWN = """() => [document.querySelector(arguments_line)?.innerText || "",
  document.querySelector("iframe[title$='live_charts']")?.contentDocument
    .getElementById("lost")?.innerText || ""]""".replace("arguments_line", repr(LINE))


def kill(pid: int) -> None:
    """SIGKILL the server and its descendants (as a crash or an OOM kill would end them)."""
    found, i = [pid], 0
    while i < len(found):  # the whole tree first: killed processes' children are handed to init
        found += children(found[i])
        i += 1
    for p in found:
        with contextlib.suppress(ProcessLookupError):  # a worker that ended on its own meanwhile
            os.kill(p, signal.SIGKILL)


def test_a_tab_whose_server_died_says_so_in_its_progress_line(tmp_path_factory, open_page):
    """Server killed mid-run: the progress line and the charts' frame say the connection is lost, at the
    epoch the curves stopped, instead of the last 'training, epoch k of 500, about ... left'."""
    with serve(tmp_path_factory, "browser-connection") as server:
        page = open_page(server.url + query(ENDLESS))
        wait_training(page, at_least=2)
        before = page.evaluate(SHOWN)[0]
        assert "training, epoch" in before and "of 500" in before, before
        kill(server.pid)
        page.locator("[data-testid='stApp']:not([data-test-connection-state='CONNECTED'])").wait_for()
        page.wait_for_function(f"() => ({SHOWN})()[0].includes({LOST!r})", polling=100, timeout=15_000)
        line, above_charts = page.evaluate(SHOWN)
        assert line.startswith("This run: connection to the server lost; the curves stopped at epoch ")
        assert "of 500" in line and "Reload the page when the server is back." in line, line
        assert "left" not in line, line
        assert above_charts.splitlines()[0] == line, (above_charts, line)
        stopped = int(line.split("at epoch ")[1].split()[0])
        assert stopped >= int(before.split("epoch ")[1].split()[0]), (before, line)
        print("screenshot:", shoot(page, "connection-lost"))
