"""SSE streams at the request level: wire format, keep-alive, backpressure, cleanup."""

from __future__ import annotations

import json

import pytest
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from twisted_spark.api import sse, sse_frames
from twisted_spark.api.sse import EventStream, prefix_from_path
from twisted_spark.api.sse_frames import encode_event, format_event
from twisted_spark.api.streams import StreamRegistry
from twisted_spark.events.bus import EventBus
from twisted_spark.events.visibility import firehose_rule
from twisted_spark.models import Event

CORE = "53ff73065067544816300187"
T0 = 1398367917.0  # 2014-04-24T19:31:57Z


class FakeTransport:
    def __init__(self):
        self.aborted = False

    def abortConnection(self):
        self.aborted = True


class FakeChannel:
    def __init__(self):
        self.transport = FakeTransport()


class StreamRequest(DummyRequest):
    """A DummyRequest that accepts a push producer and records write times."""

    def __init__(self, clock=None):
        super().__init__([])
        self.clock = clock
        self.producer = None
        self.streaming = None
        self.unregistered = 0
        self.times = []
        self.channel = FakeChannel()

    def registerProducer(self, producer, streaming):
        assert self.producer is None
        self.producer = producer
        self.streaming = streaming

    def unregisterProducer(self):
        self.producer = None
        self.unregistered += 1

    def write(self, data):
        assert not self.finished, "write after finish"
        super().write(data)
        if self.clock is not None:
            self.times.append(self.clock.seconds())

    def lose(self):
        """The client goes away (what Request.connectionLost does)."""
        self.processingFailed(Failure(ConnectionLost("client gone")))

    @property
    def body(self):
        return b"".join(self.written)


def ev(name="temp", data="21", public=True, owner="alice", coreid=CORE, ttl=60, at=T0):
    return Event(name, data, ttl, at, coreid, public, owner)


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(T0)
    return clock


@pytest.fixture
def bus():
    return EventBus()


def open_stream(bus, clock, prefix="", accepts=None, **kwargs):
    request = StreamRequest(clock)
    stream = EventStream(request, clock, **kwargs).start(bus, prefix, accepts)
    return request, stream


# -- wire format ------------------------------------------------------------------


def test_frame_exact_bytes():
    assert format_event(ev()) == (
        b"event: temp\n"
        b'data: {"data":"21","ttl":"60","published_at":"2014-04-24T19:31:57.000Z",'
        b'"coreid":"53ff73065067544816300187"}\n\n'
    )


def test_frame_null_data_ttl_string_milliseconds_and_api_coreid():
    frame = format_event(ev("a/b", None, ttl=3600, coreid="api", at=T0 + 0.25))
    assert frame == (
        b"event: a/b\n"
        b'data: {"data":null,"ttl":"3600","published_at":"2014-04-24T19:31:57.250Z",'
        b'"coreid":"api"}\n\n'
    )
    assert b'"data":null' in format_event(ev(data=""))


def test_frame_cannot_be_split_by_names_or_data():
    frame = format_event(ev("evil\nevent: x\r", 'line1\nline2 "quoted" é'))
    lines = frame.split(b"\n")
    assert lines[0] == b"event: evil event: x "
    assert lines[1].startswith(b"data: ") and lines[2:] == [b"", b""]
    payload = json.loads(lines[1][len(b"data: "):].decode("utf-8"))
    assert payload["data"] == 'line1\nline2 "quoted" é'
    assert "é".encode() in frame  # UTF-8, not \\u escapes


def test_frame_is_formatted_once_and_shared(bus, clock, monkeypatch):
    calls = []
    real = sse_frames.format_event
    monkeypatch.setattr(sse_frames, "format_event", lambda e: calls.append(e) or real(e))
    r1, _ = open_stream(bus, clock)
    r2, _ = open_stream(bus, clock)
    r3, _ = open_stream(bus, clock)
    event = ev()
    bus.publish(event)
    assert len(calls) == 1
    assert r1.written[-1] is r2.written[-1] is r3.written[-1]
    bus.publish(ev(data="22"))
    assert len(calls) == 2
    assert encode_event(event) == real(event)


