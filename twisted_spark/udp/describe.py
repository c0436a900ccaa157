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
:meth:`Gen3Describe.describe` waiting for it.  A caller finding none cached
(the device had not described itself yet, or resumed with state the
server no longer has) asks the device: ``CON GET d?2`` with a one-byte
token; the device acknowledges and answers 2.05 separately, in Block2
blocks with an ETag when the describe is longer than its block size
(``communication/src/description.cpp``; the server must ask for the
following blocks in the device's own block size, which the first block
gives).  Whichever describe completes first answers the callers.
:class:`Gen3Describe` is the layer of :class:`~twisted_spark.udp.session.Gen3Session`
(the layer between it and the TCP session).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from twisted_spark.coap.blockwise import (
    BLOCK1,
    BLOCK2,
    Block,
    Block1Assembler,
    Block2Collector,
    block_option,
)
from twisted_spark.coap.codec import CoapError, CoapMessage, Code, MessageType, OptionNumber
from twisted_spark.coap.describe_pb import parse_system_describe
from twisted_spark.coap.gen3 import (
    DESCRIBE_APPLICATION,
    DESCRIBE_SYSTEM,
    describe_kind,
    parse_application_describe,
)
from twisted_spark.device.requests import GENERIC
from twisted_spark.device.session import DeviceSession
from twisted_spark.errors import DeviceNotConnected, DeviceTimeout

__all__ = ["Gen3Describe"]

log = Logger()


class Gen3Describe(DeviceSession):
    """The device-initiated describe of one Gen3 session (a device session layer)."""

    __slots__ = ("system_describe", "_blocks", "_describe_waiters", "_describe_timer",
                 "_asking")

    system_describe: Any
    _blocks: Block1Assembler | None
    _describe_waiters: list[defer.Deferred]

    def _init_describe(self) -> None:
        self.system_describe = None
        self._blocks = None
        self._describe_waiters = []
        self._describe_timer = None
        self._asking = False

    # -- what callers use ------------------------------------------------------------

    def describe(self):
        """Functions and variables: the cached describe, or the next one (asked for).

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
        if not self._asking:
            self._asking = True
            asked = defer.ensureDeferred(self._ask_describe())
            asked.addErrback(self._ask_failed)
        return d

    async def _ask_describe(self) -> None:
        """``GET d?2``, block by block if the device answers with Block2."""
        collector: Block2Collector | None = None
        block: Block | None = None
        try:
            while True:
                answer = await self._request(GENERIC, partial(_describe_request, block))
                if self._describe is not None and collector is None:
                    return  # the device's own describe came first
                first = block_option(answer, BLOCK2)
                if collector is None:
                    collector = Block2Collector(first.size if first is not None else 512)
                body = collector.add(answer)
                if body is not None:
                    break
                block = collector.request_block()
        finally:
            self._asking = False
        app = parse_application_describe(body)
        self._application_described(app.functions, app.variables)

    def _ask_failed(self, failure) -> None:
        """The device did not give its describe when asked: its waiters learn why now."""
        log.info("Gen3 device {device_id}: asking for its describe failed: {why}",
                 device_id=self.device_id, why=failure.getErrorMessage())
        if self._describe is None:
            self._stop_describe_timer()
            waiters, self._describe_waiters = self._describe_waiters, []
            for d in waiters:
                d.errback(failure.value)

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


def _describe_request(block: Block | None, message_id: int, token: int) -> bytes:
    """``CON GET d?2`` [Block2] with a one-byte token: the application describe, asked for."""
    options: list[tuple[int, bytes]] = [
        (OptionNumber.URI_PATH, b"d"), (OptionNumber.URI_QUERY, bytes((DESCRIBE_APPLICATION,)))]
    if block is not None:
        options.append((BLOCK2, block.encode()))
    return CoapMessage(MessageType.CON, Code.GET, message_id, bytes((token,)),
                       tuple(options)).encode()
