"""Events over real loopback TCP: twisted.web Site + SSE streams + treq clients,
and virtual devices over the real device server.

The REST routes of the API are mounted elsewhere; here a minimal stand-in
resource opens streams exactly the way those routes do (check the token,
pick the rule, ``StreamRegistry.open``, ``NOT_DONE_YET``), so this module
tests the stream machinery against real sockets: headers on the wire,
keep-alive on a Clock, a client that stops reading, client hang-ups.
"""

from __future__ import annotations

import json
import time

import pytest
import pytest_twisted
import treq
from device_fixtures import DEVICE_KEYS, SERVER_PUBLIC
from loopback import loopback_cloud, until
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twisted_spark.api.sse import prefix_from_path
from twisted_spark.api.sse_frames import format_event
from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.events import visibility
from twisted_spark.events.publishing import api_event
from twisted_spark.models import DeviceRecord, Event, User
from twisted_spark.sim.device import VirtualDevice, connect_device
from twisted_spark.store import MemoryStore

pytestmark = pytest.mark.usefixtures("clean_reactor")

CORE = "53ff73065067544816300187"
TOKENS = {"ta": "alice", "tb": "bob"}


class EventsResource(Resource):
    """Stand-in for the API's SSE routes (token in ?access_token=)."""

    isLeaf = True

    def __init__(self, streams):
        super().__init__()
        self.streams = streams

    def render_GET(self, request):
        request.setHeader(b"access-control-allow-origin", b"*")
        token = request.args.get(b"access_token", [b""])[0].decode()
        user = TOKENS.get(token)
        if user is None:
            request.setResponseCode(401)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"ok": False, "error": "invalid_token",
                               "error_description": "The access token provided is invalid."}
                              ).encode()
        if request.path.startswith(b"/v1/devices/events"):
            prefix, rule = prefix_from_path(request.path, 3), visibility.my_devices_rule(user)
        else:
            prefix, rule = prefix_from_path(request.path, 2), visibility.firehose_rule(user)
        self.streams.open(request, prefix, rule, token=token)
        return NOT_DONE_YET


class Collector(Protocol):
    """Receives an SSE body; ``done`` fires when the response ends."""

    def __init__(self):
        self.chunks = []
        self.received = 0
        self.done = defer.Deferred()

    @property
    def data(self):
        return b"".join(self.chunks)

    def dataReceived(self, data):
        self.chunks.append(data)
        self.received += len(data)

    def connectionLost(self, reason):
        self.done.callback(None)

    def names(self):
        return [line[7:].decode() for line in self.data.split(b"\n") if line.startswith(b"event: ")]


def klein_resource(streams):
    """The same routes on Klein, the way the API mounts them: the handler
    awaits ``stream.ended`` (Klein finishes the response when a handler
    returns, and cancels it when the client leaves)."""
    from klein import Klein

    app = Klein()

    @app.route("/v1/events", branch=True)
    async def events(request):
        request.setHeader(b"access-control-allow-origin", b"*")
        token = request.args.get(b"access_token", [b""])[0].decode()
        user = TOKENS.get(token)
        if user is None:
            request.setResponseCode(401)
            return b'{"ok":false,"error":"invalid_token","error_description":"Invalid."}'
        stream = streams.open(request, prefix_from_path(request.path, 2),
                              visibility.firehose_rule(user), token=token)
        await stream.ended
        return None

    return app.resource()


class Loop:
    """The composition root's bus and streams (keep-alive on ``clock``) behind the
    stand-in resource, on a Site on 127.0.0.1:0."""

    def __init__(self, clock=reactor, queue_size=1000, klein=False, store=None, **settings):
        self.cloud = loopback_cloud(
            Settings(sse_queue_size=queue_size, **settings), store=store, clock=clock
        )
        self.bus = self.cloud.bus
        self.streams = self.cloud.streams
        # What the other parts subscribed (the firmware hook's hardware events).
        self._others = len(self.bus)
        self._other_prefixes = set(self.bus.prefixes())
        self.ports = []
        self.klein = klein

    def subscriptions(self):
        """The bus subscriptions beyond the other parts' own: the streams'."""
        return len(self.bus) - self._others

    def prefixes(self):
        """The prefixes subscribed to beyond the other parts' own."""
        return [p for p in self.bus.prefixes() if p not in self._other_prefixes]

    async def start(self):
        make = klein_resource if self.klein else EventsResource
        site = Site(make(self.streams))
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.ports.append(port)
        self.port_numbers = {port.getHost().port}
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        return self

    async def open(self, path="/v1/events", token="ta", pause=False):
        response = await treq.get(f"{self.base}{path}?access_token={token}",
                                  persistent=False, unbuffered=True)
        body = Collector()
        response.deliverBody(body)
        if pause:
            body.transport.pauseProducing()
        return response, body

    async def stop(self):
        self.streams.close_all()
        ports = self.port_numbers
        for port in self.ports:
            await port.stopListening()
        # Wait for both ends of every connection to our ports to be closed.
        await until(lambda: not any(_peer_port(s) in ports or _host_port(s) in ports
                                    for s in reactor.getReaders() + reactor.getWriters()))
        await self.cloud.stop()


