"""regviz/ui/index_hint.py: the server-root hint goes into the app's HTML page answered to a page request,
and every other request and response passes through untouched; checked against the installed Streamlit."""

from __future__ import annotations

import asyncio
import os
import re

import pytest
import streamlit

from regviz.ui import index_hint
from regviz.ui.index_hint import SCRIPT, IndexHint

STATIC = os.path.join(os.path.dirname(streamlit.__file__), "static")
PAGE = b"<html><head><title>t</title></head><body></body></html>"
HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"57"), (b"etag", b'"x"')]


def request(accept: bytes = b"text/html,application/xhtml+xml", method: str = "GET", kind: str = "http"):
    """A page request as a browser sends it (or, with other arguments, a fetch, a POST, a WebSocket)."""
    headers = [(b"accept", accept), (b"accept-encoding", b"gzip"), (b"if-none-match", b'"x"')]
    return {"type": kind, "method": method, "path": "/remedies", "headers": headers, "extensions": {}}


def serve(scope, status: int = 200, headers=HTML, chunks=(PAGE,), enabled: bool = True):
    """Run the middleware over an app answering (status, headers, chunks); what the inner app saw and sent."""
    seen, sent = [], []

    async def inner(scope, receive, send):
        seen.append(scope)
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    async def send(message):
        sent.append(message)

    asyncio.run(IndexHint(inner, enabled=enabled)(scope, None, send))
    return seen[0], sent


def body(sent) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_page_request_gets_the_hint_before_head_end_with_its_length():
    """The HTML page comes back whole with the script just before </head>, its length counted again."""
    _, sent = serve(request(), chunks=(PAGE[:20], PAGE[20:]))
    html = body(sent)
    assert html == PAGE.replace(b"</head>", SCRIPT + b"</head>")
    headers = dict(sent[0]["headers"])
    assert headers[b"content-length"] == str(len(html)).encode()
    assert b"etag" not in headers  # the body is no longer the file the tag names


def test_a_page_request_reaches_the_app_uncompressed_and_unconditional():
    """No gzip and no 304 for a page request: the middleware must see the HTML itself."""
    seen, _ = serve(request())
    names = {k for k, _ in seen["headers"]}
    assert b"accept-encoding" not in names and b"if-none-match" not in names
    assert b"accept" in names


@pytest.mark.parametrize(
    ("scope", "status", "headers"),
    [
        (request(accept=b"*/*"), 200, HTML),  # a fetch, e.g. the frontend's own requests
        (request(method="POST"), 200, HTML),
        (request(), 200, [(b"content-type", b"application/json")]),
        (request(), 200, [*HTML, (b"content-encoding", b"gzip")]),
        (request(), 304, HTML),
        (request(), 404, HTML),
    ],
)
def test_anything_else_passes_through_unchanged(scope, status, headers):
    """Not a page request, or not a whole HTML 200: the response is the app's, byte for byte."""
    seen, sent = serve(scope, status=status, headers=headers)
    assert body(sent) == PAGE and sent[0]["headers"] == list(headers)


def test_off_the_middleware_touches_nothing():
    """On a Streamlit version not checked, the request and the page are exactly the app's."""
    scope = request()
    seen, sent = serve(scope, enabled=False)
    assert seen is scope and body(sent) == PAGE


def test_a_page_without_head_end_is_served_as_it_is():
    """No </head> to put the script before: the page is left alone rather than guessed at."""
    _, sent = serve(request(), chunks=(b"<html>no head</html>",))
    assert body(sent) == b"<html>no head</html>"


def test_checked_versions():
    """The hint is on for the Streamlit versions it was checked against, and off for any other."""
    assert index_hint.checked_version("1.67.0") and index_hint.checked_version("1.67.3")
    assert not index_hint.checked_version("1.68.0") and not index_hint.checked_version("2.0.0")


@pytest.mark.skipif(not index_hint.checked_version(), reason="the hint is off on this Streamlit version")
def test_the_installed_streamlit_still_has_what_the_hint_relies_on():
    """Streamlit's own page has one </head> after its module script, and its frontend reads
    window.__streamlit.BACKEND_BASE_URL: if either changes, this version must be checked again."""
    with open(os.path.join(STATIC, "index.html"), "rb") as f:
        page = f.read()
    assert page.count(b"</head>") == 1 and page.index(b'type="module"') < page.index(b"</head>")
    bundle = re.search(rb'type="module"[^>]* src="\./(static/js/index\.[^"]+\.js)"', page).group(1)
    with open(os.path.join(STATIC, bundle.decode())) as f:
        code = f.read()
    assert "window.__streamlit" in code and "BACKEND_BASE_URL" in code
