"""The app's HTML page tells Streamlit's frontend where the server's root is, so that a page opened
directly (/remedies, /sweep, /data) does not first probe /remedies/_stcore/health and host-config and
log two 404s in the browser's console (streamlit/streamlit#7074).

Fenced here because it relies on a frontend setting that is not public API: the frontend reads
`window.__streamlit.BACKEND_BASE_URL` (checked in Streamlit 1.67.0's index.*.js, `getPossibleBaseUris`)
and, without it, probes the page's own path before the server's root. The server side is public:
an ASGI middleware given to `st.App`. Fail-safe: on a Streamlit version not checked here, or on any
response that is not the page's HTML, the middleware passes everything through unchanged, and only
the two 404s come back.
"""

from __future__ import annotations

import importlib.metadata
import logging

CHECKED = ("1.67",)  # streamlit major.minor versions whose frontend this was checked against
# the root is where the page's own ./static/... assets resolve: new URL(".", document.baseURI), under
# server.baseUrlPath and behind a proxy's prefix alike; a value set by a host first is kept
SCRIPT = (
    b"<script>window.__streamlit=Object.assign("
    b'{BACKEND_BASE_URL:new URL(".",document.baseURI).href},window.__streamlit)</script>'
)
# dropped from a page request so the HTML comes back whole and uncompressed, never a 304 or a file send
_DROPPED_HEADERS = (b"accept-encoding", b"if-none-match", b"if-modified-since", b"range", b"if-range")
_STALE_RESPONSE_HEADERS = (b"content-length", b"etag", b"last-modified")

log = logging.getLogger(__name__)


def checked_version(version: str | None = None) -> bool:
    """True when the installed (or given) Streamlit is one whose frontend this was checked against."""
    version = version or importlib.metadata.version("streamlit")
    return ".".join(version.split(".")[:2]) in CHECKED


def with_hint(html: bytes) -> bytes | None:
    """The page with the hint before its </head>; None when there is no </head> to put it before."""
    at = html.find(b"</head>")
    return None if at < 0 else html[:at] + SCRIPT + html[at:]


def _is_page_request(scope) -> bool:
    """A browser's GET of a document (Accept: text/html), not a fetch of an asset or an API."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    accept = dict(scope["headers"]).get(b"accept", b"")
    return b"text/html" in accept


def _is_whole_html(start) -> bool:
    """A 200 with an uncompressed HTML body: the only response the hint is put into."""
    headers = dict(start.get("headers", []))
    html = headers.get(b"content-type", b"").startswith(b"text/html")
    return start["status"] == 200 and html and b"content-encoding" not in headers


class IndexHint:
    """ASGI middleware: the server root hint in every HTML page the server answers a page request with."""

    def __init__(self, app, enabled: bool | None = None):
        self.app = app
        self.enabled = checked_version() if enabled is None else enabled
        if not self.enabled:
            log.warning("index hint off: Streamlit %s is not one of %s", _installed(), CHECKED)

    async def __call__(self, scope, receive, send):
        if not self.enabled or not _is_page_request(scope):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in _DROPPED_HEADERS]
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        await self.app({**scope, "headers": headers, "extensions": extensions}, receive, _Rewriter(send))


class _Rewriter:
    """The send of one page request: holds back an HTML 200 until its body is whole, then adds the hint."""

    def __init__(self, send):
        self.send, self.start, self.body = send, None, []

    async def __call__(self, message):
        if message["type"] == "http.response.start" and _is_whole_html(message):
            self.start = message
        elif self.start is None or message["type"] != "http.response.body":
            await self.send(message)
        else:
            self.body.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._flush(b"".join(self.body))

    async def _flush(self, html: bytes) -> None:
        html = with_hint(html) or html
        headers = [(k, v) for k, v in self.start["headers"] if k not in _STALE_RESPONSE_HEADERS]
        headers.append((b"content-length", str(len(html)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": html})


def _installed() -> str:
    return importlib.metadata.version("streamlit")