def _peer_port(selectable):
    try:
        return selectable.getPeer().port
    except Exception:
        return None


def _host_port(selectable):
    try:
        return selectable.getHost().port
    except Exception:
        return None








def ev(name="temp", data="21", owner="alice", public=True):
    return Event(name, data, 60, time.time(), "api", public, owner)


@pytest_twisted.ensureDeferred
async def test_stream_headers_frames_prefix_and_401_before_headers():
    loop = await Loop().start()
    try:
        denied = await treq.get(f"{loop.base}/v1/events?access_token=nope", persistent=False)
        assert denied.code == 401
        assert (await denied.json())["error_description"]
        assert loop.subscriptions() == 0

        response, body = await loop.open("/v1/events/spark%2Fst")
        assert response.code == 200
        headers = response.headers
        assert headers.getRawHeaders("content-type") == ["text/event-stream"]
        assert headers.getRawHeaders("cache-control") == ["no-cache"]
        assert headers.getRawHeaders("x-accel-buffering") == ["no"]
        assert headers.getRawHeaders("access-control-allow-origin") == ["*"]
        assert loop.prefixes() == ["spark/st"]
        await until(lambda: body.data == b":ok\n\n")
        loop.bus.publish(ev("spark/status", "online", public=False))
        loop.bus.publish(ev("spark/other"))
        loop.bus.publish(ev("spark/status", "bob's", owner="bob", public=False))
        await until(lambda: body.names() == ["spark/status"])
        assert b'data: {"data":"online","ttl":"60","published_at":"' in body.data
    finally:
        await loop.stop()
    await body.done


@pytest_twisted.ensureDeferred
async def test_keepalive_on_the_wire_driven_by_a_clock():
    clock = task.Clock()
    loop = await Loop(clock=clock).start()
    try:
        _, body = await loop.open()
        await until(lambda: body.data == b":ok\n\n")
        clock.advance(8.9)
        loop.bus.publish(ev())  # resets the silence
        clock.advance(8.9)
        await until(lambda: body.data.count(b"\n\n") == 2)
        assert not body.data.endswith(b"\n\n\n")
        clock.advance(0.1)
        await until(lambda: body.data.endswith(b"}\n\n\n"))
        clock.advance(9)
        await until(lambda: body.data.endswith(b"}\n\n\n\n"))
    finally:
        await loop.stop()
    await body.done


@pytest_twisted.ensureDeferred
async def test_client_hangup_removes_the_subscription():
    loop = await Loop().start()
    try:
        _, body = await loop.open("/v1/devices/events")
        await until(lambda: loop.subscriptions() == 1)
        body.transport.stopProducing()
        await until(lambda: loop.subscriptions() == 0 and len(loop.streams) == 0)
        loop.bus.publish(ev())  # nothing to write to, nothing raised
    finally:
        await loop.stop()


@pytest_twisted.ensureDeferred
async def test_token_deletion_ends_the_stream():
    loop = await Loop().start()
    try:
        _, alice = await loop.open(token="ta")
        _, bob = await loop.open(token="tb")
        await until(lambda: len(loop.streams) == 2)
        assert loop.streams.close_streams_for_token("ta") == 1
        await alice.done  # the client sees the response end
        loop.bus.publish(ev())
        await until(lambda: bob.names() == ["temp"])
        assert loop.subscriptions() == 1
    finally:
        await loop.stop()
    await bob.done


@pytest_twisted.ensureDeferred
async def test_client_that_stops_reading_is_cut_off_with_memory_bounded():
    loop = await Loop(queue_size=50).start()
    try:
        _, slow = await loop.open(pause=True)
        _, fast = await loop.open()
        await until(lambda: len(loop.streams) == 2)
        slow_stream, fast_stream = loop.streams.streams()
        transport = slow_stream.request.channel.transport
        frame = len(format_event(ev(data="y" * 255)))
        peak_queue = peak_buffer = sent = 0
        while not slow_stream.closed:
            assert sent < 200_000, "the slow client was never cut off"
            # Batches small enough for a reading client to keep up with: a burst
            # beyond 64 KiB + the queue within one reactor turn would cut it off too.
            for _ in range(40):
                loop.bus.publish(ev(data="y" * 255))
                sent += 1
                peak_queue = max(peak_queue, slow_stream.queued)
                buffered = len(transport.dataBuffer) + transport._tempDataLen
                peak_buffer = max(peak_buffer, buffered)
            await task.deferLater(reactor, 0, lambda: None)  # let the sockets move
        assert slow_stream.cut_off and loop.streams.cut_off == 1
        assert peak_queue == 50
        # transport buffer: its 64 KiB mark, plus at most one flushed queue
        assert peak_buffer <= transport.bufferSize + 51 * frame
        assert loop.subscriptions() == 1 and not fast_stream.closed
        # The server aborted the connection; the client notices once it reads again.
        slow.transport.resumeProducing()
        await slow.done
        assert slow.received < fast.received
        await until(lambda: fast.received == len(b":ok\n\n") + sent * frame)
        assert fast.data.count(b"event: temp") == sent
    finally:
        await loop.stop()
    await fast.done


