"""The API port's HTTP layer (issue 9, items 1 and 3): route limits applied
while a body arrives, no twisted.web form parsing, a request-head deadline and
an idle timeout that spares requests being answered (event streams).

Most tests drive ``SparkAPI.site()`` byte by byte over a StringTransport with
the API's Clock; the last one trickles a request head over real loopback."""

from __future__ import annotations

import pytest
import pytest_twisted
from api_fakes import Harness, device_id, multipart
from loopback import until
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.testing import StringTransport
from twisted.web.http_headers import Headers

from twisted_spark.api import SparkAPI
from twisted_spark.api.bodies import SMALL_BODY_LIMIT
from twisted_spark.api.site import NO_BODY, BodyPlan
from twisted_spark.config import Settings
from twisted_spark.events.bus import EventBus
from twisted_spark.store import MemoryStore

KIB = 1024
MIB = 1024 * KIB


class Wire:
    """One client connection to ``h.api.site()``: raw bytes in, raw bytes out."""

    def __init__(self, h: Harness):
        self.site = h.api.site()
        self.channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8080))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.9.8.7", 40000))
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    @property
    def request(self):
        """The request being received."""
        return self.channel.requests[-1]

    @property
    def output(self) -> bytes:
        return self.transport.value()

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


def head(method: str, path: str, *headers: str, length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: api.test", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def buffered(request) -> int:
    position = request.content.tell()
    size = request.content.seek(0, 2)
    request.content.seek(position)
    return size


def harness(**settings) -> Harness:
    h = Harness(Settings(**settings))
    return h


# -- limits while the body arrives ---------------------------------------------------------


def test_a_small_route_cuts_a_body_at_its_own_limit_as_it_arrives():
    h = harness()
    wire = Wire(h)
    wire.send(head("POST", "/oauth/token", "Transfer-Encoding: chunked",
                   "Content-Type: application/x-www-form-urlencoded"))
    assert wire.request.body_limit == SMALL_BODY_LIMIT
    for _ in range(100):
        wire.send(chunk(b"x" * KIB))
    assert wire.request.body_too_large and buffered(wire.request) == 0
    wire.send(b"0\r\n\r\n")
    assert wire.output.startswith(b"HTTP/1.1 413 ")
    assert b'"error_description":"The request body is larger than 65536 bytes."' in wire.output


def test_an_announced_length_over_the_route_limit_is_refused_before_any_byte():
    h = harness()
    wire = Wire(h)
    wire.send(head("POST", "/v1/users", "Content-Type: application/json", length=4 * MIB))
    assert wire.request.body_too_large
    wire.send(b"{" * 256 * KIB)
    assert buffered(wire.request) == 0


@pytest_twisted.ensureDeferred
async def test_a_token_route_keeps_no_body_from_a_caller_without_a_token():
    h = harness()
    await h.device(1, owner="alice", name="x")
    body, ctype = multipart({}, {"file": ("fw.bin", b"\0" * MIB)})
    wire = Wire(h)
    wire.send(head("PUT", "/v1/devices/x", f"Content-Type: {ctype}", length=len(body)))
    assert wire.request.body_limit == h.settings.max_firmware_size
    wire.send(body[:-10])
    assert wire.request.body_dropped and buffered(wire.request) == 0
    wire.send(body[-10:])
    assert wire.output.startswith(b"HTTP/1.1 401 ")
    assert b'"error_description":"The access token was not found"' in wire.output


@pytest_twisted.ensureDeferred
async def test_a_token_route_keeps_the_body_of_a_caller_with_a_token():
    h = harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="x")
    body, ctype = multipart({"file_type": "binary"}, {"file": ("fw.bin", b"\0" * MIB)})
    wire = Wire(h)
    wire.send(head("PUT", "/v1/devices/x", f"Content-Type: {ctype}",
                   f"Authorization: Bearer {token}", length=len(body)))
    wire.send(body[:-10])
    assert buffered(wire.request) == len(body) - 10
    wire.send(body[-10:])
    # Parsed and handed to the flash action, which is not configured in this API.
    assert wire.output.startswith(b"HTTP/1.1 400 ")
    assert b"Flashing is not configured" in wire.output