@pytest.mark.parametrize(
    ("path", "segments", "prefix"),
    [
        (b"/v1/events", 2, ""),
        (b"/v1/events/", 2, ""),
        (b"/v1/events/temp", 2, "temp"),
        (b"/v1/events/spark/status", 2, "spark/status"),
        (b"/v1/events/spark%2Fstatus", 2, "spark/status"),
        (b"/v1/events/spark%2Fstatus?access_token=x", 2, "spark/status"),
        (b"/v1/events/a%20b/c%25d", 2, "a b/c%d"),
        (b"/v1/events/%C3%A9t%C3%A9", 2, "été"),
        (b"/v1/devices/events/x/y/", 3, "x/y/"),
        (f"/v1/devices/{CORE}/events/spark%2Fstatus".encode(), 4, "spark/status"),
        (f"/v1/devices/{CORE}/events".encode(), 4, ""),
    ],
)
def test_prefix_from_path(path, segments, prefix):
    assert prefix_from_path(path, segments) == prefix


# -- opening ----------------------------------------------------------------------


def test_headers_preamble_and_subscription(bus, clock):
    request = StreamRequest(clock)
    stream = EventStream(request, clock)
    assert verifyObject(IPushProducer, stream)
    assert request.written == [] and len(bus) == 0  # nothing before start()
    stream.start(bus, "temp", None)
    assert request.responseCode == 200
    headers = dict(request.responseHeaders.getAllRawHeaders())
    assert headers == {
        b"Content-Type": [b"text/event-stream"],
        b"Cache-Control": [b"no-cache"],
        b"Connection": [b"keep-alive"],
        b"X-Accel-Buffering": [b"no"],
    }
    assert request.written == [b":ok\n\n"]
    assert request.producer is stream and request.streaming is True
    assert len(bus) == 1 and bus.prefixes() == ["temp"]


def test_events_are_written_as_frames_in_order_filtered(bus, clock):
    request, _ = open_stream(bus, clock, "te", firehose_rule("alice"))
    bus.publish(ev("temp", "1"))
    bus.publish(ev("other", "2"))
    bus.publish(ev("temp", "3", public=False, owner="bob"))
    bus.publish(ev("tea", None))
    assert request.written == [b":ok\n\n", format_event(ev("temp", "1")),
                               format_event(ev("tea", None))]


def test_start_on_a_request_whose_client_already_left(bus, clock):
    request = StreamRequest(clock)
    request._disconnected = True
    stream = EventStream(request, clock).start(bus, "", None)
    assert stream.closed and len(bus) == 0 and request.written == []
    assert clock.getDelayedCalls() == []


# -- keep-alive ---------------------------------------------------------------------


def test_keepalive_at_nine_seconds_and_not_before(bus, clock):
    request, _ = open_stream(bus, clock)
    clock.advance(8.999)
    assert request.written == [b":ok\n\n"]
    clock.advance(0.001)
    assert request.written == [b":ok\n\n", b"\n"]
    clock.advance(8.9)
    assert request.written[-1] == b"\n" and len(request.written) == 2
    clock.advance(0.1)
    assert request.written == [b":ok\n\n", b"\n", b"\n"]
    assert len(clock.getDelayedCalls()) == 1  # one timer per stream


def test_no_keepalive_while_events_flow(bus, clock):
    request, _ = open_stream(bus, clock)
    for _ in range(20):
        clock.advance(5)
        bus.publish(ev())
    assert b"\n" not in request.written
    assert len(request.written) == 21
    clock.advance(8.9)
    assert request.written[-1] != b"\n"
    clock.advance(0.1)
    assert request.written[-1] == b"\n"


def advance_exactly(clock, seconds):
    """Advance, stopping at each timer's due time (a reactor fires timers on time)."""
    end = clock.seconds() + seconds
    while clock.seconds() < end:
        due = [c.getTime() for c in clock.getDelayedCalls()]
        clock.advance(min([end, *due]) - clock.seconds())


