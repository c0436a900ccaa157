"""The UDP device port: handshakes, the Hello gate, saved sessions, timers, bounds (on a Clock)."""

import pytest
from dtls_harness import FixedRandom, key
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher
from udp_harness import DEVICE_ID, Device, Port, hello_message

from twisted_spark.coap.codec import CoapMessage, Code, MessageType, decode
from twisted_spark.dtls import ClientConfig, ClientHandshake, Closed
from twisted_spark.udp.address import UdpDeviceAddress, parse_udp_device

CON, ACK = MessageType.CON, MessageType.ACK
OTHER_ID = "fedcba9876543210fedcba98"


@pytest.fixture
def logs():
    lines = []

    def observer(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def ping(mid):
    return CoapMessage(CON, Code.EMPTY, mid).encode()


def event(mid, name=b"x"):
    return CoapMessage(CON, Code.POST, mid, b"", ((11, b"E"), (11, name)), b"data").encode()


def online(port=None, device=None):
    port = port or Port()
    port.register()
    device = device or Device(port)
    device.handshake()
    device.send(hello_message())
    return port, device


def session_of(port, device_id=DEVICE_ID):
    return port.protocol.sessions.sessions[device_id]


# -- --udp-device --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("5684", UdpDeviceAddress(5684)),
        ("127.0.0.1:0", UdpDeviceAddress(0, "127.0.0.1")),
        ("[::1]:5684", UdpDeviceAddress(5684, "::1")),
        (" OFF ", None),
    ],
)
def test_udp_device_option(text, address):
    assert parse_udp_device(text) == address


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("::1:5684", "write an IPv6 interface as"),
        ("[::1]5684", "write an IPv6 interface as"),
        ("host:5684", "not an IP address"),
        ("70000", "from 0 to 65535"),
        ("udp:5684", "not an IP address"),
    ],
)
def test_bad_udp_device_options(text, why):
    with pytest.raises(ValueError, match=why):
        parse_udp_device(text)


# -- handshake and Hello ---------------------------------------------------------------------


def test_a_registered_device_handshakes_says_hello_and_is_acknowledged():
    port, device = online()
    assert port.executor.calls == 2  # signing the key exchange, then ECDH + CertificateVerify
    [ack] = device.received
    assert decode(ack) == CoapMessage(ACK, Code.EMPTY, 1)
    session = session_of(port)
    assert session.hello.device_id == DEVICE_ID and session.hello.platform_id == 12
    assert session.channel.max_message_size == 1152 and not session.channel.resumed
    [saved] = port.store._dtls_sessions.values()
    assert saved.device_id == DEVICE_ID and saved.cid == device.side.cid


def test_crypto_waits_for_the_executor():
    port = Port()
    port.register()
    jobs = []

    class Deferring:
        pending = 0

        def run(self, function, *args):
            d = defer.Deferred()
            jobs.append((d, function))
            return d

    port.protocol.executor = Deferring()
    device = Device(port)
    device.side = ClientHandshake(
        ClientConfig(device.key, port.server_key.public_key(), rng=FixedRandom("dev")),
        ("127.0.0.1", 5684),
    )
    device._send(device.side.start(device.now))
    device.pump()  # cookie exchange: cheap, done on the spot
    assert len(jobs) == 1 and port.transport.sent == []  # nothing until the signature is made
    d, function = jobs.pop()
    d.callback(function())
    assert port.transport.sent  # the server's flight


def test_hello_ack_is_resent_for_a_retransmitted_hello():
    port, device = online()
    device.send(hello_message())  # the device did not get our ACK and sent the Hello again
    assert [decode(m).message_id for m in device.received] == [1, 1]
    assert list(session_of(port).history).count("CON POST h") == 1


