# -*- test-case-name: tests.test_gen3_e2e -*-
"""A virtual Gen3 device (Argon, Boron, P2...): CoAP over DTLS over UDP, as Device OS speaks it.

:class:`Gen3VirtualDevice` is a Twisted ``DatagramProtocol`` built on the
project's own sans-IO DTLS client (:mod:`twisted_spark.dtls.client`): it
handshakes with its EC key against the server's EC public key, sends its
Hello (flags: goodbye, device-initiated describe, OTA v3), its application
describe (block-wise when long), and then serves function calls, variable
reads, signal, pings, events and OTA v3 updates, and can publish,
subscribe, ask the time, ping, say goodbye, sleep and resume its DTLS
session without a handshake (type-253 records), as a waking device does.

Its own CoAP reliability is a :class:`~twisted_spark.coap.reliability.MessageLayer`
(retransmission of its CONs, duplicates of the server's).  The application
(functions, variables, OTA v3 receiver) is :mod:`twisted_spark.sim.gen3_app`.
Crypto runs inline: each simulator process has its own CPU.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from twisted_spark.coap.blockwise import BLOCK1, Block
from twisted_spark.coap.codec import CoapMessage, Code, MessageType, OptionNumber
from twisted_spark.coap.gen3 import DESCRIBE_APPLICATION, Gen3Hello, encode_gen3_hello
from twisted_spark.coap.reliability import MessageLayer
from twisted_spark.dtls import ApplicationData, ClientConfig, ClientHandshake, Closed, resume
from twisted_spark.sim.gen3_app import Gen3Application

__all__ = ["GEN3_FLAGS", "Gen3VirtualDevice"]

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST
PATH, QUERY, MAX_AGE = OptionNumber.URI_PATH, OptionNumber.URI_QUERY, OptionNumber.MAX_AGE
#: Hello flags: goodbye, device-initiated describe, OTA v3.
GEN3_FLAGS = 0x10 | 0x20 | 0x80
_BLOCK = 512


class Gen3VirtualDevice(Gen3Application, DatagramProtocol):
    """One simulated Gen3 device (see the module docstring).

    :param device_id: 24 hex characters.
    :param device_key: its EC P-256 private key.
    :param server_public_key: the server's EC P-256 public key.
    :param server_address: ``(host, port)`` of the server's UDP device port.
    :param clock: ``IReactorTime``.
    :param platform_id: 12 (Argon) unless told.
    :param functions: ``name -> callable(bytes) -> int`` (default: ``brew``, ``negate``).
    :param variables: ``name -> (type, value)`` (default: one of each type).
    :param ota_chunk_size: the chunk size its Hello announces for OTA v3.
    :param rng: DTLS randomness (fixed only to record transcripts).
    :param describe_on_connect: describe itself after its Hello (Hello flag 0x20); if
        not, the server has to ask (``GET d``).
    """

    log = Logger()

    def __init__(self, device_id, device_key, server_public_key, server_address, clock,
                 platform_id=12, functions=None, variables=None, ota_chunk_size=512,
                 max_message_size=960, rng=os.urandom, product_version=1,
                 describe_on_connect=True):
        Gen3Application.__init__(self, functions, variables)
        self.device_id = device_id.lower()
        self.device_key = device_key
        self.server_public_key = server_public_key
        self.server_address = server_address
        self.clock = clock
        self.platform_id = platform_id
        self.ota_chunk_size = ota_chunk_size
        self.max_message_size = max_message_size
        self.product_version = product_version
        self.rng = rng
        self.describe_on_connect = describe_on_connect
        self.side: Any = None  # a ClientHandshake, then a Connection
        self.layer = MessageLayer()
        self.events: list[tuple[str, str | None, int]] = []
        self.signalling = False
        self.closed_reason: str | None = None
        #: Fires with self once the Hello was acknowledged (again after a resume).
        self.online: defer.Deferred = defer.Deferred()
        self._waiting: dict[int, defer.Deferred] = {}  # our CON message id -> its ACK
        self._time: dict[bytes, defer.Deferred] = {}
        self._token = 0
        self._timer: Any = None
        self._saved: Any = None

    # -- connecting ------------------------------------------------------------------

    def startProtocol(self):
        pass

    def connect(self):
        """Handshake, Hello, describe -> Deferred[self] once the Hello is acknowledged."""
        config = ClientConfig(self.device_key, self.server_public_key, rng=self.rng,
                              max_plaintext=self.max_message_size)
        self.online = defer.Deferred()
        self.side = ClientHandshake(config, self.server_address, self.clock.seconds())
        self._handle(self.side.start(self.clock.seconds()))
        return self.online

    def _established(self):
        self.side = self.side.connection
        self._cancel_timer()
        hello = self.request(CON, Code.POST, "h", payload=self.hello_payload())
        hello.addCallback(lambda _: self._went_online())
        hello.addErrback(self._online_failed)

    def _went_online(self):
        if self.describe_on_connect:
            self.describe()
        if not self.online.called:
            self.online.callback(self)

    def _online_failed(self, failure):
        if not self.online.called:
            self.online.errback(failure)

    def hello_payload(self) -> bytes:
        return encode_gen3_hello(Gen3Hello(
            product_id=self.platform_id, product_version=self.product_version,
            flags=GEN3_FLAGS if self.describe_on_connect else GEN3_FLAGS & ~0x20,
            platform_id=self.platform_id, device_id=self.device_id, system_version=6200,
            max_message_size=self.max_message_size, max_binary_size=983040,
            ota_chunk_size=self.ota_chunk_size,
        ))

    def describe(self) -> defer.Deferred:
        """Send the application describe, in 512-byte blocks when longer -> Deferred."""
        body = self.application_describe()
        query = (QUERY, bytes((DESCRIBE_APPLICATION,)))
        if len(body) <= _BLOCK:
            return self.request(CON, Code.POST, "d", payload=body, options=(query,))
        return defer.ensureDeferred(self._describe_blocks(body, query))

    async def _describe_blocks(self, body, query):
        blocks = [body[i:i + _BLOCK] for i in range(0, len(body), _BLOCK)]
        for number, part in enumerate(blocks):
            option = (BLOCK1, Block(number, number < len(blocks) - 1, 5).encode())
            await self.request(CON, Code.POST, "d", payload=part, options=(query, option))

    # -- the device's own requests ------------------------------------------------------

    def request(self, mtype, code, path, payload=b"", options=(), token=b""):
        """Send a request -> Deferred[the ACK] (a NON: Deferred[None] at once)."""
        opts = tuple((PATH, part.encode()) for part in path.split("/") if part) + tuple(options)
        message = CoapMessage(mtype, code, 0, token, tuple(sorted(opts, key=lambda o: o[0])),
                              bytes(payload))
        try:
            mid, data = self.layer.send(message, self.clock.seconds())
        except OverflowError as error:
            return defer.fail(error)
        self.send(data)
        self._arm()
        if mtype != CON:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiting[mid] = d
        return d

    def publish(self, name, data=None, ttl=60, private=True):
        """Publish ``E/<name>`` (``e/`` when not private) -> Deferred[the ACK]."""
        options = () if ttl == 60 else ((MAX_AGE, _uint(ttl)),)
        payload = b"" if data is None else data.encode("utf-8")
        return self.request(CON, Code.POST, ("E/" if private else "e/") + name,
                            payload=payload, options=options)

    def subscribe(self, prefix):
        """``GET e/<prefix>`` -> Deferred[True if accepted]."""
        d = self.request(CON, Code.GET, f"e/{prefix}")
        return d.addCallback(lambda ack: ack.code == Code.EMPTY)

    def ping(self):
        """A CoAP ping -> Deferred[True]."""
        return self.request(CON, Code.EMPTY, "").addCallback(lambda _: True)

    def request_time(self):
        """``GET t`` -> Deferred[Unix seconds]."""
        token = self._next_token()
        d = self.request(CON, Code.GET, "t", token=token)
        return d.addCallback(lambda ack: int.from_bytes(ack.payload[:4], "big"))

    def goodbye(self, sleep_seconds=0):
        """``POST x`` (going to sleep for ``sleep_seconds``) -> Deferred once acknowledged."""
        payload = bytes((0x04,)) + _varint(sleep_seconds) if sleep_seconds else b"\x00"
        return self.request(CON, Code.POST, "x", payload=payload)

    def sleep(self):
        """Keep the DTLS session and go silent (what a sleeping device does)."""
        self._saved = self.side.snapshot()
        self._cancel_timer()
        self.side = None
        self.layer = MessageLayer()

    def wake(self):
        """Resume the saved session without a handshake: a type-253 record with a ping."""
        self.side = resume(self._saved, max_plaintext=self.max_message_size)
        self._saved = None
        return self.ping()

    # -- sending and receiving -----------------------------------------------------------

    def send(self, data: bytes) -> None:
        """One CoAP message in one record (raw: tests use it)."""
        if self.side is None or isinstance(self.side, ClientHandshake):
            return
        self._handle(self.side.send(data, self.clock.seconds()))

    def _next_token(self) -> bytes:
        self._token = (self._token + 1) & 0xFF
        return bytes((self._token,))

    def datagramReceived(self, data, addr):
        if self.side is None:
            return
        self._handle(self.side.datagram_received(data, addr, self.clock.seconds()))
        if isinstance(self.side, ClientHandshake) and self.side.connection is not None:
            self._established()

    def _handle(self, out):
        now = self.clock.seconds()
        pending = list(out.work)
        while pending:
            work = pending.pop(0)
            more = self.side.work_done(work, work.run(), now)
            out.datagrams.extend(more.datagrams)
            out.events.extend(more.events)
            pending.extend(more.work)
        for _, datagram in out.datagrams:
            if self.transport is not None:
                self.transport.write(datagram, self.server_address)
        for _, event in out.events:
            if isinstance(event, ApplicationData):
                self._coap(event.data)
            elif isinstance(event, Closed):
                self.closed_reason = event.reason
                if not self.online.called:
                    self.online.errback(ConnectionError(event.reason))
        if isinstance(self.side, ClientHandshake):
            self._arm_handshake()

    def _coap(self, data: bytes) -> None:
        step = self.layer.received(data, self.clock.seconds())
        for answer in step.send:
            self.send(answer)
        for mid, ack in step.acked:
            d = self._waiting.pop(mid, None)
            if d is not None:
                d.callback(ack)
        for mid in step.reset:
            d = self._waiting.pop(mid, None)
            if d is not None:
                d.errback(ConnectionError(f"the server reset message {mid}"))
        for message in step.deliver:
            try:
                self.serve(message)
            except Exception:
                self.log.failure("Virtual Gen3 device {id} failed on {msg!r}",
                                 id=self.device_id, msg=message)

    def answer(self, request, code=Code.EMPTY, payload=b"", options=()):
        """The piggybacked ACK of a CON request (recorded against its retransmissions)."""
        token = request.token if code != Code.EMPTY else b""
        ack = CoapMessage(ACK, code, request.message_id, token, tuple(options), bytes(payload))
        data = self.layer.respond(request, ack.encode())
        self.send(data)

    # -- timers --------------------------------------------------------------------------

    def _arm(self):
        self._cancel_timer()
        deadline = self.layer.next_timer()
        if deadline is not None:
            self._timer = self.clock.callLater(max(0.0, deadline - self.clock.seconds()),
                                               self._retransmit)

    def _retransmit(self):
        self._timer = None
        step = self.layer.timer_expired(self.clock.seconds())
        for data in step.send:
            self.send(data)
        for mid in step.failed:
            d = self._waiting.pop(mid, None)
            if d is not None:
                d.errback(TimeoutError(f"message {mid} was never acknowledged"))
        self._arm()

    def _arm_handshake(self):
        self._cancel_timer()
        deadline = self.side.next_timer()
        if deadline is not None:
            self._timer = self.clock.callLater(max(0.0, deadline - self.clock.seconds()),
                                               self._handshake_timer)

    def _handshake_timer(self):
        self._timer = None
        if isinstance(self.side, ClientHandshake):
            self._handle(self.side.timer_expired(self.clock.seconds()))

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def stopProtocol(self):
        self._cancel_timer()
        self.stop_application()


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
