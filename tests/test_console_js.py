"""The console's JavaScript logic, run in headless Chromium without a server.

The page and the modules come from the package directory through
Playwright's request routing, so these tests need no HTTP server; they
check the parts with logic of their own: the event-stream parser, the
bounded event log, the reconnect delays, time and credential formatting.
"""

from __future__ import annotations

import base64
import json

import pytest
from browser import launch, playwright_or_unavailable

from twisted_spark.api.console import CONTENT_TYPES, load_assets

ORIGIN = "http://console.test"


@pytest.fixture(scope="module")
def page():
    sync_playwright, _expect = playwright_or_unavailable()
    files = load_assets()

    def serve(route):
        name = route.request.url.removeprefix(f"{ORIGIN}/console/")
        if name not in files:
            route.fulfill(status=404, body="")
            return
        suffix = name[name.rfind("."):]
        route.fulfill(status=200, body=files[name], content_type=CONTENT_TYPES[suffix])

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.route(f"{ORIGIN}/console/*", serve)
        page.route(f"{ORIGIN}/", lambda route: route.fulfill(
            status=200, body="<!doctype html><title>modules</title>", content_type="text/html"))
        page.goto(f"{ORIGIN}/")
        yield page
        browser.close()


def run(page, module, body, arg=None):
    """Evaluate ``body``, a function of the imported ``module`` and ``arg``, in the page."""
    return page.evaluate(
        f"async (arg) => ({body})(await import('/console/{module}'), arg)", arg)


SSE = (
    ':ok\n\n'
    'event: temperature\ndata: {"data":"21","ttl":"60","published_at":"2025-01-02T03:04:05.000Z",'
    '"coreid":"53ff73065067544816300187"}\n\n'
    '\n'  # a keep-alive
    'event: multi\r\ndata: first\r\ndata: second\r\n\r\n'
    'data: unnamed\n\n'
)


@pytest.mark.parametrize("chunk", [len(SSE), 1, 7])
def test_sse_parser_gives_the_same_events_however_the_stream_is_cut(page, chunk):
    events = run(page, "sse.js", """(m, [text, chunk]) => {
        const seen = [];
        const parser = new m.SseParser((name, data) => seen.push([name, data]));
        for (let i = 0; i < text.length; i += chunk) parser.feed(text.slice(i, i + chunk));
        return seen;
    }""", [SSE, chunk])
    assert events == [
        ["temperature", '{"data":"21","ttl":"60","published_at":"2025-01-02T03:04:05.000Z",'
                        '"coreid":"53ff73065067544816300187"}'],
        ["multi", "first\nsecond"],
        ["message", "unnamed"],
    ]


def test_spark_event_reads_the_json_frame_and_keeps_anything_else(page):
    frame = {"data": None, "ttl": "60", "published_at": "2025-01-02T03:04:05.000Z",
             "coreid": "api"}
    events = run(page, "sse.js", """(m, frame) => [
        m.sparkEvent("t", frame), m.sparkEvent("raw", "not json").data,
    ]""", json.dumps(frame))
    assert events[0] == {"name": "t", "data": None, "ttl": "60",
                         "published_at": "2025-01-02T03:04:05.000Z", "coreid": "api"}
    assert events[1] == "not json"


def test_reconnect_delays_double_up_to_thirty_seconds(page):
    delays = run(page, "sse.js", "(m) => [0, 1, 2, 3, 4, 5, 6, 20].map(m.backoff)")
    assert delays == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]


def test_event_log_is_bounded_newest_first_filtered_and_pausable(page):
    result = run(page, "eventlog.js", """(m) => {
        const log = new m.EventLog(3);
        for (const name of ["a/1", "b/2", "a/3", "a/4"]) log.add({ name });
        const kept = log.entries.map((e) => e.name);
        log.prefix = "a/";
        const filtered = log.visible().map((e) => e.name);
        log.setPaused(true);
        log.add({ name: "a/5" });
        log.add({ name: "b/6" });
        const missed = log.missed;
        log.setPaused(false);
        return { kept, filtered, missed, after: log.missed, newest: log.entries[0].name,
                 size: log.entries.length };
    }""")
    assert result == {"kept": ["a/4", "a/3", "b/2"], "filtered": ["a/4", "a/3"], "missed": 2,
                      "after": 0, "newest": "b/6", "size": 3}


def test_last_heard_is_said_in_words(page):
    said = run(page, "dom.js", """(m) => {
        const now = Date.parse("2025-01-02T12:00:00Z");
        const before = (s) => new Date(now - s * 1000).toISOString();
        return [null, before(2), before(12), before(300), before(3 * 3600),
                before(3 * 86400)].map((iso) => m.ago(iso, now));
    }""")
    assert said == ["never", "just now", "12 s ago", "5 min ago", "3 h ago", "3 days ago"]


def test_basic_credentials_are_utf8(page):
    header = run(page, "api.js", '(m) => m.basic("zoë", "pässword")')
    assert header == "Basic " + base64.b64encode("zoë:pässword".encode()).decode()


def test_api_errors_carry_the_error_description(page):
    messages = run(page, "api.js", """(m) => [
        new m.ApiError(403, {error: "Forbidden", error_description: "Not yours."}).message,
        new m.ApiError(400, {ok: false, errors: ["Compile error"]}).message,
        new m.ApiError(502, null).message,
        new m.ApiError(0, null).message,
    ]""")
    assert messages == ["Not yours.", "Compile error", "The server answered 502.",
                        "The server could not be reached."]
