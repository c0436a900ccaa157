# -*- test-case-name: tests.test_api_site -*-
"""The HTTP side of the API port: Site, channel and request classes.

twisted.web's defaults suit a trusted network; these classes make the port
safe to expose:

* :class:`SparkRequest` asks a *body planner* (``SparkAPI.body_plan``) for
  the limits of its route as soon as the request head is complete, then keeps
  at most that many body bytes while the body arrives — a 4 MB body to a
  route with a 64 KiB limit is never buffered, and a body that cannot carry
  credentials to a route that needs them is not kept at all.  twisted.web's
  own form parsing of POST bodies into ``request.args`` is switched off: the
  API parses each body once, itself, after authentication.
* :class:`SparkChannel` closes a connection whose request head (request line
  and headers) is not complete ``head_timeout`` seconds after its first byte
  (slow-header trickle); the Site's idle timeout closes connections that say
  nothing.  Neither fires while a request is being answered, so event streams
  live as long as they need.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from twisted.logger import Logger
from twisted.web import server
from twisted.web.http import HTTPChannel

from twisted_spark.api.errors import json_bytes

log = Logger()
access_log = Logger(namespace="twisted_spark.api.access")


@dataclass(frozen=True)
class BodyPlan:
    """What to do with the body of one request, decided from its head.

    :ivar limit: bytes the route accepts; a longer body is answered 413.
    :ivar keep: bytes worth buffering (``<= limit``); beyond that the body is
        dropped as it arrives (the request cannot be authenticated from it).
    """

    limit: int
    keep: int


#: The plan for requests that read no body (unknown route, GET...): keep nothing.
NO_BODY = BodyPlan(0, 0)


class SparkRequest(server.Request):
    """A request that knows its route's body limits from the moment its head is in.

    ``planner(method, uri, headers) -> BodyPlan`` is set by :func:`request_factory`;
    without one the plan is :data:`NO_BODY` (no body is kept).

    :ivar body_limit: the route's limit (:attr:`BodyPlan.limit`).
    :ivar body_too_large: more than ``body_limit`` bytes were announced or sent.
    :ivar body_dropped: the body was not kept (over :attr:`BodyPlan.keep`);
        it must not be parsed — the request is refused before that.
    """

    planner = None
    plan = NO_BODY
    body_too_large = False
    body_dropped = False
    _body_received = 0

    def __init__(self, channel, *args, **kwargs):
        kwargs["parsePOSTFormSubmission"] = False  # the API parses bodies, once
        super().__init__(channel, *args, **kwargs)
        self.started = time.monotonic()  # for the structured access log

    @property
    def body_limit(self) -> int:
        return self.plan.limit

    def gotLength(self, length):
        # The channel has the request line by now; method and uri are set on
        # the request itself only once the whole body is in.
        method = getattr(self.channel, "_command", b"")
        uri = getattr(self.channel, "_path", b"")
        if self.planner is not None:
            self.plan = self.planner(method, uri, self.requestHeaders)
        if length is not None and length > self.plan.keep:
            self._note_excess(length)
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        self._body_received += len(data)
        if self._body_received <= self.plan.keep:
            super().handleContentChunk(data)
            return
        if not (self.body_dropped or self.body_too_large):
            self.content.seek(0)  # what was kept is of no use now
            self.content.truncate()
        self._note_excess(self._body_received)

    def _note_excess(self, size: int) -> None:
        if size > self.plan.limit:
            self.body_too_large = True
        else:
            self.body_dropped = True


def request_factory(planner):
    """A :class:`SparkRequest` class asking ``planner`` for each request's limits."""
    return type("PlannedRequest", (SparkRequest,), {"planner": staticmethod(planner)})


def error_response(status: int, reason: str, description: str) -> bytes:
    """A complete ``Connection: close`` response with the API.md §1 error body.

    For the answers the channel gives itself, before any resource runs.
    """
    body = json_bytes({"ok": False, "error": reason, "error_description": description})
    head = (b"HTTP/1.1 %d %s\r\n"
            b"Content-Type: application/json; charset=utf-8\r\n"
            b"Connection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % (status, reason.encode(), len(body)))
    return head + body


class SparkChannel(HTTPChannel):
    """An HTTP/1.1 channel with a deadline for each request head.

    The deadline starts with the first byte of a request and ends when its
    last header line arrives; the Site's ``timeOut`` (idle timeout) covers the
    silence before that first byte.
    """

    #: Seconds for a whole request head; set by :class:`SparkSite`.
    head_timeout = 30.0
    _awaiting_head = True
    _head_deadline = None

    def dataReceived(self, data):
        if data and self._awaiting_head and self._head_deadline is None:
            self._head_deadline = self.callLater(self.head_timeout, self._head_too_slow)
        super().dataReceived(data)

    def allHeadersReceived(self):
        self._awaiting_head = False
        self._cancel_head_deadline()
        super().allHeadersReceived()

    def requestDone(self, request):
        # Set before the base class replays pipelined bytes into dataReceived.
        self._awaiting_head = True
        super().requestDone(request)

    def connectionLost(self, reason):
        self._cancel_head_deadline()
        super().connectionLost(reason)

    def _cancel_head_deadline(self):
        if self._head_deadline is not None:
            if self._head_deadline.active():
                self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self):
        self._head_deadline = None
        if self.transport.disconnecting:  # already answered and closing, the peer not reading
            return
        peer = self.transport.getPeer()
        log.info(
            "Closing HTTP connection from {address}: request head incomplete after "
            "{seconds} s", address=getattr(peer, "host", str(peer)), seconds=self.head_timeout)
        self.transport.write(error_response(
            408, "Request Timeout", "The request head took too long to arrive."))
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self):
        # twisted.web's answer to unparseable framing (bad Content-Length,
        # chunking, request line, header limits) has no body; give it the API's.
        # The head is over, received or not: no 408 may follow this 400.
        self._cancel_head_deadline()
        self.transport.write(error_response(
            400, "Bad Request", "The request is not valid HTTP/1.1."))
        self.loseConnection()


class SparkSite(server.Site):
    """A Site on :class:`SparkChannel` with a request-head deadline and an idle timeout.

    :param head_timeout: seconds a request head may take from its first byte.
    :param timeout: idle seconds before a quiet connection is closed
        (twisted.web suspends it while a request is being answered).
    :param structured_log: log each request as an event with fields (route,
        status, duration, user, request id) instead of a combined-format line
        (``--log-format json``).
    """

    protocol = SparkChannel  # type: ignore[assignment]  # HTTPFactory's default is a factory too

    def __init__(self, resource, *args, head_timeout: float = 30.0,
                 structured_log: bool = False, **kwargs):
        super().__init__(resource, *args, **kwargs)
        self.head_timeout = head_timeout
        self.structured_log = structured_log

    def log(self, request):
        if not self.structured_log:
            return super().log(request)
        from twisted_spark.api.access_log import redact

        request_id = request.getHeader(b"x-request-id")
        started = getattr(request, "started", None)
        access_log.info(
            "{client} {method} {uri} {status} {duration:.4f} s",
            client=getattr(request.getClientAddress(), "host", "-"),
            method=request.method.decode("latin-1"),
            uri=redact(request.uri).decode("latin-1"),
            status=request.code,
            duration=time.monotonic() - started if started is not None else 0.0,
            route=getattr(request, "spark_route", None),
            user=getattr(request, "spark_user", None),
            request_id=request_id[:64].decode("latin-1") if request_id else None,
        )
        return None

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.head_timeout = self.head_timeout
        return channel