def test_no_gap_exceeds_nine_seconds(bus, clock):
    request, _ = open_stream(bus, clock)
    # Irregular traffic with long silences.
    pattern = [0.3, 4.0, 8.7, 8.95, 9.0, 0.05, 13.0, 27.5, 2.2, 17.9, 9.05, 8.99]
    for pause in pattern:
        advance_exactly(clock, pause)
        bus.publish(ev())
    advance_exactly(clock, 30)
    gaps = [b - a for a, b in zip(request.times, request.times[1:], strict=False)]
    assert max(gaps) <= 9.0 + 1e-6
    assert max(gaps) >= 9.0 - 1e-6  # keep-alives came at 9 s, not earlier
    assert request.written.count(b"\n") == 10  # 1+1+3+1+1 in the pattern, 3 after
    assert len(clock.getDelayedCalls()) == 1


# -- backpressure ---------------------------------------------------------------------


def test_paused_stream_queues_then_flushes_in_one_write(bus, clock):
    request, stream = open_stream(bus, clock, queue_size=10)
    stream.pauseProducing()
    for i in range(5):
        bus.publish(ev(data=str(i)))
    assert request.written == [b":ok\n\n"] and stream.queued == 5
    clock.advance(30)  # no keep-alive into a full transport
    assert request.written == [b":ok\n\n"]
    stream.resumeProducing()
    assert request.written[1:] == [b"".join(format_event(ev(data=str(i))) for i in range(5))]
    assert stream.queued == 0 and stream.events_sent == 5 and not stream.closed


def test_queue_bound_cuts_the_client_off(bus, clock):
    registry = StreamRegistry(bus, clock, queue_size=100)
    request = StreamRequest(clock)
    other = StreamRequest(clock)
    stream = registry.open(request, "", None, token="t1")
    registry.open(other, "", None, token="t2")
    stream.pauseProducing()
    peak = 0
    for i in range(10_000):
        bus.publish(ev(data=str(i)))
        peak = max(peak, stream.queued)
    assert peak == 100  # memory bounded by the queue, not by the publisher
    assert stream.closed and stream.cut_off and stream.close_reason == "client too slow"
    assert stream.queued == 0
    assert request.channel.transport.aborted  # not finished: the client is not reading
    assert not request.finished and request.producer is None
    assert request.written == [b":ok\n\n"]
    # The other stream got everything and is unaffected.
    assert len(other.written) == 10_001
    assert len(bus) == 1 and len(registry) == 1
    assert (registry.cut_off, len(registry), registry.opened) == (1, 1, 2)
    # Then the connection really goes away: nothing breaks, nothing written.
    request.lose()
    assert request.written == [b":ok\n\n"]


def test_queue_size_zero_cuts_off_at_the_first_event_while_paused(bus, clock):
    request, stream = open_stream(bus, clock, queue_size=0)
    stream.pauseProducing()
    bus.publish(ev())
    assert stream.cut_off and len(bus) == 0


# -- ending -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["processingFailed", "stopProducing", "both"])
def test_disconnect_removes_subscription_and_timer(bus, clock, how):
    registry = StreamRegistry(bus, clock)
    request = StreamRequest(clock)
    stream = registry.open(request, "", None, token="t")
    assert len(bus) == 1 and len(clock.getDelayedCalls()) == 1
    if how in ("stopProducing", "both"):
        stream.stopProducing()
    if how in ("processingFailed", "both"):
        request.lose()
    assert stream.closed and stream.close_reason == "client disconnected"
    assert len(bus) == 0 and clock.getDelayedCalls() == [] and len(registry) == 0
    assert registry.streams("t") == []
    bus.publish(ev())
    clock.advance(60)
    assert request.written == [b":ok\n\n"] and not request.finished
    stream.close("late")  # never finish() after a disconnect
    assert not request.finished


