# -*- test-case-name: tests.test_fuzz_corpus -*-
"""A Gen3 device session on the UDP port after a correct DTLS handshake.

Once per process a device completes a real handshake with the port of
:func:`~twisted_spark.udp.port.build_gen3_protocol` and is admitted by its
Hello; the port saves the DTLS session in the store and the device keeps
its side.  Every input then starts a new port on that store (a server
restart) and the device resumes the saved session from a new address with
type-253 records, as a sleeping Gen3 device does, so each input runs from
the same state without a handshake.  The input's messages (cut at the
separator) are CoAP plaintexts the device encrypts with its session keys:
the fuzzer reaches the Hello gate and the Gen3 CoAP session behind the
record layer (as the composition root wires it: events, subscriptions,
describe, time, OTA answers).  The first byte: bit 0 set sends a fresh
Hello first; bit 1 set puts the stand-in probe session (``udp/probe.py``)
behind the gate instead.

Contract: nothing is logged as an internal error, no timer outlives the
port, and the port sends a bounded amount per datagram.
"""

from __future__ import annotations

from functools import cache

from twisted.internet import defer
from twisted.internet.task import Clock

from fuzz.harness import (
    ContractBroken,
    FailureLog,
    FixedRandom,
    constant_random,
    ec_key,
    split,
)
from twisted_spark.coap.codec import CoapMessage, Code, MessageType, OptionNumber
from twisted_spark.coap.gen3 import Gen3Hello, encode_gen3_hello
from twisted_spark.config import Settings
from twisted_spark.crypto.ec_keys import ec_public_key_der
from twisted_spark.dtls import ClientConfig, ClientHandshake, resume
from twisted_spark.dtls.errors import StateError
from twisted_spark.events.bus import EventBus
from twisted_spark.models import DeviceRecord
from twisted_spark.registry import DeviceRegistry
from twisted_spark.store.memory import MemoryStore
from twisted_spark.udp.port import build_gen3_protocol
from twisted_spark.udp.sessions import Gen3SessionFactory

FAILURES = FailureLog().start()
DEVICE_ID = "12ab34cd56ef7890a1b2c3d4"
SERVER = ("127.0.0.1", 5684)
FIRST, LATER = ("192.0.2.20", 40000), ("192.0.2.20", 40001)
MAX_SENT_PER_DATAGRAM = 8192


class _Inline:
    """Crypto work at once (``IExecutor``)."""

    pending = 0

    def run(self, function, *args):
        return defer.maybeDeferred(function, *args)


class _Transport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, object]] = []

    def write(self, data, address) -> None:
        self.sent.append((data, address))


def hello(message_id: int) -> bytes:
    payload = encode_gen3_hello(Gen3Hello(12, 3, 0x36, 12, DEVICE_ID, 6200, 1152, 983040, 512))
    return CoapMessage(MessageType.CON, Code.POST, message_id, b"",
                       ((OptionNumber.URI_PATH, b"h"),), payload).encode()


def _port(store: MemoryStore, clock: Clock, probe: bool = False):
    """The UDP port as the composition root builds it (the Gen3 session behind the
    Hello gate), or with the stand-in probe session when ``probe``."""
    sessions = None
    if not probe:
        bus = EventBus()
        registry = DeviceRegistry(clock, bus=bus, store=store)
        sessions = Gen3SessionFactory(store, registry, bus, Settings(), clock=clock,
                                      random_bytes=constant_random)
    port = build_gen3_protocol(ec_key("server"), store, clock=clock, executor=_Inline(),
                               rng=FixedRandom("fuzz/udp"), sessions=sessions)
    transport = _Transport()
    port.makeConnection(transport)
    return port, transport


def _run_work(side, out, now):
    pending = list(out.work)
    datagrams = list(out.datagrams)
    while pending:
        work = pending.pop(0)
        more = side.work_done(work, work.run(), now)
        datagrams += more.datagrams
        pending += more.work
    return datagrams


@cache
def _saved():
    """(store tables after the handshake, the device's saved session, the clock's time)."""
    clock = Clock()
    clock.advance(1_700_000_000)
    store = MemoryStore()
    device_key = ec_key("device")
    store._devices[DEVICE_ID] = DeviceRecord(device_id=DEVICE_ID,
                                             public_key=ec_public_key_der(device_key))
    port, transport = _port(store, clock)
    side = ClientHandshake(ClientConfig(device_key, ec_key("server").public_key(),
                                        rng=FixedRandom("fuzz/device")), SERVER, clock.seconds())
    outgoing = _run_work(side, side.start(clock.seconds()), clock.seconds())
    for _ in range(10):
        for _, datagram in outgoing:
            port.datagramReceived(datagram, FIRST)
        answers, transport.sent = transport.sent, []
        outgoing = []
        for data, _ in answers:
            outgoing += _run_work(side, side.datagram_received(data, SERVER, clock.seconds()),
                                  clock.seconds())
    connection = side.connection
    if connection is None:
        raise RuntimeError("the fuzz device's handshake did not complete")
    for _, datagram in connection.send(hello(1), clock.seconds()).datagrams:
        port.datagramReceived(datagram, FIRST)
    port.stopProtocol()
    tables = {name: dict(getattr(store, name)) for name in ("_devices", "_dtls_sessions")}
    if not tables["_dtls_sessions"]:
        raise RuntimeError("the port saved no DTLS session")
    return tables, connection.snapshot(), clock.seconds()


def one_input(data: bytes) -> None:
    FAILURES.clear()
    if not data:
        return
    tables, saved, start = _saved()
    clock = Clock()
    clock.advance(start + 5)
    store = MemoryStore()
    for name, rows in tables.items():
        getattr(store, name).update(rows)
    timers = 0
    port, transport = _port(store, clock, probe=bool(data[0] & 2))
    port.startProtocol()
    timers = len(clock.getDelayedCalls())
    device = resume(saved)
    messages = split(data[1:])
    if data[0] & 1:
        messages.insert(0, hello(2))
    for message in messages:
        try:
            out = device.send(message[:900], clock.seconds())
        except StateError:
            break
        for _, datagram in out.datagrams:
            port.datagramReceived(datagram, LATER)
        sent = sum(len(d) for d, _ in transport.sent)
        if sent > MAX_SENT_PER_DATAGRAM:
            raise ContractBroken(f"{sent} bytes sent for one datagram")
        for answer, _ in transport.sent:
            device.datagram_received(answer, SERVER, clock.seconds())
        transport.sent = []
        clock.advance(0.5)
    for _ in range(4):
        clock.advance(61)
    port.stopProtocol()
    FAILURES.check()
    left = len(clock.getDelayedCalls())
    if left > timers:
        raise ContractBroken(f"{left - timers} timers outlived the port")