@pytest.mark.parametrize("method, uri, headers, plan", [
    (b"GET", b"/v1/devices", {}, NO_BODY),
    (b"POST", b"/nowhere", {}, NO_BODY),
    (b"POST", b"/oauth/token", {}, BodyPlan(SMALL_BODY_LIMIT, SMALL_BODY_LIMIT)),
    (b"POST", b"/v1/users", {}, BodyPlan(SMALL_BODY_LIMIT, SMALL_BODY_LIMIT)),
    # Publishing, not a call of a function "events" on a device "devices".
    (b"POST", b"/v1/devices/events", {b"authorization": b"Bearer t"},
     BodyPlan(SMALL_BODY_LIMIT, SMALL_BODY_LIMIT)),
    (b"POST", b"/v1/devices/x/brew", {b"authorization": b"Bearer t"}, BodyPlan(MIB, MIB)),
    (b"POST", b"/v1/devices/x/brew?access_token=t", {}, BodyPlan(MIB, MIB)),
    (b"POST", b"/v1/devices/x/brew?%61ccess_token=t", {}, BodyPlan(MIB, MIB)),
    (b"POST", b"/v1/devices/x/brew", {}, BodyPlan(MIB, SMALL_BODY_LIMIT)),  # body may carry it
    (b"POST", b"/v1/devices/x/brew", {b"content-type": b"application/json"}, BodyPlan(MIB, 0)),
    (b"PUT", b"/v1/devices/x", {b"authorization": b"Bearer t"}, BodyPlan(4 * MIB, 4 * MIB)),
    (b"PUT", b"/v1/devices/x", {b"content-type": b"multipart/form-data; boundary=b"},
     BodyPlan(4 * MIB, 0)),
    (b"PUT", b"/v1/devices/x", {b"authorization": b"Basic YTpi",
                                b"content-type": b"multipart/form-data; boundary=b"},
     BodyPlan(4 * MIB, 0)),
    (b"PUT", b"/v1/devices/x%2F", {b"authorization": b"Bearer t"}, NO_BODY),  # no such route
    (b"PUT", b"/v1/%64evices/x", {b"authorization": b"Bearer t"}, BodyPlan(4 * MIB, 4 * MIB)),
])
def test_body_plan_follows_the_route_klein_will_pick(method, uri, headers, plan):
    api = SparkAPI(MemoryStore(), registry=None, bus=EventBus())
    raw = Headers({name: [value] for name, value in headers.items()})
    assert api.body_plan(method, uri, raw) == plan


def test_twisted_web_does_not_parse_post_bodies(monkeypatch):
    """The API parses each body once; twisted.web must not fill request.args from it."""
    import twisted.web.http

    parsed = []
    monkeypatch.setattr(twisted.web.http, "_getMultiPartArgs",
                        lambda *args: parsed.append(args) or {})
    h = harness()
    seen = []

    def register(api):
        @api.route("/v1/spy", ["POST"], auth=None)
        async def spy(call):
            seen.append((dict(call.request.args), call.body.fields))
            return {"ok": True}

    h.api.add_routes(register)
    body, form_data = multipart({"name": "pot"}, {})
    for ctype, data in [(form_data, body),
                        ("application/x-www-form-urlencoded", b"name=pot")]:
        wire = Wire(h)
        wire.send(head("POST", "/v1/spy?q=1", f"Content-Type: {ctype}", length=len(data)) + data)
        assert wire.output.startswith(b"HTTP/1.1 200 ")
    assert parsed == []
    assert seen == [({b"q": [b"1"]}, {"name": "pot"})] * 2


@pytest.mark.parametrize("raw", [
    b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST /v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v1/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + (b"X-Big: " + b"a" * 4000 + b"\r\n") * 5 + b"\r\n",
])
def test_framing_errors_get_the_json_error_body(raw):
    wire = Wire(harness())
    wire.send(raw)
    assert wire.output.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert wire.output.endswith(
        b'{"ok":false,"error":"Bad Request",'
        b'"error_description":"The request is not valid HTTP/1.1."}')
    assert wire.closed


