"""Every page opened by its own link (/, /remedies, /sweep, /data, with a query string or not, under
server.baseUrlPath or not): no request fails and the console shows no error, and the page works: its
WebSocket opens at the server's root, the chart or progress appears, a widget reruns it, the navigation
moves between pages. Without regviz/ui/index_hint.py, Streamlit's frontend first probes
/remedies/_stcore/health and /remedies/_stcore/host-config (404 twice, streamlit/streamlit#7074)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from regviz.ui import index_hint

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
if not Path(CHROMIUM).exists():
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from live import free_port, healthy  # noqa: E402  (the live benchmark starts servers the same way)

ARTIFACTS = ROOT / "test-artifacts"
IMDB = Path(os.environ.get("REGVIZ_IMDB_PATH") or ROOT.parent / "shared" / "data" / "imdb_acl.npz")
DATASET = {} if IMDB.is_file() else {"dataset": "synthetic"}  # offline reviews, else the made-up set
SERVER_START_S = 90
PAGE_TIMEOUT_MS = 120_000  # a page's first script run on a busy 2-core machine, with margin
TITLES = {
    "": "regviz · see regularization work",
    "remedies": "Four ways to fight overfitting",
    "sweep": "Sweep: which value is best?",
    "data": "Your own data",
}
# with the hint off (a Streamlit version it was not checked against), these two are expected, and only
PROBE = re.compile(r"/(remedies|sweep|data)/_stcore/(health|host-config)$")


def link(page: str, **params: str) -> str:
    """A page's path with these settings as its query string."""
    query = {**DATASET, **params}
    return f"/{page}" + (f"?{urlencode(query)}" if query else "")


@contextlib.contextmanager
def streamlit_run(base: str, log: Path):
    """`streamlit run app.py` (the README's command) on a free port, under server.baseUrlPath `base`."""
    env = {**os.environ, "REGVIZ_PREFETCH": "0", "REGVIZ_IMDB_PATH": str(IMDB) if IMDB.is_file() else ""}
    env["REGVIZ_STORE"] = str(log.with_suffix(".sqlite"))
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
        "--server.port", str(port), "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--server.baseUrlPath", base,
    ]  # fmt: skip
    with open(log, "w") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}" + (f"/{base}" if base else "")
    deadline = time.monotonic() + SERVER_START_S
    try:
        while not healthy(f"{url}/_stcore/health"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)  # poll interval, bounded by the deadline
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module", params=["", "course"], ids=["root", "baseUrlPath"])
def site(request, tmp_path_factory):
    """The app's root URL, served at the server's root or under server.baseUrlPath=course."""
    log = tmp_path_factory.mktemp("console") / "server.log"
    with streamlit_run(request.param, log) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, driven by playwright (which cannot download its own browser here)."""
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A fresh tab and what went wrong in it: console errors, requests answered >= 400 or failed."""

    def __init__(self, browser, viewport: dict):
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.errors, self.failed, self.sockets = [], [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("response", lambda r: self.failed.append((r.status, r.url)) if r.status >= 400 else None)
        self.page.on("requestfailed", lambda r: self.failed.append((r.failure, r.url)))
        self.page.on("websocket", lambda w: self.sockets.append(w.url))

    def open(self, url: str, title: str):
        """Go to url and wait until the page is connected, has run its script and shows its title."""
        self.page.goto(url)
        self.page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for()
        self.page.get_by_role("heading", name=title).wait_for()
        self.page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()
        return self.page

    def assert_clean(self, what: str) -> None:
        """Nothing failed and the console holds no error (with the hint off: the two probes only)."""
        failed = self.failed
        if not index_hint.checked_version():
            failed = [(s, u) for s, u in failed if not (s == 404 and PROBE.search(urlsplit(u).path))]
            self.errors = [e for e in self.errors if "status of 404" not in e]
        assert not failed and not self.errors, (what, failed, self.errors)


@pytest.mark.parametrize(
    "path", [link(""), link("remedies"), link("sweep"), link("data"), link("remedies", seed="3"),
             link("", l2="0.001", width="32")],
)  # fmt: skip
def test_a_page_opened_by_its_link_has_no_failed_request_and_no_console_error(site, browser, path):
    """The page loads clean, talks to the server at its root, and knows that root from the hint."""
    tab = Watched(browser, {"width": 1280, "height": 720})
    try:
        tab.open(site + path, TITLES[urlsplit(path).path.strip("/")])
        tab.assert_clean(path)
        assert tab.sockets == [site.replace("http", "ws", 1) + "/_stcore/stream"]
        assert urlsplit(tab.page.url).path == urlsplit(site + path).path  # the page's own link, kept
        if index_hint.checked_version():
            assert tab.page.evaluate("window.__streamlit.BACKEND_BASE_URL") == site + "/"
    finally:
        tab.context.close()


def test_remedies_opened_by_its_link_draws_navigates_and_reruns_on_a_widget(site, browser):
    """/remedies shows its progress or charts; the sidebar leads to the main page, whose L2 slider puts
    its new value into the link (a rerun over the WebSocket); then to the sweep; nothing fails."""
    tab = Watched(browser, {"width": 1280, "height": 720})
    try:
        page = tab.open(site + link("remedies"), TITLES["remedies"])
        page.locator("[data-testid='stProgress'], [data-testid='stPlotlyChart']").first.wait_for()
        screenshot(page, "1280", site)
        page.get_by_test_id("stSidebarNavLink").filter(has_text="Explore").click()
        page.get_by_role("heading", name=TITLES[""]).wait_for()
        assert urlsplit(page.url).path == urlsplit(site + "/").path
        thumb = page.get_by_test_id("stSlider").filter(has_text="L2 penalty").get_by_role("slider")
        thumb.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_url(re.compile(r"[?&]l2=1e-05"))
        page.get_by_test_id("stSidebarNavLink").filter(has_text="Sweep").click()
        page.get_by_role("heading", name=TITLES["sweep"]).wait_for()
        assert urlsplit(page.url).path == urlsplit(site + "/sweep").path
        tab.assert_clean("remedies, explore, sweep")
    finally:
        tab.context.close()


def test_remedies_on_a_phone_loads_clean(site, browser):
    """/remedies 390 px wide: the same clean load, the sidebar folded away."""
    tab = Watched(browser, {"width": 390, "height": 844})
    try:
        page = tab.open(site + link("remedies"), TITLES["remedies"])
        page.locator("[data-testid='stProgress'], [data-testid='stPlotlyChart']").first.wait_for()
        screenshot(page, "390", site)
        tab.assert_clean("remedies 390 px")
    finally:
        tab.context.close()


def screenshot(page, width: str, site: str) -> None:
    """The viewport of /remedies, kept in test-artifacts/ to be looked at."""
    ARTIFACTS.mkdir(exist_ok=True)
    where = "base" if urlsplit(site).path else "root"
    page.screenshot(path=ARTIFACTS / f"console-remedies-{where}-{width}.png")
