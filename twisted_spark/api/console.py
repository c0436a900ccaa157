# -*- test-case-name: tests.test_api_console -*-
"""Serve the web console: ``GET /`` is its page, ``GET /console/<file>`` its assets.

The console (``twisted_spark/console/``, package data) is static HTML, CSS and
JavaScript modules that talk to the server only through the public REST API and
event streams, like any other client; this module only hands the files out.
They are read once, when the routes are registered (a few dozen KiB), so
serving them never touches the disk.  Every response carries a strict
Content-Security-Policy: scripts and styles from this origin only (no inline
code), requests to this origin only, no framing, no form submission by the
browser.  ``--no-console`` (``Settings.console``) leaves the routes out.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from twisted_spark.api.context import Reply
from twisted_spark.api.errors import ApiError

#: File suffix -> Content-Type; files with other suffixes are not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    # Forms are submitted by script; a browser-submitted login form would put
    # the password in a URL.
    "form-action 'none'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate every time (with the ETag), so an upgraded server never runs old scripts.
    "Cache-Control": "no-cache",
}

PAGE = "index.html"


def load_assets() -> dict[str, bytes]:
    """The console's files by name, as shipped in the package."""
    folder = resources.files("twisted_spark").joinpath("console")
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and _suffix(entry.name) in CONTENT_TYPES
    }


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


def etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _matches(request, tag: str) -> bool:
    """Whether the request's If-None-Match names ``tag`` (weak or strong)."""
    header = request.getHeader(b"if-none-match")
    if not header:
        return False
    text = header.decode("latin-1")
    candidates = {part.strip().removeprefix("W/") for part in text.split(",")}
    return tag in candidates or "*" in candidates


def response(request, files: dict[str, bytes], name: str) -> Reply:
    """The file ``name`` (or 304 when the browser has it); 404 JSON when unknown."""
    data = files.get(name)
    if data is None:
        raise ApiError(404, "Not Found", "There is no such API route.")
    tag = etag(data)
    headers = dict(HEADERS, ETag=tag)
    content_type = CONTENT_TYPES[_suffix(name)]
    if _matches(request, tag):
        return Reply(None, status=304, content_type=content_type, headers=headers)
    return Reply(data, content_type=content_type, headers=headers)


def register(api) -> None:
    """Declare ``GET /`` and ``GET /console/<name>`` on ``api``."""
    files = load_assets()

    @api.route("/", ["GET"], auth=None)
    async def page(call):
        return response(call.request, files, PAGE)

    @api.route("/console/<name>", ["GET"], auth=None)
    async def asset(call, name):
        return response(call.request, files, name)
