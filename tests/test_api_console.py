"""The web console's files: served at / and /console/, with a strict CSP (issue 12).

The console itself runs in a browser (tests/test_console_browser.py); these
tests check what the server sends: the page, its assets, the headers that
keep it safe, and that ``--no-console`` turns it off.
"""

from __future__ import annotations

import re

import pytest
import pytest_twisted
from api_fakes import Harness, assert_error

from twisted_spark.api import console


@pytest_twisted.ensureDeferred
async def test_root_serves_the_console_page_with_a_strict_csp():
    h = Harness()
    r = await h.call("GET", "/")
    assert r.status == 200
    assert r.header(b"content-type") == b"text/html; charset=utf-8"
    csp = r.header(b"content-security-policy").decode()
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.header(b"x-content-type-options") == b"nosniff"
    assert r.header(b"referrer-policy") == b"no-referrer"
    page = r.body.decode()
    assert '<script type="module" src="console/app.js"></script>' in page
    assert 'href="console/style.css"' in page


@pytest_twisted.ensureDeferred
async def test_page_has_no_inline_script_or_style():
    """The CSP would block them; catching them here gives a clearer failure."""
    page = (await Harness().call("GET", "/")).body.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert "<style" not in page
    assert " style=" not in page
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers


@pytest.mark.parametrize(
    "name,content_type",
    [
        ("app.js", b"text/javascript; charset=utf-8"),
        ("api.js", b"text/javascript; charset=utf-8"),
        ("sse.js", b"text/javascript; charset=utf-8"),
        ("style.css", b"text/css; charset=utf-8"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_assets_are_served_with_their_type(name, content_type):
    h = Harness()
    r = await h.call("GET", f"/console/{name}")
    assert r.status == 200
    assert r.header(b"content-type") == content_type
    assert r.header(b"content-security-policy") is not None
    assert r.body == console.load_assets()[name]


@pytest_twisted.ensureDeferred
async def test_every_module_the_app_imports_is_served():
    h = Harness()
    sources = console.load_assets()
    imported = set()
    for name, data in sources.items():
        if name.endswith(".js"):
            imported |= set(re.findall(rb'from "\./([\w.-]+\.js)"', data))
    assert imported, "app.js imports its modules"
    for name in sorted(imported):
        r = await h.call("GET", f"/console/{name.decode()}")
        assert r.status == 200, name


@pytest_twisted.ensureDeferred
async def test_unchanged_assets_answer_304_to_their_etag():
    h = Harness()
    first = await h.call("GET", "/console/app.js")
    etag = first.header(b"etag")
    assert etag and first.header(b"cache-control") == b"no-cache"
    again = await h.call("GET", "/console/app.js", headers={"If-None-Match": etag.decode()})
    assert again.status == 304 and again.body == b""
    other = await h.call("GET", "/console/app.js", headers={"If-None-Match": '"stale"'})
    assert other.status == 200 and other.body == first.body


@pytest.mark.parametrize(
    "path",
    ["/console/nothing.js", "/console/../setup.cfg", "/console/%2e%2e%2fapi%2fapp.py",
     "/console/", "/console/__init__.py", "/index.html"],
)
@pytest_twisted.ensureDeferred
async def test_anything_else_is_the_usual_404_json(path):
    assert_error(await Harness().call("GET", path), 404)


@pytest_twisted.ensureDeferred
async def test_no_console_option_turns_it_off():
    h = Harness(console=False)
    assert_error(await h.call("GET", "/"), 404)
    assert_error(await h.call("GET", "/console/app.js"), 404)
    assert (await h.call("GET", "/healthz")).status == 200


@pytest_twisted.ensureDeferred
async def test_head_gives_the_headers_without_the_body():
    r = await Harness().call("HEAD", "/")
    assert r.status == 200 and r.body == b""
    assert r.header(b"content-security-policy") is not None