@pytest.mark.parametrize(
    ("registered", "first", "why"),
    [
        (None, hello_message(), "unknown device; register its key with"),
        (key("someone else"), hello_message(), "differs from the registered one"),
        (key("device"), ping(1), "expected a confirmable POST h (Hello), got CON 0.00"),
    ],
)
def test_the_gate_refuses_and_the_session_is_closed(logs, registered, first, why):
    port = Port()
    if registered is not None:
        port.register(device_key=registered)
    device = Device(port)
    device.handshake()
    device.send(first)
    assert any(isinstance(e, Closed) and e.by_peer for _, e in device.events)  # close_notify
    assert port.protocol.sessions.sessions == {}
    assert port.store._dtls_sessions == {}  # saved at the handshake, deleted now
    assert len(port.protocol.server.sessions) == 0
    assert any("Refused Gen3 device" in line and why in line for line in logs)


def test_accept_unknown_devices_registers_the_handshake_key():
    port = Port(accept_unknown_devices=True)
    device = Device(port)
    device.handshake()
    device.send(hello_message())
    from twisted_spark.crypto.ec_keys import ec_public_key_der

    assert port.store._devices[DEVICE_ID].public_key == ec_public_key_der(key("device"))
    assert DEVICE_ID in port.protocol.sessions.sessions


def test_messages_sent_while_the_hello_is_checked_wait_for_it():
    port = Port()
    port.register()
    gate = defer.Deferred()
    real = port.store.get_device
    port.store.get_device = lambda device_id: gate.addCallback(lambda _: real(device_id))
    device = Device(port)
    device.handshake()
    device.send(hello_message())
    for mid in range(2, 2 + 10):
        device.send(event(mid))  # 8 are held, 2 dropped (max_held)
    assert device.received == []
    gate.callback(None)
    device.pump()
    assert [decode(m).message_id for m in device.received] == [1, *range(2, 10)]


def test_a_newer_session_of_the_same_device_replaces_the_older():
    port, first = online()
    second = Device(port, address=("192.0.2.99", 41000), seed="second")
    second.handshake()
    second.send(hello_message(message_id=50))
    first.pump()
    assert any(isinstance(e, Closed) for _, e in first.events)
    assert len(port.protocol.server.sessions) == 1
    assert session_of(port).channel.address == ("192.0.2.99", 41000)


def test_channel_refuses_messages_larger_than_the_device_takes():
    port = Port()
    port.register()
    device = Device(port)
    device.handshake()
    device.send(hello_message(max_message_size=600))
    channel = session_of(port).channel
    with pytest.raises(ValueError, match="600"):
        channel.send(b"\x50" * 601)
    channel.send(CoapMessage(MessageType.NON, Code.POST, 7, payload=b"y" * 500).encode())
    device.pump()
    assert decode(device.received[-1]).payload == b"y" * 500


# -- saved sessions --------------------------------------------------------------------------


def restart(port):
    """A new port process on the same store (the DTLS server's memory is gone)."""
    port.protocol.stopProtocol()
    again = Port(store=port.store)
    again.clock.advance(port.clock.seconds() - again.clock.seconds() + 600)
    return again


def test_a_device_carries_on_after_a_server_restart():
    port, device = online()
    port = restart(port)
    device.port = port
    device.send(ping(2))
    assert decode(device.received[-1]) == CoapMessage(ACK, Code.EMPTY, 2)
    session = session_of(port)
    assert session.channel.resumed and session.hello is None
    assert list(session.history) == ["CON EMPTY"]


def test_a_sleeping_device_resumes_with_type_253_from_a_new_address_after_a_restart():
    port, device = online()
    port = restart(port)
    device.port = port
    device.sleep_and_resume(new_address=("198.51.100.8", 5684))
    device.send(ping(3))
    assert decode(device.received[-1]).message_id == 3  # the answer went to the new address
    assert session_of(port).channel.address == ("198.51.100.8", 5684)
    [saved] = port.store._dtls_sessions.values()
    assert '"peer_address":["198.51.100.8",5684]' in saved.state