@pytest.mark.parametrize("raw", [
    b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept:*\r* /\nX: y\r\n\r\n",
])
def test_after_a_framing_error_the_head_deadline_is_gone(raw):
    """Found by fuzz/targets/http_api.py: the 400 left the head deadline armed,
    and when the closing connection outlived it a 408 followed, and a second
    close (which a transport may refuse)."""
    h = harness(request_head_timeout=30.0, api_idle_timeout=1000.0)
    wire = Wire(h)
    wire.send(raw)
    answered = wire.output
    assert answered.startswith(b"HTTP/1.1 400 Bad Request\r\n") and wire.closed
    h.clock.advance(31)
    assert wire.output == answered
    assert not wire.channel._head_deadline


@pytest.mark.parametrize("raw", [
    b"GET /v1/devices/%ff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
])
def test_a_url_that_is_not_utf8_gets_the_json_error_body(raw):
    wire = Wire(harness())
    wire.send(raw)
    assert wire.output.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b'"error_description":"The URL or Host is not UTF-8."' in wire.output


@pytest.mark.parametrize("host", [b".0.1:8080", b".1:8080", b"a..b"])
def test_a_host_that_is_no_host_name_gets_the_json_error_body(host):
    """Found by fuzz/e2e.py: werkzeug's BadHost escaped Klein as a 500."""
    wire = Wire(harness())
    wire.send(b"GET /healthz HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert wire.output.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b'"error_description":"The Host header is not a host name."' in wire.output


def split_response(output: bytes) -> tuple[dict[bytes, bytes], bytes]:
    head_bytes, _, body = output.partition(b"\r\n\r\n")
    lines = head_bytes.split(b"\r\n")[1:]
    fields = (line.partition(b":") for line in lines)
    return {name.strip().lower(): value.strip() for name, _, value in fields}, body


@pytest.mark.parametrize("request_head", [
    head("GET", "/healthz"),  # an answer through render()
    head("GET", "/v1/devices"),  # an error through write_error(): no token
])
def test_json_answers_carry_their_length_and_are_not_chunked(request_head):
    """Chunked framing cost two more writes per response, and every client a chunk parser."""
    wire = Wire(harness())
    wire.send(request_head)
    headers, body = split_response(wire.output)
    assert b"transfer-encoding" not in headers
    assert body.startswith(b"{") and int(headers[b"content-length"]) == len(body)


def test_a_head_request_gets_the_length_of_the_body_it_does_not_get():
    wire = Wire(harness())
    wire.send(head("GET", "/healthz"))
    _, get_body = split_response(wire.output)
    wire = Wire(harness())
    wire.send(head("HEAD", "/healthz"))
    headers, body = split_response(wire.output)
    assert body == b"" and int(headers[b"content-length"]) == len(get_body) > 0


# -- request-head deadline and idle timeout --------------------------------------------


def test_a_trickled_request_head_is_cut_at_the_deadline():
    h = harness(request_head_timeout=30.0, api_idle_timeout=1000.0)
    wire = Wire(h)
    wire.send(b"GET /healthz HTTP/1.1\r\n")
    for _ in range(5):  # one header line every 5 s keeps the idle timeout at bay
        h.clock.advance(5)
        wire.send(b"X-Slow: a\r\n")
    h.clock.advance(4.9)
    assert not wire.closed
    h.clock.advance(0.1)
    assert wire.closed
    assert wire.output.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert wire.output.endswith(
        b'{"ok":false,"error":"Request Timeout",'
        b'"error_description":"The request head took too long to arrive."}')


def test_a_byte_by_byte_request_line_is_cut_at_the_deadline():
    h = harness(request_head_timeout=10.0, api_idle_timeout=1000.0)
    wire = Wire(h)
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x":
        wire.send(bytes([byte]))
        h.clock.advance(0.5)
        if wire.closed:
            break
    assert wire.closed and wire.output.startswith(b"HTTP/1.1 408 ")


def test_a_silent_connection_is_closed_by_the_idle_timeout():
    h = harness(request_head_timeout=30.0, api_idle_timeout=100.0)
    wire = Wire(h)
    h.clock.advance(99)
    assert not wire.closed
    h.clock.advance(1)
    assert wire.closed and wire.output == b""


def test_a_request_being_answered_outlives_both_timeouts_and_keep_alive_restarts_them():
    h = harness(request_head_timeout=30.0, api_idle_timeout=100.0)
    answer = defer.Deferred()

    def register(api):
        @api.route("/v1/slow", ["GET"], auth=None)
        async def slow(call):
            return await answer

    h.api.add_routes(register)
    wire = Wire(h)
    wire.send(head("GET", "/v1/slow"))
    h.clock.advance(10_000)
    assert not wire.closed and wire.output == b""
    answer.callback({"ok": True})
    assert wire.output.startswith(b"HTTP/1.1 200 ")
    # Keep-alive: silence is the idle timeout's business, not the head deadline's...
    h.clock.advance(99)
    assert not wire.closed
    # ...until a new request starts: its head has 30 s from its first byte.
    wire.send(b"GET /healthz HTTP/1.1\r\n")
    h.clock.advance(29)
    wire.send(b"X-Slow: a\r\n")
    assert not wire.closed
    h.clock.advance(1)
    assert wire.closed and wire.output.endswith(b"took too long to arrive.\"}")


@pytest_twisted.ensureDeferred
async def test_an_event_stream_is_not_cut_by_the_timeouts():
    h = harness(request_head_timeout=30.0, api_idle_timeout=100.0)
    h.api = SparkAPI(h.store, h.registry, h.settings, clock=h.clock, bus=EventBus())
    token = await h.user("alice", lifetime=None)
    wire = Wire(h)
    wire.send(head("GET", "/v1/events", f"Authorization: Bearer {token}"))
    assert wire.output.startswith(b"HTTP/1.1 200 ")
    assert b"text/event-stream" in wire.output
    h.clock.advance(3600)
    assert not wire.closed
    h.api.streams.close_all()
    assert wire.output.endswith(b"0\r\n\r\n")  # the stream ended, the server ended it


# -- over real loopback --------------------------------------------------------------------


class Trickler(protocol.Protocol):
    """Sends one byte of a never-ending request head every ``interval`` seconds."""

    interval = 0.05

    def connectionMade(self):
        self.received = b""
        self.lost = defer.Deferred()
        self.bytes = iter(b"GET /healthz HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 100_000)
        self.loop = task.LoopingCall(self._one)
        self.loop.start(self.interval)

    def _one(self):
        self.transport.write(bytes([next(self.bytes)]))

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        if self.loop.running:
            self.loop.stop()
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
async def test_trickled_head_over_loopback_is_answered_408_and_closed():
    h = Harness(Settings(request_head_timeout=0.5, api_idle_timeout=600.0))
    h.api.clock = reactor
    site = h.api.site()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    try:
        client = await TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port).connect(
            protocol.Factory.forProtocol(Trickler))
        await until(lambda: client.lost.called, timeout=20, what="the server closing")
        assert client.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_devices_route_still_answers_after_a_dropped_body():
    """A refused body leaves the connection usable for the next request (keep-alive)."""
    h = harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="x")
    wire = Wire(h)
    data = b"name=" + b"n" * 100 * KIB
    wire.send(head("POST", f"/v1/devices/{device_id(1)}/brew",
                   "Content-Type: application/x-www-form-urlencoded", length=len(data)) + data)
    assert wire.output.startswith(b"HTTP/1.1 401 ")
    wire.transport.clear()
    wire.send(head("GET", "/v1/user", f"Authorization: Bearer {token}"))
    assert wire.output.startswith(b"HTTP/1.1 200 ") and b'"username":"alice"' in wire.output
