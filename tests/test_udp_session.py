"""The Gen3 CoAP session on the UDP port, in memory: a Clock, inline crypto, a hand-written device.

The device (``udp_harness.Device``) writes its CoAP messages by hand, so
each test shows the exact Gen3 dialect; the server side is the real port,
the real :class:`Gen3SessionFactory`, registry and bus.
"""

from __future__ import annotations

import json
import struct

from udp_harness import DEVICE_ID, Device, Port, hello_message

from twisted_spark.coap.blockwise import BLOCK1, BLOCK2, ETAG, Block, block_option
from twisted_spark.coap.codec import CoapMessage, Code, MessageType, OptionNumber, decode
from twisted_spark.config import Settings
from twisted_spark.errors import DeviceTimeout
from twisted_spark.events.bus import EventBus
from twisted_spark.registry import DeviceRegistry
from twisted_spark.udp.sessions import Gen3SessionFactory

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST
PATH, QUERY = OptionNumber.URI_PATH, OptionNumber.URI_QUERY


class Cloud:
    """The port with a real registry and bus behind the Gen3 session factory."""

    def __init__(self, **settings):
        self.settings = Settings(**settings)
        self.bus = EventBus()
        self.events = []
        self.bus.subscribe("", self.events.append)
        self.registry = None
        self.factory = None

        def sessions(store, clock):
            self.registry = DeviceRegistry(clock, bus=self.bus, store=store)
            self.factory = Gen3SessionFactory(store, self.registry, self.bus, self.settings,
                                              clock=clock, random_bytes=lambda n: b"\x10" * n)
            return self.factory

        self.port = Port(sessions_builder=sessions)
        self.port.register()
        self.device = Device(self.port)
        self.device.handshake()

    def connect(self, **hello):
        self.device.send(hello_message(**hello))
        return self.take()

    def take(self):
        self.device.pump()
        got = [decode(m) for m in self.device.received]
        self.device.received.clear()
        return got

    def session(self):
        return self.registry.local(DEVICE_ID)


def request(mtype, code, mid, path, token=b"", payload=b"", options=()):
    opts = [(PATH, p.encode()) for p in path.split("/")] + list(options)
    return CoapMessage(mtype, code, mid, token, tuple(opts), payload).encode()


def describe_app(cloud, mid, functions=("brew",), variables=None):
    body = json.dumps({"f": list(functions), "v": variables or {"temp": 2}}).encode()
    cloud.device.send(request(CON, Code.POST, mid, "d", b"\x07", body,
                              ((QUERY, b"\x02"),)))
    return cloud.take()


def test_the_hello_is_acknowledged_and_the_device_is_online():
    cloud = Cloud()
    assert cloud.connect() == [CoapMessage(ACK, Code.EMPTY, 1)]
    session = cloud.session()
    assert session is not None and session.platform_id == 12 and session.product_id == 12
    assert cloud.port.store._devices[DEVICE_ID].platform_id == 12
    assert [e.data for e in cloud.events if e.name == "spark/status"] == ["online"]


def test_a_block_wise_describe_answers_callers_waiting_for_it():
    cloud = Cloud()
    cloud.connect()
    waiting = cloud.session().describe()
    (ask,) = cloud.take()  # nothing cached: the server asks, and takes whichever comes first
    assert (ask.type, ask.code, ask.uri_path, ask.option_values(QUERY)) == (
        CON, Code.GET, ["d"], [b"\x02"])
    body = json.dumps({"f": ["brew", "x" * 40], "v": {"v" * 20: 9} | {f"n{i}": 4
                                                                     for i in range(60)}})
    blob = body.encode()
    blocks = [blob[i:i + 512] for i in range(0, len(blob), 512)]
    assert len(blocks) == 2
    answers = []
    for number, part in enumerate(blocks):
        more = number < len(blocks) - 1
        option = (BLOCK1, Block(number, more, 5).encode())
        cloud.device.send(request(CON, Code.POST, 10 + number, "d", bytes([number]), part,
                                  ((QUERY, b"\x02"), option)))
        answers += cloud.take()
    assert [(a.type, a.code, a.message_id) for a in answers] == [
        (ACK, 0x5F, 10), (ACK, Code.CHANGED, 11)]
    described = waiting.result
    assert described["functions"] == ("brew", "x" * 40)
    assert described["variables"]["v" * 20] == "double"
    assert cloud.port.store._devices[DEVICE_ID].functions == ("brew", "x" * 40)


def test_a_function_call_is_retransmitted_until_acknowledged_and_answered_once():
    cloud = Cloud()
    cloud.connect()
    describe_app(cloud, 2)
    result = cloud.session().call_function("brew", b"coffee")
    (call,) = cloud.take()
    assert (call.type, call.code, call.uri_path) == (CON, Code.POST, ["f", "brew"])
    cloud.port.advance(7)  # past the first ACK timeout (4 s * up to 1.5)
    (again,) = cloud.take()
    assert again == call
    cloud.device.send(CoapMessage(ACK, Code.EMPTY, call.message_id).encode())
    cloud.port.advance(15)
    assert cloud.take() == []  # acknowledged: not resent
    answer = CoapMessage(CON, Code.CHANGED, 3, call.token, (), struct.pack(">i", 42)).encode()
    cloud.device.send(answer)
    assert cloud.take() == [CoapMessage(ACK, Code.EMPTY, 3)]
    assert result.result == 42
    cloud.device.send(answer)  # the device did not get our ACK: it is answered again
    assert cloud.take() == [CoapMessage(ACK, Code.EMPTY, 3)]


