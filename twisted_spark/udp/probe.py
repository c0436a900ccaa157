# -*- test-case-name: tests.test_udp_probe -*-
"""A stand-in CoAP session for Gen3 devices: acknowledge, reassemble describe, log.

The real CoAP-over-UDP session (functions, variables, events through the
registry and bus) is :mod:`twisted_spark.udp.session`; this one is what the
port runs without it (and what the recorded transcripts were made with):
it keeps a device talking, so the transport can be run alone: it answers every
confirmable message (piggybacking RFC 7959 Block1 answers on describe
blocks, so the device sends the next), drops duplicates, decodes the Hello
and both describe parts, and logs one line per message.  It never sends a
request of its own.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.coap.blockwise import BLOCK1, Block1Assembler, block_option
from twisted_spark.coap.codec import CoapError, CoapMessage, Code, MessageType
from twisted_spark.coap.describe_pb import parse_system_describe
from twisted_spark.coap.gen3 import (
    DESCRIBE_APPLICATION,
    DESCRIBE_SYSTEM,
    describe_kind,
    parse_application_describe,
)
from twisted_spark.coap.reliability import MessageLayer
from twisted_spark.dtls import StateError
from twisted_spark.udp.interfaces import IDatagramSession, IDatagramSessionFactory

__all__ = ["ProbeSession", "ProbeSessionFactory"]

log = Logger()
_HISTORY = 64


def summary(message: CoapMessage) -> str:
    """``CON POST d?\\x01`` style one-liner of a message, for logs and tests."""
    code = {0: "EMPTY", 1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}.get(
        message.code, f"{message.code >> 5}.{message.code & 31:02d}"
    )
    path = "/".join(message.uri_path)
    return f"{MessageType(message.type).name} {code}{' ' + path if path else ''}".rstrip()


@implementer(IDatagramSession)
class ProbeSession:
    """Acknowledges and logs what one device sends; keeps the last describe parts."""

    def __init__(self, channel, hello, clock, layer: MessageLayer | None = None) -> None:
        self.channel = channel
        self.hello = hello
        self.clock = clock
        self.layer = layer or MessageLayer()
        self.blocks = Block1Assembler()
        self.history: deque[str] = deque(maxlen=_HISTORY)
        self.system_describe: Any = None
        self.application_describe: Any = None
        self.closed: str | None = None

    def message_received(self, message: bytes) -> None:
        step = self.layer.received(message, self.clock.seconds())
        for data in step.send:
            self._send(data)
        for reason in step.dropped:
            self.history.append(f"dropped: {reason}")
        for request in step.deliver:
            self.history.append(summary(request))
            answer = self._handle(request)
            if request.type == MessageType.CON:
                self._send(answer)

    def _send(self, data: bytes) -> None:
        """Send, or log why not (a message over the device's declared maximum
        size, which a Hello may set as low as one byte, or a closed session)."""
        try:
            self.channel.send(data)
        except (ValueError, StateError) as error:
            log.warn("Gen3 device {device_id}: a message was not sent: {why}",
                     device_id=self.channel.device_id, why=str(error))

    def _handle(self, request: CoapMessage) -> bytes:
        device = self.channel.device_id
        if request.code == Code.POST and request.uri_path == ["d"]:
            return self._describe(request)
        log.info(
            "Gen3 device {device_id}: {message} ({length} bytes of payload)",
            device_id=device,
            message=summary(request),
            length=len(request.payload),
        )
        if request.type != MessageType.CON:
            return b""
        return self.layer.acknowledge(request)

    def _describe(self, request: CoapMessage) -> bytes:
        now = self.clock.seconds()
        try:
            kind = describe_kind(request)
            block = block_option(request, BLOCK1)
        except CoapError as error:
            return self._answer(request, Code.BAD_REQUEST, f"bad describe request: {error}")
        body: bytes | None
        code: int
        if block is None:
            body, code, problem = bytes(request.payload), Code.CHANGED, None
        else:
            result = self.blocks.add(kind, block, request.payload, now)
            body, code, problem = result.body, result.code, result.problem
        if problem is not None:
            return self._answer(request, code, f"describe block refused: {problem}")
        if body is not None:
            self._describe_complete(kind, body)
        if request.type != MessageType.CON:
            return b""  # a NON describe is taken, not acknowledged (there is no ACK to give)
        options = () if block is None else ((BLOCK1, block.encode()),)
        ack = CoapMessage(MessageType.ACK, code, request.message_id, request.token, options)
        return self.layer.respond(request, ack.encode())

    def _describe_complete(self, kind: int, body: bytes) -> None:
        device = self.channel.device_id
        try:
            if kind & DESCRIBE_SYSTEM:
                self.system_describe = parse_system_describe(body)
                modules = ", ".join(
                    f"{m.type_name} {m.index} v{m.version}" for m in self.system_describe.modules
                )
                log.info(
                    "Gen3 device {device_id}: system describe, {length} bytes: {modules}",
                    device_id=device,
                    length=len(body),
                    modules=modules or "no modules",
                )
            elif kind & DESCRIBE_APPLICATION:
                self.application_describe = parse_application_describe(body)
                log.info(
                    "Gen3 device {device_id}: application describe: functions {functions}, "
                    "variables {variables}",
                    device_id=device,
                    functions=list(self.application_describe.functions),
                    variables=self.application_describe.variables,
                )
            self.history.append(f"describe {kind} complete ({len(body)} bytes)")
        except CoapError as error:
            log.warn(
                "Gen3 device {device_id}: describe part {kind} unreadable: {error}",
                device_id=device,
                kind=kind,
                error=str(error),
            )
            self.history.append(f"describe {kind} unreadable: {error}")

    def _answer(self, request: CoapMessage, code: int, problem: str) -> bytes:
        log.warn("Gen3 device {device_id}: {problem}", device_id=self.channel.device_id,
                 problem=problem)
        self.history.append(problem)
        if request.type != MessageType.CON:
            return b""
        return self.layer.acknowledge(request, code)

    def address_changed(self, address) -> None:
        self.history.append(f"moved to {address[0]}:{address[1]}")

    def connection_lost(self, reason: str) -> None:
        self.closed = reason
        self.history.append(f"connection lost: {reason}")


@implementer(IDatagramSessionFactory)
class ProbeSessionFactory:
    """Makes :class:`ProbeSession` objects; keeps the latest one per device (bounded)."""

    def __init__(self, clock, max_devices: int = 1000) -> None:
        self.clock = clock
        self.max_devices = max_devices
        self.sessions: dict[str, ProbeSession] = {}

    def session_started(self, channel, hello, first_message) -> ProbeSession:
        session = ProbeSession(channel, hello, self.clock)
        self.sessions.pop(channel.device_id, None)
        self.sessions[channel.device_id] = session
        while len(self.sessions) > self.max_devices:
            del self.sessions[next(iter(self.sessions))]
        session.message_received(first_message)
        return session

    def close_all(self, reason: str) -> None:
        """Nothing to stop: probe sessions hold no timers."""
