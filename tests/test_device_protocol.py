"""DeviceProtocol over StringTransport + Clock: handshake, framing, timeouts, bad input."""

from __future__ import annotations

import base64
import itertools

import pytest
from conftest import KEYS_DIR
from device_fixtures import CORE_ID, DEVICE_KEYS, PHOTON_ID, SERVER_PUBLIC, Server
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from twisted_spark.coap import codec, messages
from twisted_spark.config import Settings
from twisted_spark.crypto.channel import AesCbcChannel, FrameReader
from twisted_spark.crypto.handshake import encrypt_identity, open_session_blob, session_seeds
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.device.protocol import CLOSED, READY
from twisted_spark.models import DeviceRecord

SESSION_133 = bytes.fromhex(
    "ead9e1e2014903b9e76632f6fa5afa669522a567e100cd3cfe5215473921b63d97b197250038fa09"
)
ID_133 = "54e1c888f6d9492bebee1ee9"


@pytest.fixture
def logs():
    """Collect formatted log lines emitted while the test runs."""
    from twisted.logger import formatEvent

    lines = []

    def observer(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


class Wire:
    """A server protocol on a StringTransport, driven by hand as a device."""

    def __init__(self, server, device_id=CORE_ID, key=DEVICE_KEYS[0], photon=False):
        self.server = server
        self.device_id = device_id
        self.key = key
        self.photon = photon
        self.proto = server.factory.buildProtocol(None)
        self.tr = StringTransport()
        self.proto.makeConnection(self.tr)
        self.nonce = self.take()
        self.channel = None
        self.reader = FrameReader(4096)

    def take(self):
        data = self.tr.value()
        self.tr.clear()
        return data

    def identity(self):
        der = public_key_der(self.key) if self.photon else None
        return encrypt_identity(SERVER_PUBLIC, self.nonce, self.device_id, der)

    def feed(self, data, step=None):
        if step is None:
            self.proto.dataReceived(data)
        else:
            for i in range(0, len(data), step):
                self.proto.dataReceived(data[i : i + step])

    def open_blob(self, blob):
        session = open_session_blob(self.key, SERVER_PUBLIC, blob)
        self.channel = AesCbcChannel.from_session(session)
        self.mid = session_seeds(session)[0]
        return session

    def next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def frame(self, coap):
        return self.channel.encrypt_frame(coap)

    def received(self):
        return [codec.decode(self.channel.decrypt(b)) for b in self.reader.feed(self.take())]

    def hello(self):
        return self.frame(
            messages.device_hello(self.next_mid(), platform_id=6 if self.photon else None)
        )

    def handshake(self, step=None):
        self.feed(self.identity(), step)
        self.open_blob(self.take())
        self.feed(self.hello(), step)
        return self.received()


def test_nonce_then_byte_at_a_time_handshake():
    s = Server()
    s.register(CORE_ID)
    w = Wire(s)
    assert len(w.nonce) == 40
    msgs = w.handshake(step=1)
    assert w.proto.state == READY
    assert [messages.classify_device_bound(m) for m in msgs] == [messages.DeviceBoundKind.HELLO]
    session = s.registry.get(CORE_ID)
    assert session.remote_ip and session.platform_id == 0
    assert [e.data for e in s.bus.named("spark/status")] == ["online"]


def test_photon_handshake_with_presented_key_and_attributes_persisted():
    s = Server()
    s.register(PHOTON_ID, key=DEVICE_KEYS[1])
    w = Wire(s, PHOTON_ID, DEVICE_KEYS[1], photon=True)
    w.handshake(step=7)
    session = s.registry.get(PHOTON_ID)
    assert session.platform_id == 6
    record = s.store._devices[PHOTON_ID]
    assert record.platform_id == 6 and record.last_heard == s.clock.seconds()


def test_split_identity_then_hello_with_a_known_session():
    """The identity in two reads, then the Hello, with a vector session key.

    (This test used to feed the identity's tail and the Hello in ONE read. No
    device can do that: the Hello is encrypted with the session key the
    server's 384-byte answer carries, so such a peer is now refused, see
    test_device_limits.)
    """
    s = Server()
    s.register(CORE_ID)
    nonce = b"N" * 40
    session = SESSION_133
    randoms = iter([nonce, session, b"\x12\x34"])
    s.factory.random_bytes = lambda n: next(randoms)
    w = Wire(s)
    assert w.nonce == nonce
    w.channel = AesCbcChannel.from_session(session)
    w.mid = session_seeds(session)[0]
    identity = w.identity()
    w.feed(identity[:100])
    w.feed(identity[100:])
    assert len(w.tr.value()) == 384
    w.feed(w.hello())
    blob = w.take()
    assert len(blob) == 384 + 18  # session blob + server Hello frame
    assert open_session_blob(DEVICE_KEYS[0], SERVER_PUBLIC, blob[:384]) == session
    hello = codec.decode(w.channel.decrypt(blob[384 + 2 :]))
    assert hello.message_id == 0x1235 and hello.path_char == "h"
    assert w.proto.state == READY


def test_transcript_133_device_side_frames():
    """PROTOCOL.md §13.3/13.4: the device's Hello, Describe reply and Ping frames."""
    s = Server(describe_on_connect=True)
    s.register(ID_133)
    randoms = iter([b"N" * 40, SESSION_133, b"\x97\xb0"])
    s.factory.random_bytes = lambda n: next(randoms)
    w = Wire(s, ID_133)
    w.feed(w.identity())
    assert len(w.take()) == 384
    hello = bytes.fromhex("0010de896027ba111a95be396f4dfc309b6b")
    w.feed(hello)
    out = w.take()
    session = s.registry.get(ID_133)
    assert session is not None and session._recv_mid == 0x97B2
    # The server sent Hello (97b1) then Describe (97b2, token 1): decrypt them.
    device = AesCbcChannel.from_session(SESSION_133)
    frames = FrameReader().feed(out)
    server_hello, describe = (codec.decode(device.decrypt(f)) for f in frames)
    assert server_hello.message_id == 0x97B1
    assert messages.classify_device_bound(describe) is messages.DeviceBoundKind.DESCRIBE
    assert describe.message_id == 0x97B2
    # Re-key the pending describe to the vector's token 0x28, then feed the vector reply.
    pending = session._pending.pop(describe.token[0])
    pending.token = 0x28
    session._pending[0x28] = pending
    reply = bytes.fromhex(
        "00308c757e24f756de78d84f1980a8e0d184b0960094769211c884f5956ae416216110f5e51af1"
        "780b756aed83c5e05d5c5a"
    )
    w.feed(reply)
    assert session.functions == ("brew",)
    assert session.variables == {"temperature": "int32"}
    # §13.4: the next device frame (Ping 97b3) uses the FIRST block of the reply as IV.
    w.feed(bytes.fromhex("0010a3f8401c2f78fb9fce086fd9fa80b456"))
    ack = codec.decode(device.decrypt(FrameReader().feed(w.take())[0]))
    assert (ack.type, ack.code, ack.message_id) == (codec.MessageType.ACK, 0, 0x97B3)
    assert w.proto.state == READY


@pytest.mark.parametrize("stage", ["nonce", "session", "hello"])
def test_handshake_timeout_at_every_stage(stage, logs):
    s = Server(Settings(handshake_timeout=10))
    s.register(CORE_ID)
    w = Wire(s)
    if stage != "nonce":
        w.feed(w.identity()[: 200 if stage == "session" else 256])
    s.clock.advance(9.9)
    assert not w.tr.disconnecting
    s.clock.advance(0.2)
    assert w.tr.disconnecting
    assert any("handshake not completed within 10 s" in line for line in logs)
    assert s.registry.get(CORE_ID) is None


def test_unknown_device_refused_with_registration_hint(logs):
    s = Server()
    w = Wire(s)
    w.feed(w.identity())
    assert w.tr.disconnecting
    line = next(line for line in logs if "unknown device" in line)
    assert CORE_ID in line and "keys add " + CORE_ID in line
    assert "python -m twisted_spark keys add" in line
    assert (s.factory.handshakes_failed, s.factory.handshakes_completed) == (1, 0)


def test_presented_key_differs_from_stored_refused(logs):
    s = Server()
    s.register(PHOTON_ID, key=DEVICE_KEYS[0])
    w = Wire(s, PHOTON_ID, DEVICE_KEYS[1], photon=True)
    w.feed(w.identity())
    assert w.tr.disconnecting
    assert any("differs from the registered one" in line and PHOTON_ID in line for line in logs)


def test_device_registered_with_a_gen3_key_is_refused_by_name(logs):
    """An EC key belongs to a Gen3 device (UDP); the TCP port says so instead of failing."""
    s = Server()
    ec_der = base64.b64decode(b"".join((KEYS_DIR / "ec-p256.pub.pem").read_bytes().split()[3:-3]))
    s.store._devices[PHOTON_ID] = DeviceRecord(device_id=PHOTON_ID, public_key=ec_der)
    w = Wire(s, PHOTON_ID, DEVICE_KEYS[0], photon=False)
    w.feed(w.identity())
    assert w.tr.disconnecting
    assert any("EC P-256 key (a Gen3 device" in line and PHOTON_ID in line for line in logs)
    assert not any("internal error" in line for line in logs)


def test_device_registered_with_an_unreadable_key_is_refused(logs):
    """A stored key OpenSSL cannot read is refused with what to do, not an internal error."""
    s = Server()
    s.store._devices[CORE_ID] = DeviceRecord(device_id=CORE_ID, public_key=b"\x30\x03junk")
    w = Wire(s, CORE_ID, DEVICE_KEYS[0], photon=False)
    w.feed(w.identity())
    assert w.tr.disconnecting
    line = next(line for line in logs if "cannot be read" in line)
    assert CORE_ID in line and "keys add " + CORE_ID in line
    assert not any("internal error" in line for line in logs)


def test_accept_unknown_devices_stores_presented_key():
    s = Server(Settings(accept_unknown_devices=True))
    w = Wire(s, PHOTON_ID, DEVICE_KEYS[1], photon=True)
    w.handshake()
    assert w.proto.state == READY
    assert s.store._devices[PHOTON_ID].public_key == public_key_der(DEVICE_KEYS[1])
    assert (s.factory.handshakes_failed, s.factory.handshakes_completed) == (0, 1)


def test_accept_unknown_refuses_a_second_key_that_lost_the_race(logs):
    """Another connection stored its key between our lookup and our write: we are refused."""
    s = Server(Settings(accept_unknown_devices=True))
    s.store._devices[PHOTON_ID] = DeviceRecord(
        device_id=PHOTON_ID, public_key=public_key_der(DEVICE_KEYS[0]))
    s.store.get_device = lambda device_id: defer.succeed(None)  # the lookup saw no key
    w = Wire(s, PHOTON_ID, DEVICE_KEYS[1], photon=True)
    w.feed(w.identity())
    assert w.tr.disconnecting
    assert s.store._devices[PHOTON_ID].public_key == public_key_der(DEVICE_KEYS[0])
    assert any("registered a different key for it first" in line for line in logs)


def test_accept_unknown_still_refuses_core_without_key():
    s = Server(Settings(accept_unknown_devices=True))
    w = Wire(s)
    w.feed(w.identity())
    assert w.tr.disconnecting


def test_garbage_identity_blob_refused(logs):
    s = Server()
    w = Wire(s)
    w.feed(b"\x01" * 256)
    assert w.tr.disconnecting
    assert any("handshake refused" in line for line in logs)


def test_wrong_nonce_refused():
    s = Server()
    s.register(CORE_ID)
    w = Wire(s)
    w.nonce = b"x" * 40
    w.feed(w.identity())
    assert w.tr.disconnecting


def ready_wire(**settings):
    s = Server(Settings(**settings)) if settings else Server()
    s.register(CORE_ID)
    w = Wire(s)
    w.handshake()
    return s, w


@pytest.mark.parametrize(
    "bad,expected",
    [
        ("oversized", "over the limit"),
        ("not-multiple", "not a multiple of 16"),
        ("padding", "bad PKCS#7 padding"),
        ("coap", "unparsable CoAP"),
        ("counter", "bad message counter"),
        ("not-hello", "first frame is not a Hello"),
    ],
)
def test_bad_input_closes_with_one_clear_line(bad, expected, logs):
    s = Server()
    s.register(CORE_ID)
    w = Wire(s)
    w.feed(w.identity())
    w.open_blob(w.take())
    if bad != "not-hello":
        w.feed(w.hello())
        w.take()
    if bad == "oversized":
        data = (4112).to_bytes(2, "big") + b"\0" * 16
    elif bad == "not-multiple":
        data = (20).to_bytes(2, "big") + b"\0" * 20
    elif bad == "padding":
        # A block that CBC-decrypts to sixteen zero bytes: pad byte 0 is never valid.
        ct = w.channel._ecb_encrypt(w.channel.send_iv)
        data = (16).to_bytes(2, "big") + ct
    elif bad == "coap":
        data = w.frame(b"\x00\x01")  # version 0
    elif bad == "counter":
        data = w.frame(messages.ping((w.mid + 5) & 0xFFFF))
    else:
        data = w.frame(messages.ping(w.next_mid()))
    w.feed(data)
    assert w.tr.disconnecting
    assert w.proto.state == CLOSED
    closing = [line for line in logs if "Closing connection" in line]
    assert len(closing) == 1
    assert expected in closing[0] and CORE_ID in closing[0]
    if bad != "not-hello":
        assert s.registry.get(CORE_ID) is None


def test_bad_device_does_not_disturb_healthy_one():
    s = Server()
    s.register(CORE_ID)
    s.register(PHOTON_ID, key=DEVICE_KEYS[1])
    good = Wire(s, PHOTON_ID, DEVICE_KEYS[1], photon=True)
    good.handshake()
    bad = Wire(s)
    bad.handshake()
    bad.feed(b"\xff\xff")
    assert bad.tr.disconnecting and not good.tr.disconnecting
    good.feed(good.frame(messages.ping(good.next_mid())))
    (ack,) = good.received()
    assert ack.type == codec.MessageType.ACK and ack.message_id == good.mid
    assert s.registry.online_ids() == {PHOTON_ID}


def test_idle_device_is_pinged_then_marked_offline():
    s, w = ready_wire(device_ping_interval=15, device_idle_timeout=30)
    s.clock.advance(14.9)
    assert w.take() == b""
    s.clock.advance(0.2)
    (ping,) = w.received()
    assert ping.type == codec.MessageType.CON and ping.code == 0
    s.clock.advance(10)
    assert not w.tr.disconnecting
    s.clock.advance(5)
    assert w.tr.disconnecting
    assert s.registry.get(CORE_ID) is None
    assert [e.data for e in s.bus.named("spark/status")] == ["online", "offline"]


def test_answering_device_stays_online():
    s, w = ready_wire(device_ping_interval=15, device_idle_timeout=30)
    for _ in range(10):
        s.clock.advance(15.5)
        for msg in w.received():
            if msg.type == codec.MessageType.CON and msg.code == 0:
                w.feed(w.frame(messages.empty_ack(msg.message_id)))
    assert not w.tr.disconnecting
    assert s.registry.get(CORE_ID) is not None


def test_one_timer_per_idle_connection():
    s, w = ready_wire()
    assert len(s.clock.getDelayedCalls()) == 1
    for _ in range(5):
        w.feed(w.frame(messages.ping(w.next_mid())))
    assert len(s.clock.getDelayedCalls()) == 1


def test_a_device_pinging_every_interval_keeps_one_timer_and_is_never_pinged():
    """Each frame postpones the keep-alive check (a reset to a later time):
    no new timer per ping, and no server ping while the device talks."""
    s, w = ready_wire(device_ping_interval=15, device_idle_timeout=30)
    timer = w.proto._timer
    for _ in range(10):
        s.clock.advance(14)
        w.feed(w.frame(messages.ping(w.next_mid())))
        (ack,) = w.received()
        assert ack.type == codec.MessageType.ACK
    assert w.proto._timer is timer and timer.active()
    assert timer.getTime() == s.clock.seconds() + 15
    s.clock.advance(15.1)  # silent now: pinged after a full interval
    (ping,) = w.received()
    assert ping.type == codec.MessageType.CON and ping.code == 0
    s.clock.advance(15)
    assert w.tr.disconnecting


def test_connection_lost_during_rsa_work_is_harmless():
    from twisted.internet import defer

    s = Server()
    s.register(CORE_ID)
    gate = defer.Deferred()

    class SlowPool:
        pending = 0

        def run(self, func, *a):
            return gate.addCallback(lambda _: func(*a))

    s.factory.rsa_pool = SlowPool()
    w = Wire(s)
    w.feed(w.identity())
    w.proto.connectionLost(None)
    gate.callback(None)
    assert w.take() == b""
    assert s.registry.get(CORE_ID) is None


def test_counter_wraps():
    s, w = ready_wire()
    w.mid = 0xFFFE
    session = s.registry.get(CORE_ID)
    session._recv_mid = 0xFFFE
    for _ in itertools.repeat(None, 3):
        w.feed(w.frame(messages.ping(w.next_mid())))
    assert [m.message_id for m in w.received()] == [0xFFFF, 0x0000, 0x0001]
    assert not w.tr.disconnecting


def test_device_hanging_up_is_logged_and_marked_offline(logs):
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    s = Server()
    s.register(CORE_ID, key=DEVICE_KEYS[0])
    w = Wire(s)
    w.handshake()
    assert s.registry.get(CORE_ID) is not None
    w.proto.connectionLost(Failure(ConnectionDone()))
    assert s.registry.get(CORE_ID) is None
    assert any(CORE_ID in line and "disconnected" in line for line in logs)
