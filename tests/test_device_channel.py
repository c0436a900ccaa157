"""The session's two low-level seams: the transport it runs on (ISessionTransport)
and the channel the flasher drives (IDeviceChannel)."""

from __future__ import annotations

from device_fixtures import ListBus, failure_of, result
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_spark.coap import from_device, to_device
from twisted_spark.coap.codec import decode
from twisted_spark.coap.kinds import MessageKind
from twisted_spark.coap.payloads import Hello
from twisted_spark.config import Settings
from twisted_spark.device.session import DeviceSession
from twisted_spark.errors import DeviceBusy
from twisted_spark.interfaces import IDeviceChannel, ISessionTransport
from twisted_spark.registry import DeviceRegistry

DEVICE = "1a118ad1c886d54240ce4b17"


@implementer(ISessionTransport)
class MessageTransport:
    """A transport of whole CoAP messages, as CoAP over DTLS will be."""

    remote_ip = "192.0.2.7"

    def __init__(self):
        self.sent = []
        self.closed = None
        self.session = None

    def send_coap(self, message):
        self.sent.append(decode(message))

    send_answer = send_coap

    def close(self, reason, error=False):
        self.closed = reason
        self.session.connection_lost(reason)


def session_on(transport, recv_mid=None, **settings):
    clock = Clock()
    registry = DeviceRegistry(clock, bus=ListBus())
    session = DeviceSession(
        transport, DEVICE, "alice", Hello(0xFFFF, 0xFFFF, 0, 6),
        clock=clock, sink=registry, bus=ListBus(), settings=Settings(**settings),
        recv_mid=recv_mid, server_mid=0x100,
    )
    transport.session = session
    registry.register(session)
    return session


def test_any_transport_of_whole_messages_carries_a_session():
    transport = MessageTransport()
    verifyObject(ISessionTransport, transport)
    session = session_on(transport)
    assert session.remote_ip == "192.0.2.7"
    d = session.signal(True)
    request = transport.sent[-1]
    session.message_received(decode(from_device.signal_ack(request.message_id, request.token)))
    assert result(d) is True
    session.disconnect("done")
    assert transport.closed == "done" and not session.connected


def test_without_recv_mid_the_session_leaves_message_ids_to_its_transport():
    """A datagram transport deduplicates and orders itself; the TCP counter
    check (§5.5) is the TCP transport's rule, chosen by passing recv_mid."""
    transport = MessageTransport()
    session = session_on(transport)
    for mid in (7, 3, 900):
        session.message_received(decode(to_device.ping(mid)))  # a device's ping, any id
    assert [m.message_id for m in transport.sent] == [7, 3, 900]
    assert transport.closed is None


def test_with_recv_mid_a_wrong_counter_closes():
    transport = MessageTransport()
    session = session_on(transport, recv_mid=10)
    session.message_received(decode(to_device.ping(11)))
    assert transport.closed is None
    session.message_received(decode(to_device.ping(13)))
    assert transport.closed == "bad message counter: expected 0x000c, got 0x000d"


def test_update_messages_are_acknowledged_then_handed_over():
    transport = MessageTransport()
    session = session_on(transport)
    assert verifyObject(IDeviceChannel, session)
    seen = []

    def handler(kind, msg):
        seen.append((kind, msg.message_id, len(transport.sent)))

    missed = decode(from_device.chunk_missed(40, [3]))
    session.message_received(missed)  # no handler: only acknowledged
    assert [(m.type, m.message_id) for m in transport.sent] == [(2, 40)]
    session.set_update_handler(handler)
    session.message_received(decode(from_device.chunk_missed(41, [4])))
    session.message_received(decode(from_device.device_update_done(42)))  # NON: no ACK
    assert seen == [(MessageKind.CHUNK_MISSED, 41, 2), (MessageKind.UPDATE_DONE, 42, 2)]
    session.set_update_handler(None)
    session.message_received(decode(from_device.device_update_done(43)))
    assert len(seen) == 2


def test_a_reserved_token_is_skipped_until_released():
    transport = MessageTransport()
    session = session_on(transport)
    token = session.reserve_token()
    begin = session.send_request(lambda mid, tok: to_device.update_begin(mid, tok), token=token)
    assert transport.sent[-1].token == bytes([token])
    session.message_received(decode(from_device.coded_ack(transport.sent[-1].message_id,
                                                          token, 0x44)))
    assert result(begin).code == 0x44
    # Answered, yet still reserved: the next 255 requests get other tokens.
    seen = set()
    for _ in range(255):
        session.send_request(lambda mid, tok: to_device.update_done(mid, tok))
        seen.add(transport.sent[-1].token[0])
    assert token not in seen and len(seen) == 255
    assert failure_of(session.send_request(lambda mid, tok: b"")).check(DeviceBusy)
    session.release_token(token)
    assert session.reserve_token() == token  # the only free one


def test_send_message_takes_the_next_message_id_and_waits_for_nothing():
    transport = MessageTransport()
    session = session_on(transport)
    session.send_message(lambda mid: to_device.chunk(mid, 9, 0, b"abc", 0))
    session.send_message(lambda mid: to_device.chunk(mid, 9, 0, b"def", 1))
    assert [m.message_id for m in transport.sent] == [0x101, 0x102]
    assert session._pending == {} and session._by_mid == {}