def test_a_resumed_devices_hello_must_name_the_same_device(logs):
    port, device = online()
    port = restart(port)
    device.port = port
    device.send(hello_message(device_id=OTHER_ID, message_id=9))
    assert any(isinstance(e, Closed) for _, e in device.events)
    assert port.store._dtls_sessions == {}


def test_a_session_of_a_re_keyed_device_is_not_resumed(logs):
    port, device = online()
    port = restart(port)
    port.register(device_key=key("new key"))
    device.port = port
    device.send(ping(2))
    assert len(device.received) == 1  # the Hello's ACK from before the restart, nothing more
    assert port.store._dtls_sessions == {}
    assert any("registered key changed since it was saved" in line for line in logs)


class CountingStore:
    """Counts DTLS session lookups of the store it wraps."""

    def __init__(self, store):
        self.store = store
        self.lookups = 0

    def get_dtls_session(self, cid, now):
        self.lookups += 1
        return self.store.get_dtls_session(cid, now)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_unknown_connection_ids_are_looked_up_once_then_cached(logs):
    port, device = online()
    port.store._dtls_sessions.clear()  # as if it had expired from the store
    counting = CountingStore(port.store)
    port = restart(port)
    port.protocol.persistence.store = counting
    device.port = port
    for mid in range(2, 7):
        device.send(ping(mid))
    assert counting.lookups == 1 and len(device.received) == 1
    port.advance(61)  # the negative answer is kept for a minute
    device.send(ping(9))
    assert counting.lookups == 2
    assert any("has no saved session" in line for line in logs)


def test_store_lookups_are_bounded():
    port = Port()
    never = defer.Deferred()
    port.store.get_dtls_session = lambda cid, now: never
    for n in range(70):
        record = bytes((25, 0xFE, 0xFD)) + bytes(8) + n.to_bytes(8, "big") + b"\x00\x00"
        port.protocol.datagramReceived(record, ("192.0.2.1", 1000 + n))
    assert port.protocol.persistence.lookups == 64


def test_a_failed_checkpoint_save_closes_the_session(logs):
    port, device = online()
    port.store.save_dtls_session = lambda record: defer.fail(OSError("disk full"))
    device.send(hello_message(message_id=5))  # nothing to save yet: an answer only
    connection = next(iter(port.protocol.server.sessions))
    port.protocol.handle(connection.bind_device(DEVICE_ID))  # a checkpoint to save
    device.pump()
    assert any(isinstance(e, Closed) for _, e in device.events)
    assert any("Could not save DTLS session" in line for line in logs)


# -- time ----------------------------------------------------------------------------------


def test_the_server_flight_is_resent_on_the_clock():
    port = Port()
    port.register()
    device = Device(port)
    written = []
    real = port.transport.write

    def lose_the_second(data, address):  # the HelloVerifyRequest arrives, the flight is lost
        written.append(data)
        if len(written) != 2:
            real(data, address)

    port.transport.write = lose_the_second
    config = ClientConfig(device.key, port.server_key.public_key(), rng=FixedRandom("dev"))
    device.side = ClientHandshake(config, ("127.0.0.1", 5684), device.now)
    device._send(device.side.start(device.now))
    device.pump()
    assert len(written) == 2 and device.side.connection is None
    port.advance(1.0)  # the server's retransmission timer fires on the clock
    device.pump()
    # the same flight with new record numbers, then (the device answered) our Finished
    assert len(written) == 4 and len(written[2]) == len(written[1]) != len(written[3])
    assert written[2] != written[1] and device.side.connection is not None


def test_idle_sessions_expire_and_leave_the_store():
    port, device = online(Port(session_lifetime=3600.0))
    port.advance(3601 + 60)  # housekeeping runs every minute
    assert len(port.protocol.server.sessions) == 0
    assert port.store._dtls_sessions == {}
    assert session_of(port).closed == "session expired"