def test_a_duplicate_event_is_published_once_and_acknowledged_twice():
    cloud = Cloud()
    cloud.connect()
    event = request(CON, Code.POST, 5, "E/temp", payload=b"21",
                    options=((OptionNumber.MAX_AGE, b"\x78"),))
    cloud.device.send(event)
    cloud.device.send(event)
    assert cloud.take() == [CoapMessage(ACK, Code.EMPTY, 5)] * 2
    (published,) = [e for e in cloud.events if e.name == "temp"]
    assert (published.data, published.ttl, published.coreid) == ("21", 120, DEVICE_ID)


def test_subscriptions_time_and_events_to_the_device():
    cloud = Cloud()
    cloud.connect()
    cloud.device.send(request(CON, Code.GET, 6, "e/particle"))
    cloud.device.send(request(CON, Code.GET, 7, "t", b"\x09"))
    ack, time_reply = cloud.take()
    assert ack == CoapMessage(ACK, Code.EMPTY, 6)
    assert (time_reply.code, time_reply.token) == (Code.CONTENT, b"\x09")
    assert struct.unpack(">I", time_reply.payload)[0] == int(cloud.port.clock.seconds())
    assert cloud.session().subscriptions == [("particle", True, None)]


def test_silence_then_an_unanswered_ping_takes_the_device_offline_but_keeps_dtls():
    cloud = Cloud(udp_device_idle_timeout=60, request_timeout=20)
    cloud.connect()
    cloud.device.send(request(CON, Code.GET, 6, "e/particle"))
    cloud.take()
    cloud.port.advance(61)
    (ping,) = cloud.take()
    assert (ping.type, ping.code) == (CON, Code.EMPTY)
    for _ in range(5):
        cloud.port.advance(10)
    assert cloud.session() is None
    assert [e.data for e in cloud.events if e.name == "spark/status"] == ["online", "offline"]
    cloud.take()
    # it wakes and pings on the same DTLS session: online again, subscriptions kept
    cloud.device.send(CoapMessage(CON, Code.EMPTY, 8).encode())
    assert cloud.take() == [CoapMessage(ACK, Code.EMPTY, 8)]
    session = cloud.session()
    assert session is not None and session.subscriptions == [("particle", True, None)]


def test_goodbye_takes_the_device_offline_at_once():
    cloud = Cloud()
    cloud.connect()
    describe_app(cloud, 2)
    cloud.device.send(request(CON, Code.POST, 9, "x", payload=b"\x04\x90\x1c"))
    assert cloud.take() == [CoapMessage(ACK, Code.EMPTY, 9)]
    assert cloud.session() is None
    cloud.device.send(CoapMessage(CON, Code.EMPTY, 10).encode())
    cloud.take()
    assert cloud.session().functions == ("brew",)  # not described again


def test_a_describe_that_never_comes_times_out():
    cloud = Cloud(request_timeout=5)
    cloud.connect()
    waiting = cloud.session().read_variable("temp")
    cloud.port.advance(6)
    assert waiting.called
    waiting.addErrback(lambda f: f.trap(DeviceTimeout))


def test_a_describe_asked_for_comes_back_in_block2_blocks():
    cloud = Cloud()
    cloud.connect(flags=0x16)  # no device-initiated describe
    waiting = cloud.session().read_variable("temp")
    (ask,) = cloud.take()
    assert block_option(ask, BLOCK2) is None
    body = json.dumps({"f": ["brew"], "v": {"temp": 2, **{f"v{i:03d}": 4 for i in range(60)}}})
    blob = body.encode()
    cloud.device.send(CoapMessage(ACK, Code.EMPTY, ask.message_id).encode())
    cloud.device.send(CoapMessage(CON, Code.CONTENT, 20, ask.token,
                                  ((ETAG, b"\x07"), (BLOCK2, Block(0, True, 5).encode())),
                                  blob[:512]).encode())
    ack, again = cloud.take()
    assert ack == CoapMessage(ACK, Code.EMPTY, 20)
    assert block_option(again, BLOCK2) == Block(1, False, 5) and again.token != ask.token
    cloud.device.send(CoapMessage(ACK, Code.EMPTY, again.message_id).encode())
    cloud.device.send(CoapMessage(CON, Code.CONTENT, 21, again.token,
                                  ((ETAG, b"\x07"), (BLOCK2, Block(1, False, 5).encode())),
                                  blob[512:]).encode())
    ack, read = cloud.take()
    assert (read.code, read.uri_path) == (Code.GET, ["v", "temp"])
    assert cloud.session().variables["v059"] == "string"
    cloud.device.send(CoapMessage(ACK, Code.CONTENT, read.message_id, read.token, (),
                                  struct.pack(">i", 21)).encode())
    assert waiting.result == 21
