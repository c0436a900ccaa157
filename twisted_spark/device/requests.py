# -*- test-case-name: tests.test_device_session -*-
"""The request table of a device session (PROTOCOL.md §5.5-§5.6).

The server numbers its messages with a 16-bit counter and tags each request
with a 1-byte token; the device's answer (a piggy-backed ACK, or an empty ACK
and later a separate response) is matched by token, an empty ACK or a reset
by message id.  Every request is a Deferred with its own clock timeout; a
cancelled one frees its token and timer at once.  :class:`RequestTable` is the
bottom layer of :class:`~twisted_spark.device.session.DeviceSession` (each
layer declares its state as ``__slots__``, so a session stays one small object).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from twisted_spark.coap.codec import CoapError, MessageType
from twisted_spark.coap.payloads import decode_variable, parse_function_return
from twisted_spark.errors import (
    ArgumentTooLong,
    DeviceBusy,
    DeviceNotConnected,
    DeviceRequestFailed,
    DeviceTimeout,
    UnknownVariable,
)

ACK, RST = MessageType.ACK, MessageType.RST

#: What a pending request is; decides how its answer is read.
DESCRIBE, FUNCTION, VARIABLE, SIGNAL, PING, GENERIC = range(6)
KIND_NAMES = ("describe", "function call", "variable read", "signal", "ping", "request")


class Pending:
    """One request waiting for the device's answer.

    A Describe keeps the ``parts`` received so far and the ``waiters`` that
    asked for it while it was on its way.
    """

    __slots__ = ("kind", "deferred", "timer", "mid", "token", "name", "parts", "waiters")

    def __init__(self, kind, deferred, mid, token, name=None):
        self.kind = kind
        self.deferred = deferred
        self.mid = mid
        self.token = token
        self.name = name
        self.timer = None
        self.parts = None
        self.waiters = None


class RequestTable:
    """Message ids, tokens, pending requests and the reading of their answers.

    A Describe's parts go to ``_describe_part`` and ``_complete_describe``
    (:class:`~twisted_spark.device.describe.DescribeAssembly`).
    """

    __slots__ = (
        "device_id",
        "transport",
        "_clock",
        "_settings",
        "_closed",
        "_mid",
        "_token",
        "_reserved",
        "_pending",
        "_by_mid",
    )

    device_id: str
    transport: Any
    _clock: Any
    _settings: Any
    _closed: bool
    _mid: int
    _token: int
    _pending: dict[int, Pending]
    _by_mid: dict[int, Pending]
    _reserved: set[int] | None

    def next_mid(self) -> int:
        """Advance and return the server message id (§5.5)."""
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def _next_token(self) -> int:
        reserved = self._reserved or ()
        for _ in range(256):
            self._token = (self._token + 1) & 0xFF
            if self._token not in self._pending and self._token not in reserved:
                return self._token
        raise DeviceBusy("too many requests in flight")

    def reserve_token(self) -> int:
        """A token no request gets until :meth:`release_token`."""
        token = self._next_token()
        if self._reserved is None:
            self._reserved = set()
        self._reserved.add(token)
        return token

    def release_token(self, token: int) -> None:
        if self._reserved is not None:
            self._reserved.discard(token)
            if not self._reserved:
                self._reserved = None

    def _request(self, kind, build, name=None, timeout=None, token=None):
        """Send ``build(mid, token)`` as a request of ``kind``; its Deferred."""
        if self._closed:
            return defer.fail(DeviceNotConnected(self.device_id))
        if token is None:
            try:
                token = self._next_token()
            except DeviceBusy:
                return defer.fail()
        elif token in self._pending:
            return defer.fail(DeviceBusy(f"token {token} is in use"))
        mid = self.next_mid()
        # A cancelled call (client gone, API timeout) frees its token and timer at
        # once. A Describe is shared by every waiter, so it runs to its end.
        d = defer.Deferred(None if kind == DESCRIBE else lambda _: self._forget(pending))
        pending = Pending(kind, d, mid, token, name)
        if kind == DESCRIBE:
            pending.parts = {}
            pending.waiters = []
        self._pending[token] = pending
        self._by_mid[mid] = pending
        self._arm(pending, timeout or self._settings.request_timeout)
        self.transport.send_coap(build(mid, token))
        return d

    def _arm(self, pending, seconds):
        pending.timer = self._clock.callLater(seconds, self._timed_out, pending)

    def _forget(self, pending):
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if pending.token is not None and self._pending.get(pending.token) is pending:
            del self._pending[pending.token]
        if self._by_mid.get(pending.mid) is pending:
            del self._by_mid[pending.mid]

    def _finish(self, pending, result=None, error=None):
        self._forget(pending)
        targets = [pending.deferred] + (pending.waiters or [])
        for d in targets:
            if d is None:  # a Describe's first waiters, answered from a partial one
                continue
            if error is not None:
                d.errback(error)
            else:
                d.callback(result)

    def _timed_out(self, pending):
        pending.timer = None
        if pending.kind == DESCRIBE and pending.parts:
            # A system part arrived and no application part followed: done.
            self._complete_describe(pending)
            return
        self._finish(
            pending,
            error=DeviceTimeout(f"{self.device_id} did not answer the {KIND_NAMES[pending.kind]}"),
        )

    def _fail_all(self, error):
        pendings = list(self._pending.values()) + [
            p for p in self._by_mid.values() if p.token is None
        ]
        self._pending.clear()
        self._by_mid.clear()
        for pending in pendings:
            self._finish(pending, error=error)

    # -- answers ---------------------------------------------------------------------

    def _response(self, msg):
        """An ACK, a reset or a separate response: finish the request it answers."""
        token = msg.token
        pending = None
        if token:
            pending = self._pending.get(token[0])
        if pending is None:
            pending = self._by_mid.get(msg.message_id) if msg.type in (ACK, RST) else None
            if pending is None:
                return
        if msg.type == RST:
            self._finish(pending, error=DeviceRequestFailed(f"{self.device_id} reset the request"))
            return
        code = msg.code
        if code == 0:
            # Empty ACK: a ping answer, or "separate response follows".
            if pending.kind == PING:
                self._finish(pending, result=True)
            elif self._by_mid.get(msg.message_id) is pending:
                del self._by_mid[msg.message_id]
            return
        if code >= 0x80:
            self._failed_response(pending, code)
            return
        kind = pending.kind
        if kind == DESCRIBE:
            self._describe_part(pending, msg.payload)
        elif kind == FUNCTION:
            try:
                value = parse_function_return(msg.payload[:4])
            except CoapError as e:
                self._finish(pending, error=DeviceRequestFailed(f"bad function return: {e}"))
            else:
                self._finish(pending, result=value)
        elif kind == VARIABLE:
            try:
                value = decode_variable(pending.name, msg.payload)
            except CoapError as e:
                self._finish(pending, error=DeviceRequestFailed(f"bad variable value: {e}"))
            else:
                self._finish(pending, result=value)
        elif kind == SIGNAL or kind == PING:
            self._finish(pending, result=True)
        else:
            self._finish(pending, result=msg)

    def _failed_response(self, pending, code):
        text = f"{code >> 5}.{code & 0x1F:02d}"
        if pending.kind == VARIABLE and code == 0x84:
            error = UnknownVariable(f"the device does not know that variable ({text})")
        elif pending.kind == FUNCTION and code == 0x80:
            error = ArgumentTooLong(f"the device refused the argument ({text})")
        elif pending.kind == GENERIC:
            error = DeviceRequestFailed(text)
            error.code = code
        else:
            error = DeviceRequestFailed(
                f"{self.device_id} answered the {KIND_NAMES[pending.kind]} with {text}"
            )
        self._finish(pending, error=error)
