"""The Gen3 CoAP session on the UDP port, in memory: a Clock, inline crypto, a hand-written device.

The device (``udp_harness.Device``) writes its CoAP messages by hand, so
each test shows the exact Gen3 dialect; the server side is the real port,
the real :class:`Gen3SessionFactory`, registry and bus.
"""

from __future__ import annotations

import json
import struct

from udp_harness import DEVICE_ID, Device, Port, hello_message

from twisted_spark.coap import to_device
from twisted_spark.coap.blockwise import BLOCK1, BLOCK2, ETAG, Block, block_option
from twisted_spark.coap.codec import CoapMessage, Code, MessageType, OptionNumber, decode
from twisted_spark.config import Settings
from twisted_spark.errors import ArgumentTooLong, DeviceTimeout
from twisted_spark.events.bus import EventBus
from twisted_spark.registry import DeviceRegistry
from twisted_spark.udp.kept import KeptState
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


def test_function_arguments_go_up_to_device_os_6s_1024_bytes_within_the_hellos_size():
    """Device OS 6 takes 1024-byte arguments (its Linux build returned the length of a
    1000-byte one); the call must also fit the largest message its Hello announced, or
    be refused at once: the channel would refuse to send it and the call would hang."""
    cloud = Cloud()
    cloud.connect(max_message_size=1152)
    describe_app(cloud, 2)
    session = cloud.session()
    assert session.argument_limit("brew") == 1024
    session.call_function("brew", b"x" * 1024)
    (call,) = cloud.take()
    assert call.uri_path == ["f", "brew"] and len(call.encode()) <= 1152
    small = Cloud()
    small.connect(max_message_size=600)
    describe_app(small, 2)
    limit = small.session().argument_limit("brew")
    assert limit == 600 - len(CoapMessage(CON, Code.POST, 0, b"\x00", (
        (PATH, b"f"), (PATH, b"brew"), (QUERY, b"x" * limit))).encode()) + limit
    failure = small.session().call_function("brew", b"x" * (limit + 1))
    assert isinstance(failure.result.value, ArgumentTooLong) and small.take() == []
    failure.addErrback(lambda _: None)
    small.session().call_function("brew", b"x" * limit)
    assert len(small.take()[0].encode()) == 600


def test_fast_ota_chunks_go_non_confirmable_as_device_os_acknowledges_none():
    """Chunks sent confirmable were resent until 64 filled the retransmission table; the
    flow-control ping after them was then untracked and its ACK dropped (a 391-chunk
    transfer to Device OS's Linux virtual device failed: "did not answer the ping")."""
    cloud = Cloud()
    cloud.connect()
    session = cloud.session()
    for index in range(70):
        session.send_message(lambda mid, i=index: to_device.chunk(mid, 1, 0, b"x", i))
    chunks = cloud.take()
    assert len(chunks) == 70 and {m.type for m in chunks} == {NON}
    assert chunks[0].uri_path == ["c"]
    pinged = session.ping()
    (ping,) = cloud.take()
    cloud.device.send(CoapMessage(ACK, Code.EMPTY, ping.message_id).encode())
    assert pinged.result is True
    cloud.port.advance(60)
    assert [m for m in cloud.take() if m.uri_path == ["c"]] == []  # none resent


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


def test_a_device_resuming_without_a_hello_keeps_what_its_first_hello_said():
    """Device OS skips the Hello on a resumed session ("Skipping HELLO message"), as its
    Linux build did against this server: OTA v3, the chunk size and the largest message
    still hold, so they are kept with the DTLS session (as describe and subscriptions are)."""
    cloud = Cloud()
    cloud.connect(flags=0x80 | 0x20, max_message_size=1152, ota_chunk_size=1024,
                  max_binary_size=983040)
    first = cloud.session()
    cloud.device.send(request(CON, Code.POST, 9, "x", payload=b"\x04\x90\x1c"))
    cloud.take()
    cloud.device.sleep_and_resume(new_address=("198.51.100.8", 5684))
    cloud.device.send(CoapMessage(CON, Code.EMPTY, 10).encode())
    assert cloud.take() == [CoapMessage(ACK, Code.EMPTY, 10)]
    resumed = cloud.session()
    assert resumed is not first and resumed.transport.channel.resumed
    assert resumed.hello == first.hello and resumed.platform_id == 12
    assert (resumed.ota_v3, resumed.ota_chunk_size, resumed.max_binary_size) == (
        True, 1024, 983040)
    assert resumed.transport.channel.max_message_size == 1152  # not the 960 of no Hello


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


def test_state_kept_before_hellos_were_kept_still_loads_and_a_bad_hello_is_ignored():
    old = {"s": [["particle", True, None]], "d": None}
    assert KeptState.from_json(old) == KeptState((("particle", True, None),), None, None)
    bad = dict(old, h={"device_id": DEVICE_ID, "flags": "x"})
    assert KeptState.from_json(bad).hello is None