def test_close_streams_for_token(bus, clock):
    registry = StreamRegistry(bus, clock)
    a1, a2, b = StreamRequest(clock), StreamRequest(clock), StreamRequest(clock)
    s1 = registry.open(a1, "", None, token="ta")
    s2 = registry.open(a2, "x", None, token="ta")
    s3 = registry.open(b, "", None, token="tb")
    assert registry.close_streams_for_token("ta") == 2
    assert registry.close_streams_for_token("ta") == 0
    assert registry.close_streams_for_token("unknown") == 0
    assert s1.closed and s2.closed and not s3.closed
    assert s1.close_reason == "access token deleted"
    assert a1.finished == 1 and a2.finished == 1 and b.finished == 0
    assert a1.producer is None and a1.unregistered == 1
    assert not a1.channel.transport.aborted
    assert len(bus) == 1 and registry.streams() == [s3] and registry.streams("ta") == []
    bus.publish(ev())
    assert a1.written == [b":ok\n\n"] and len(b.written) == 2
    assert len(clock.getDelayedCalls()) == 1


def test_closing_a_paused_stream_aborts_instead_of_finishing(bus, clock):
    request, stream = open_stream(bus, clock)
    stream.pauseProducing()
    stream.close("access token deleted")
    assert request.channel.transport.aborted and not request.finished


def test_close_all(bus, clock):
    registry = StreamRegistry(bus, clock)
    requests = [StreamRequest(clock) for _ in range(5)]
    for i, request in enumerate(requests):
        registry.open(request, "", None, token=f"t{i % 2}")
    assert registry.close_all() == 5
    assert len(registry) == 0 and len(bus) == 0 and clock.getDelayedCalls() == []
    assert all(r.finished == 1 for r in requests)
    assert registry.close_all() == 0


def test_token_expiry_closes_the_stream(bus, clock):
    request, stream = open_stream(bus, clock, expires_at=T0 + 20)
    clock.advance(18)
    assert not stream.closed
    clock.advance(9)
    assert stream.closed and stream.close_reason == "access token expired"
    assert request.finished == 1 and len(bus) == 0 and clock.getDelayedCalls() == []


def test_stream_ends_at_the_instant_its_token_expires(bus, clock):
    request, stream = open_stream(bus, clock, expires_at=T0 + 20)
    assert len(clock.getDelayedCalls()) == 2  # keep-alive and expiry
    clock.advance(19.5)
    bus.publish(ev("before", public=False))
    assert request.body.count(b"event: before") == 1
    clock.advance(0.5)
    assert stream.closed and stream.close_reason == "access token expired"
    bus.publish(ev("after", public=False))
    assert b"after" not in request.body
    assert request.finished == 1 and len(bus) == 0 and clock.getDelayedCalls() == []


def test_an_event_at_the_expiry_instant_is_not_sent_even_before_the_timer(bus, clock):
    request, stream = open_stream(bus, clock, expires_at=T0 + 20)
    clock.rightNow = T0 + 20  # time has come, the timer has not run yet
    bus.publish(ev("late", public=False))
    assert b"late" not in request.body
    assert stream.closed and stream.close_reason == "access token expired"
    assert clock.getDelayedCalls() == []


def test_the_expiry_timer_goes_with_the_stream(bus, clock):
    registry = StreamRegistry(bus, clock)
    request = StreamRequest(clock)
    stream = registry.open(request, "", None, token="t", expires_at=T0 + 3600)
    assert len(clock.getDelayedCalls()) == 2
    request.lose()
    assert stream.closed and clock.getDelayedCalls() == []


def test_a_token_expired_before_the_stream_starts_ends_it_at_once(bus, clock):
    request, stream = open_stream(bus, clock, expires_at=T0 - 1)
    clock.advance(0)
    assert stream.closed and stream.close_reason == "access token expired"
    assert clock.getDelayedCalls() == []


def test_request_finished_elsewhere_cleans_up(bus, clock):
    request, stream = open_stream(bus, clock)
    request.finish()
    assert stream.closed and len(bus) == 0 and clock.getDelayedCalls() == []


def test_a_failing_write_closes_only_that_stream(bus, clock):
    good, _ = open_stream(bus, clock)
    bad, bad_stream = open_stream(bus, clock)

    def broken(data):
        raise RuntimeError("socket exploded")

    bad.write = broken
    bus.publish(ev())
    assert bad_stream.closed and len(bus) == 1 and len(good.written) == 2
    assert bad_stream.close_reason == "write failed"
    assert bad.channel.transport.aborted  # the connection is not left hanging


