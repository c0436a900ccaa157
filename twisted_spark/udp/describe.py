# -*- test-case-name: tests.test_udp_session -*-
"""A Gen3 device's describe: it sends it, block by block; callers wait for it.

Over DTLS, Device OS describes itself unasked after its Hello (Hello flag
0x20): ``POST d`` with a one-byte Uri-Query naming the part (1 system,
protobuf; 2 application, JSON), in RFC 7959 Block1 blocks when it is long
(:mod:`twisted_spark.coap.blockwise`).  Each block is answered with 2.31
Continue, the last with 2.04 Changed, echoing its Block1 option; a refused
block gets the RFC's error code and the device starts again.

The application part is what the API needs (functions, variables): it is
cached, stored through the registry when it changed, and answers every
:meth:`Gen3Describe.describe` waiting for it.  Nobody asks the device: a
caller waits up to the request timeout for the device's own describe.
:class:`Gen3Describe` is the layer of :class:`~twisted_spark.udp.session.Gen3Session`
(the layer between it and the TCP session).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from twisted_spark.coap.blockwise import BLOCK1, Block1Assembler, block_option
from twisted_spark.coap.codec import CoapError, CoapMessage, Code, MessageType
from twisted_spark.coap.describe_pb import parse_system_describe
from twisted_spark.coap.gen3 import (
    DESCRIBE_APPLICATION,
    DESCRIBE_SYSTEM,
    describe_kind,
    parse_application_describe,
)
from twisted_spark.device.session import DeviceSession
from twisted_spark.errors import DeviceNotConnected, DeviceTimeout

__all__ = ["Gen3Describe"]

log = Logger()


class Gen3Describe(DeviceSession):
    """The device-initiated describe of one Gen3 session (a device session layer)."""

    __slots__ = ("system_describe", "_blocks", "_describe_waiters", "_describe_timer")

    system_describe: Any
    _blocks: Block1Assembler | None
    _describe_waiters: list[defer.Deferred]

    def _init_describe(self) -> None:
        self.system_describe = None
        self._blocks = None
        self._describe_waiters = []
        self._describe_timer = None

    # -- what callers use ------------------------------------------------------------

    def describe(self):
        """Functions and variables: the cached describe, or the device's next one.

        Fails with DeviceTimeout when none arrives within the request timeout.
        """
        if self._describe is not None:
            return defer.succeed(self._describe)
        if self._closed:
            return defer.fail(DeviceNotConnected(self.device_id))
        d: defer.Deferred = defer.Deferred()
        self._describe_waiters.append(d)
        if self._describe_timer is None:
            self._describe_timer = self._clock.callLater(
                self._settings.request_timeout, self._describe_timed_out
            )
        return d

    def final_describe(self):
        """The same as :meth:`describe`: a Gen3 application part is always whole."""
        return self.describe()

    # -- what the device sends --------------------------------------------------------

    def _device_describe(self, request: CoapMessage) -> None:
        now = self._clock.seconds()
        try:
            kind = describe_kind(request)
            block = block_option(request, BLOCK1)
        except CoapError as error:
            self._describe_refused(request, Code.BAD_REQUEST, f"bad describe request: {error}")
            return
        body: bytes | None
        code: int
        problem: str | None
        if block is None:
            body, code, problem = bytes(request.payload), Code.CHANGED, None
        else:
            if self._blocks is None:
                self._blocks = Block1Assembler()
            result = self._blocks.add(kind, block, request.payload, now)
            body, code, problem = result.body, result.code, result.problem
            if not len(self._blocks):
                self._blocks = None  # nothing under way: keep idle sessions small
        if problem is not None:
            self._describe_refused(request, code, f"describe block refused: {problem}")
            return
        if request.type == MessageType.CON:
            options = () if block is None else ((BLOCK1, block.encode()),)
            ack = CoapMessage(MessageType.ACK, code, request.message_id, request.token, options)
            self.transport.send_coap(ack.encode())
        if body is not None:
            self._describe_complete(kind, body)

    def _describe_refused(self, request: CoapMessage, code: int, problem: str) -> None:
        log.info("Gen3 device {device_id}: {problem}", device_id=self.device_id, problem=problem)
        if request.type == MessageType.CON:
            ack = CoapMessage(MessageType.ACK, code, request.message_id, request.token)
            self.transport.send_coap(ack.encode())

    def _describe_complete(self, kind: int, body: bytes) -> None:
        try:
            if kind & DESCRIBE_SYSTEM:
                self.system_describe = parse_system_describe(body)
            if kind & DESCRIBE_APPLICATION:
                app = parse_application_describe(body)
                self._application_described(app.functions, app.variables)
        except CoapError as error:
            log.info("Gen3 device {device_id}: describe part {kind} unreadable: {error}",
                     device_id=self.device_id, kind=kind, error=str(error))

    def _application_described(self, functions, variables) -> None:
        described = {"functions": tuple(functions), "variables": dict(variables)}
        if described != self._describe:
            self._describe = described
            self._sink.save(self.device_id, functions=described["functions"],
                            variables=described["variables"])
        self._stop_describe_timer()
        waiters, self._describe_waiters = self._describe_waiters, []
        for d in waiters:
            d.callback(described)

    def invalidate_describe(self) -> None:
        """Forget the cached describe (new firmware: the device will send its own)."""
        self._describe = None

    # -- waiting ---------------------------------------------------------------------------

    def _describe_timed_out(self) -> None:
        self._describe_timer = None
        waiters, self._describe_waiters = self._describe_waiters, []
        for d in waiters:
            d.errback(DeviceTimeout(f"{self.device_id} sent no describe"))

    def _fail_describe_waiters(self, reason: str) -> None:
        self._stop_describe_timer()
        waiters, self._describe_waiters = self._describe_waiters, []
        for d in waiters:
            d.errback(DeviceNotConnected(f"{self.device_id} disconnected ({reason})"))

    def _stop_describe_timer(self) -> None:
        if self._describe_timer is not None and self._describe_timer.active():
            self._describe_timer.cancel()
        self._describe_timer = None