def test_live_sessions_keep_their_stored_expiry_ahead():
    port, device = online(Port(session_lifetime=7200.0))
    [before] = port.store._dtls_sessions.values()
    for _ in range(3):
        port.advance(1800)
        device.send(ping(int(port.clock.seconds()) % 60000))
    port.advance(3600)  # housekeeping sees last_seen + lifetime an hour past what is stored
    [after] = port.store._dtls_sessions.values()
    assert after.expires_at > before.expires_at + 3600


def test_expired_sessions_are_swept_from_the_store():
    port = Port()
    from twisted_spark.models import DtlsSessionRecord

    old = DtlsSessionRecord(b"12345678", "{}", port.clock.seconds() + 30)
    port.store._dtls_sessions[old.cid] = old
    port.advance(60)
    assert port.store._dtls_sessions == {}


# -- bounds and logs -------------------------------------------------------------------------


def test_garbage_floods_are_dropped_with_rate_limited_logs(logs):
    port = Port()
    for n in range(200):
        port.protocol.datagramReceived(b"\x17\xfe\xfd" + bytes(20), ("203.0.113.9", 9999))
        port.protocol.datagramReceived(b"garbage %d" % n, ("203.0.113.9", 9999))
    dropped = [line for line in logs if "203.0.113.9" in line]
    assert 0 < len(dropped) <= 5
    assert port.transport.sent == []
    port.advance(60)
    assert any("Suppressed" in line and "203.0.113.9" in line for line in logs)


def test_application_data_reaches_the_session_in_order():
    port, device = online()
    for mid in (10, 11, 12):
        device.send(event(mid, b"n%d" % mid))
    assert [decode(m).message_id for m in device.received] == [1, 10, 11, 12]
    history = list(session_of(port).history)
    assert history[-3:] == ["CON POST E/n10", "CON POST E/n11", "CON POST E/n12"]


def test_sessions_evicted_for_room_page_out_to_the_store_and_come_back():
    port = Port(max_sessions=1)
    port.register()
    port.register(OTHER_ID, key("other device"))
    first = Device(port)
    first.handshake()
    first.send(hello_message())
    second = Device(port, address=("192.0.2.30", 40001), device_key=key("other device"), seed="2")
    second.handshake()  # the table holds one session: the first one is evicted...
    assert len(port.protocol.server.sessions) == 1
    assert session_of(port).closed is not None
    assert first.side.cid in port.store._dtls_sessions  # ...but kept in the store
    first.send(ping(2))  # and it comes back on the device's next record
    assert decode(first.received[-1]) == CoapMessage(ACK, Code.EMPTY, 2)
    assert session_of(port).channel.resumed


def test_work_finishing_after_the_port_stopped_is_ignored():
    port = Port()
    port.register()
    jobs = []

    class Deferring:
        pending = 0

        def run(self, function, *args):
            jobs.append((defer.Deferred(), function))
            return jobs[-1][0]

    port.protocol.executor = Deferring()
    device = Device(port)
    config = ClientConfig(device.key, port.server_key.public_key(), rng=FixedRandom("dev"))
    device.side = ClientHandshake(config, ("127.0.0.1", 5684), device.now)
    device._send(device.side.start(device.now))
    device.pump()
    port.protocol.stopProtocol()
    port.transport.sent = []
    d, function = jobs.pop()
    d.callback(function())
    assert port.transport.sent == [] and port.clock.getDelayedCalls() == []


def test_drop_logs_are_limited_per_address(logs):
    port = Port()
    for _ in range(20):
        for host in ("203.0.113.1", "203.0.113.2"):
            port.protocol.datagramReceived(b"\x16\xfe\xfd" + bytes(20), (host, 7000))
    for host in ("203.0.113.1", "203.0.113.2"):
        lines = [line for line in logs if host in line]
        assert len(lines) == 5  # each address has its own budget: one flood hides no other