def test_thousand_open_disconnect_cycles_leave_nothing(bus, clock):
    registry = StreamRegistry(bus, clock)
    for i in range(1000):
        request = StreamRequest(clock)
        registry.open(request, f"p{i % 3}", firehose_rule("alice"), token=f"t{i % 10}")
        bus.publish(ev(f"p{i % 3}"))
        if i % 2:
            request.lose()
        else:
            registry.close_streams_for_token(f"t{i % 10}")
    assert len(bus) == 0 and bus.prefixes() == []
    assert len(registry) == 0 and registry._by_token == {}
    assert clock.getDelayedCalls() == []
    assert registry.opened == 1000


# -- the ended Deferred (what a Klein handler awaits) ---------------------------------


def test_ended_fires_when_closed_by_the_server(bus, clock):
    request, stream = open_stream(bus, clock)
    assert not stream.ended.called
    stream.close("access token deleted")
    assert request.finished == 1
    assert stream.ended.called and stream.ended.result == "access token deleted"


def test_ended_fires_when_the_client_leaves(bus, clock):
    request, stream = open_stream(bus, clock)
    request.lose()
    assert stream.ended.result == "client disconnected"


def test_ended_waits_for_the_aborted_connection_to_go(bus, clock):
    request, stream = open_stream(bus, clock, queue_size=1)
    stream.pauseProducing()
    bus.publish(ev())
    bus.publish(ev())
    assert stream.cut_off and not stream.ended.called
    request.lose()
    assert stream.ended.result == "client too slow"


def test_cancelling_ended_closes_the_stream(bus, clock):
    request, stream = open_stream(bus, clock)
    stream.ended.cancel()
    stream.ended.addErrback(lambda f: None)
    assert stream.closed and request.finished == 1 and len(bus) == 0


def test_cancel_after_the_connection_was_lost_never_finishes(bus, clock):
    # Klein's order: Request.connectionLost sets _disconnected, then its own
    # errback cancels the handler (and so ``ended``) before ours runs.
    request, stream = open_stream(bus, clock)
    request._disconnected = True
    stream.ended.cancel()
    stream.ended.addErrback(lambda f: None)
    assert stream.closed and stream.close_reason == "client disconnected"
    request.lose()
    assert request.finished == 0 and len(bus) == 0


def test_ended_fires_at_once_for_a_client_gone_before_start(bus, clock):
    request = StreamRequest(clock)
    request._disconnected = True
    stream = EventStream(request, clock).start(bus, "", None)
    assert stream.ended.result == "client disconnected"


# -- on a real twisted.web connection ------------------------------------------------


def _serve_stream(bus, clock, request_line):
    """A twisted.web Site whose one resource opens an event stream; a request on it."""
    from twisted.internet.testing import StringTransport
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site

    streams = []

    class Events(Resource):
        isLeaf = True

        def render_GET(self, request):
            streams.append(EventStream(request, clock).start(bus, "", None))
            return NOT_DONE_YET

    channel = Site(Events(), timeout=None).buildProtocol(None)  # no idle timer in the reactor
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(request_line + b"\r\nHost: x\r\n\r\n")
    return transport, streams


def _dechunk(body):
    decoded = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        decoded, body = decoded + body[:length], body[length:]
        assert body[:2] == b"\r\n"
        body = body[2:]
    return decoded


@pytest.mark.usefixtures("clean_reactor")
@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_events_on_the_wire_are_valid_http_of_either_version(bus, clock, version):
    transport, streams = _serve_stream(bus, clock, b"GET /v1/events " + version)
    events = [ev(data=str(n)) for n in range(3)] + [ev("long", "x" * 300)]
    for event in events:
        bus.publish(event)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    expected = sse.PREAMBLE + b"".join(format_event(event) for event in events)
    if version == b"HTTP/1.1":
        assert b"Transfer-Encoding: chunked" in head
        body = _dechunk(body)
    else:
        assert b"chunked" not in head
    assert body == expected
    assert streams[0].request.sentLength == len(expected)
    assert streams[0].events_sent == len(events)
    streams[0].close()
    assert transport.value().endswith(b"0\r\n\r\n") == (version == b"HTTP/1.1")