@pytest_twisted.ensureDeferred
async def test_thousand_connect_disconnect_cycles_leave_no_subscription():
    loop = await Loop().start()
    try:
        for batch in range(20):
            opened = await defer.gatherResults(
                [defer.ensureDeferred(loop.open()) for _ in range(50)]
            )
            await until(lambda: len(loop.streams) == 50)
            loop.bus.publish(ev(f"cycle{batch}"))
            for i, (_, body) in enumerate(opened):
                if i % 2:
                    body.transport.stopProducing()
            loop.streams.close_streams_for_token("ta")  # and the others from the server side
            await defer.gatherResults([body.done for _, body in opened])
            await until(lambda: loop.subscriptions() == 0 and len(loop.streams) == 0)
        assert loop.streams.opened == 1000
        assert loop.prefixes() == []
    finally:
        await loop.stop()


@pytest_twisted.ensureDeferred
async def test_virtual_devices_over_tcp_to_sse_and_back():
    store = MemoryStore()
    await store.add_user(User("alice", "x"))
    await store.put_device(DeviceRecord(CORE, owner="alice",
                                        public_key=public_key_der(DEVICE_KEYS[0])))
    loop = await Loop(store=store, login_failures_per_minute=0).start()
    router, factory = loop.cloud.router, loop.cloud.devices
    device_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    device = VirtualDevice(CORE, DEVICE_KEYS[0], SERVER_PUBLIC)
    try:
        _, body = await loop.open("/v1/devices/events")
        await until(lambda: len(loop.streams) == 1)
        await connect_device(reactor, "127.0.0.1", device_port.getHost().port, device, 10)
        assert await device.subscribe("cmd", my_devices=True) is True
        assert len(router) == 1
        assert await device.publish("temp", "21", private=True, confirmable=True) is True
        loop.bus.publish(api_event("cmd/led", "on", "true", None, owner="alice",
                                   now=time.time()))
        await until(lambda: device.events == [("cmd/led", "on", 60, True)])
        await until(lambda: body.names() == ["spark/status", "temp", "cmd/led"])
        device.disconnect()
        await device.closed
        await until(lambda: body.names()[-1:] == ["spark/status"] and len(router) == 0)
        assert b'"data":"offline"' in body.data
    finally:
        if device.transport is not None and not device.closed.called:
            device.disconnect()
            await device.closed
        factory.close_all()
        await device_port.stopListening()
        await loop.stop()
    await body.done


@pytest_twisted.ensureDeferred
async def test_on_klein_every_ending_is_clean(logged_failures):
    loop = await Loop(klein=True, queue_size=20).start()
    try:
        denied = await treq.get(f"{loop.base}/v1/events?access_token=no", persistent=False)
        assert denied.code == 401
        await denied.content()

        _, hangs_up = await loop.open("/v1/events/spark%2Fst")
        _, revoked = await loop.open(token="tb")
        _, slow = await loop.open(pause=True)
        await until(lambda: len(loop.streams) == 3)
        assert sorted(loop.prefixes()) == ["", "spark/st"]
        hanging, revoking, slow_stream = loop.streams.streams()

        hangs_up.transport.stopProducing()
        assert loop.streams.close_streams_for_token("tb") == 1
        await revoked.done
        await until(lambda: hanging.closed)
        # (each ``ended`` was awaited, and so consumed, by its Klein handler)
        assert hanging.close_reason == "client disconnected"
        assert revoking.close_reason == "access token deleted"

        for _ in range(5000):
            if slow_stream.closed:
                break
            for _ in range(40):
                loop.bus.publish(ev(data="z" * 255))
            await task.deferLater(reactor, 0, lambda: None)
        assert slow_stream.cut_off
        slow.transport.resumeProducing()
        await slow.done
        assert slow_stream.close_reason == "client too slow" and slow_stream.ended.called
        assert loop.subscriptions() == 0 and len(loop.streams) == 0
    finally:
        await loop.stop()
    assert logged_failures == []
