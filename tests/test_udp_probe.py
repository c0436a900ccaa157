"""The stand-in CoAP session and the session persistence layer, each on its own."""

import json

import pytest_twisted
from dtls_harness import key
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from twisted_spark.coap.blockwise import BLOCK1, CONTINUE, REQUEST_ENTITY_INCOMPLETE, Block
from twisted_spark.coap.codec import CoapMessage, Code, MessageType, decode
from twisted_spark.crypto.ec_keys import ec_public_key_der
from twisted_spark.dtls import SessionState
from twisted_spark.models import DeviceRecord, DtlsSessionRecord
from twisted_spark.store import MemoryStore
from twisted_spark.udp.persistence import LookupRefused, SessionPersistence
from twisted_spark.udp.probe import ProbeSession

CON, NON = MessageType.CON, MessageType.NON


class FakeChannel:
    device_id = "0123456789abcdef01234567"
    address = ("192.0.2.1", 5684)
    max_message_size = 1152
    resumed = False

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(decode(message))

    def close(self, reason):
        raise AssertionError("the probe never closes")


def describe_block(mid, num, more, payload, kind=1):
    options = ((11, b"d"), (15, bytes((kind,))), (BLOCK1, Block(num, more, 6).encode()))
    return CoapMessage(CON, Code.POST, mid, bytes((mid,)), options, payload).encode()


def probe():
    return ProbeSession(FakeChannel(), None, Clock())


def test_block_wise_describe_is_answered_block_by_block():
    session = probe()
    module = bytes.fromhex("0a0408021800")  # one bootloader module, version 0
    body = module + b"\x7a\x86\x08" + bytes(1030)  # then field 15, 1030 bytes (skipped)
    session.message_received(describe_block(1, 0, True, body[:1024]))
    session.message_received(describe_block(2, 1, False, body[1024:]))
    first, last = session.channel.sent
    assert (first.code, first.message_id, first.token) == (CONTINUE, 1, b"\x01")
    assert first.option_values(BLOCK1) == [Block(0, True, 6).encode()]
    assert (last.code, last.option_values(BLOCK1)) == (Code.CHANGED, [Block(1, False, 6).encode()])
    assert [m.type_name for m in session.system_describe.modules] == ["bootloader"]


class TinyChannel(FakeChannel):
    """A device whose Hello declared a maximum message size of one byte."""

    max_message_size = 1

    def send(self, message):
        if len(message) > self.max_message_size:
            raise ValueError(f"a {len(message)}-byte message is over the device's 1")
        super().send(message)


def test_an_answer_over_the_devices_maximum_size_is_logged_not_raised():
    """Found by fuzz/targets/udp_session.py: the ValueError of such a send
    escaped the probe and failed the port's handling of the datagram."""
    session = ProbeSession(TinyChannel(), None, Clock())
    with capturedLogs() as events:
        session.message_received(describe_block(1, 0, False, b"{}", kind=2))
    assert session.channel.sent == []
    assert any("was not sent" in formatEvent(event) and "over the device's 1"
               in formatEvent(event) for event in events)


def test_an_out_of_order_block_gets_4_08_and_is_logged():
    session = probe()
    session.message_received(describe_block(1, 1, False, b"{}", kind=2))
    [answer] = session.channel.sent
    assert answer.code == REQUEST_ENTITY_INCOMPLETE and answer.message_id == 1
    assert "expected block 0" in session.history[-1]


def test_an_unreadable_describe_is_acknowledged_and_logged():
    session = probe()
    options = ((11, b"d"), (15, b"\x02"))
    session.message_received(CoapMessage(CON, Code.POST, 4, b"\x04", options, b"{nope").encode())
    assert session.channel.sent[0].code == Code.CHANGED
    assert "unreadable" in session.history[-1]


def test_non_messages_are_not_answered_and_duplicates_not_logged_twice():
    session = probe()
    event = CoapMessage(NON, Code.POST, 9, b"", ((11, b"E"), (11, b"x")), b"1").encode()
    session.message_received(event)
    session.message_received(event)
    assert session.channel.sent == []
    assert list(session.history) == ["NON POST E/x", "dropped: duplicate NON message id 9 (still "
                                     "being handled)"]


def test_a_non_describe_is_read_but_not_answered():
    """Found by fuzz/e2e.py (and fuzz/targets/udp_session.py): the probe answered a
    NON describe with an ACK, which the message layer refuses with a ValueError
    that escaped to the UDP port."""
    session = probe()
    options = ((11, b"d"), (15, b"\x02"))
    session.message_received(CoapMessage(NON, Code.POST, 5, b"\x05", options,
                                         b'{"f":["bump"],"v":{"counter":2}}').encode())
    assert session.channel.sent == []
    assert session.application_describe.functions == ("bump",)


# -- persistence -------------------------------------------------------------------------------


def saved_state(cid=b"ABCDEFGH", device_id="0123456789abcdef01234567", peer_key=None):
    return SessionState(
        role="server",
        cid=cid,
        master_secret=bytes(48),
        client_random=bytes(32),
        server_random=bytes(32),
        peer_public_key=peer_key or ec_public_key_der(key("device")),
        device_id=device_id,
        last_seen=1000.0,
    )


@pytest_twisted.ensureDeferred
async def test_saved_sessions_expire_a_lifetime_after_last_seen_and_load_back():
    store = MemoryStore()
    store._devices["0123456789abcdef01234567"] = DeviceRecord(
        "0123456789abcdef01234567", public_key=ec_public_key_der(key("device"))
    )
    persistence = SessionPersistence(store, store, idle_timeout=500.0)
    await persistence.save(saved_state(), now=1200.0)
    record = store._dtls_sessions[b"ABCDEFGH"]
    assert (record.expires_at, record.updated_at) == (1500.0, 1200.0)
    state, why = await persistence.lookup(b"ABCDEFGH", now=1400.0)
    assert why == "resumed" and state.to_dict() == saved_state().to_dict()
    assert await persistence.lookup(b"ABCDEFGH", now=1500.0) == (None, "no saved session")


@pytest_twisted.ensureDeferred
async def test_unusable_saved_sessions_are_deleted_and_remembered_as_unknown():
    store = MemoryStore()
    persistence = SessionPersistence(store, store, idle_timeout=500.0)
    wrong_role = dict(saved_state().to_dict(), role="client")
    for cid, text in ((b"corrupt!", "{not json"), (b"ABCDEFGH", json.dumps(wrong_role))):
        await store.save_dtls_session(DtlsSessionRecord(cid, text, 9e9))
        state, why = await persistence.lookup(cid, now=0.0)
        assert state is None and "the saved session is unusable" in why
        assert cid not in store._dtls_sessions
        try:
            persistence.lookup(cid, now=1.0)
        except LookupRefused as refused:
            assert "has no saved session" in str(refused)
        else:
            raise AssertionError("the negative answer was not remembered")
