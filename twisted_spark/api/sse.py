# -*- test-case-name: tests.test_api_sse,tests.test_events_e2e -*-
"""Server-Sent Event streams of the API (API.md §5): HTTP code, so it lives in ``api``.

* An event's frame comes from :mod:`twisted_spark.api.sse_frames`, formatted
  once for all the streams it goes to.  On a chunked HTTP/1.1 response (all
  of them but HTTP/1.0 clients') a stream writes it already framed as a
  chunk straight to the connection: one buffer append per stream instead of
  twisted.web's four-part chunk write through three layers.
* :class:`EventStream` is one open SSE response bound to a twisted.web
  request: headers and ``:ok``, a bus subscription, one keep-alive timer (and
  one at its token's expiry, which ends it), a push producer bounding what a
  slow client can make the server hold, and cleanup however the stream ends.
* :class:`~twisted_spark.api.streams.StreamRegistry` opens streams and finds
  them again by access token.

A route answers 401/403/404 with the JSON error body *before* opening a
stream; once :meth:`EventStream.start` has run the status and headers are
sent and the request belongs to the stream (the route returns
``NOT_DONE_YET``).
"""

from __future__ import annotations

from collections import deque
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_spark.api.sse_frames import encode_chunk, encode_event
from twisted_spark.models import Event

log = Logger()

#: Seconds without a write after which a keep-alive line is sent.
KEEPALIVE_INTERVAL = 9.0
#: First bytes of every stream (also flushes the headers).
PREAMBLE = b":ok\n\n"
#: The keep-alive line.
KEEPALIVE = b"\n"

HEADERS = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
)

def _chunk_transport(request):
    """The connection under a chunked response, for whole chunks; else ``None``.

    Only once the headers are out (``request.chunked`` is then known), and
    never for HEAD, whose body twisted.web drops.
    """
    if not getattr(request, "chunked", False) or request.method == b"HEAD":
        return None
    return getattr(getattr(request, "channel", None), "transport", None)


def prefix_from_path(path: bytes | str, fixed_segments: int) -> str:
    """The event-name prefix: the whole URL-decoded rest of ``path``.

    ``fixed_segments`` is the number of path segments of the route before the
    prefix: 2 for ``/v1/events``, 3 for ``/v1/devices/events``, 4 for
    ``/v1/devices/:id/events``.  ``/v1/events/spark%2Fstatus`` and
    ``/v1/events/spark/status`` both give ``spark/status``.  Use the raw
    ``request.path`` (no query), not an already-decoded route argument, so
    the rest is decoded exactly once.
    """
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    path = path.split("?", 1)[0]
    parts = path.split("/", fixed_segments + 1)
    if len(parts) <= fixed_segments + 1:
        return ""
    return unquote(parts[fixed_segments + 1], encoding="utf-8", errors="replace")


@implementer(IPushProducer)
class EventStream:
    """One SSE response (see the module docstring).

    :param request: the ``twisted.web`` ``IRequest``; nothing is written to it
        before :meth:`start`.
    :param clock: ``IReactorTime`` for the keep-alive timer and expiry.
    :param queue_size: events held while the client does not read (the
        transport asked us to pause); one more and the stream is cut off.
    :param keepalive: seconds of silence before a keep-alive line.
    :param token: the access token string the stream was opened with.
    :param expires_at: POSIX time the token expires, or ``None``: a timer
        closes the stream at that instant, and no event is written from then
        on even if the timer has not run yet.
    :param on_close: ``callable(stream)`` run once when the stream ends.

    :ivar ended: a ``Deferred`` firing with the close reason once the response
        is over (finished, or its connection lost).  A Klein handler awaits it
        to hold the response open; cancelling it (Klein does when the client
        leaves) closes the stream.
    :ivar close_reason: why the stream ended (``None`` while open).
    :ivar cut_off: the stream was closed because its client stopped reading.
    """

    __slots__ = (
        "request",
        "clock",
        "queue_size",
        "keepalive",
        "token",
        "expires_at",
        "on_close",
        "ended",
        "close_reason",
        "cut_off",
        "events_sent",
        "_subscription",
        "_timer",
        "_expiry",
        "_queue",
        "_paused",
        "_last_write",
        "_started",
        "_closed",
        "_gone",
        "_transport",
    )

    def __init__(
        self,
        request,
        clock,
        *,
        queue_size: int = 1000,
        keepalive: float = KEEPALIVE_INTERVAL,
        token: str | None = None,
        expires_at: float | None = None,
        on_close=None,
    ) -> None:
        if queue_size < 0 or keepalive <= 0:
            raise ValueError("queue_size must be >= 0 and keepalive > 0")
        self.request = request
        self.clock = clock
        self.queue_size = queue_size
        self.keepalive = keepalive
        self.token = token
        self.expires_at = expires_at
        self.on_close = on_close
        self.ended: Deferred[str | None] = Deferred(self._cancelled)
        self.close_reason: str | None = None
        self.cut_off = False
        self.events_sent = 0
        self._subscription = None
        self._timer = None
        self._expiry = None
        self._queue: deque[bytes] = deque()
        self._paused = False
        self._last_write = 0.0
        self._started = False
        self._closed = False
        self._gone = False
        self._transport: ITransport | None = None

    # -- life cycle -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued(self) -> int:
        """Events waiting for a paused client."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes of the events waiting for a paused client."""
        return sum(map(len, self._queue))

    def start(self, bus, prefix: str, accepts) -> EventStream:
        """Send the headers and ``:ok``, then subscribe ``prefix`` with rule ``accepts``."""
        if self._started:
            raise RuntimeError("stream already started")
        self._started = True
        request = self.request
        if getattr(request, "_disconnected", False) or getattr(request, "finished", False):
            # The client left while the route was authenticating: notifyFinish
            # would never fire and writes would vanish, leaking the subscription.
            self._gone = True
            self._cleanup("client disconnected")
            self._fire_ended()
            return self
        request.notifyFinish().addBoth(self._finished)
        request.setResponseCode(200)
        for name, value in HEADERS:
            request.setHeader(name, value)
        request.registerProducer(self, True)
        self._write(PREAMBLE)
        if self._closed:  # the connection died under the first write
            return self
        self._transport = _chunk_transport(request)
        self._subscription = bus.subscribe(prefix, self._deliver, accepts)
        self._timer = self.clock.callLater(self.keepalive, self._tick)
        if self.expires_at is not None:
            delay = max(0.0, self.expires_at - self.clock.seconds())
            self._expiry = self.clock.callLater(delay, self._expired)
        return self

    def close(self, reason: str = "closed by the server", retry: float | None = None) -> None:
        """End the stream from the server side (token deleted, server stopping...).

        The response is finished normally, or the connection aborted if its
        client is not reading (finishing would leave the buffered data, and
        the connection, waiting for a client that may never read again).
        ``retry`` (seconds) is sent first as the SSE ``retry:`` field: when
        the client should reconnect (a draining server, to another node).
        """
        if self._closed:
            return
        abort = self._paused
        if retry is not None and not abort and self._started and not self._gone:
            self._write(b"retry: %d\n\n" % int(retry * 1000))
        self._cleanup(reason)
        self._end_response(abort)

    def _finished(self, result) -> None:
        """``request.notifyFinish()`` fired: the response ended or the client left."""
        if isinstance(result, Failure):
            self._gone = True
            self._cleanup("client disconnected")
        else:
            self._cleanup(self.close_reason or "finished")
        self._fire_ended()
        return None

    def _cancelled(self, ended) -> None:
        """Whoever awaited ``ended`` gave up (Klein: the client left)."""
        if getattr(self.request, "_disconnected", False):
            self._gone = True
            self._cleanup("client disconnected")
        else:
            self.close("request cancelled")

    def _fire_ended(self) -> None:
        if not self.ended.called:
            self.ended.callback(self.close_reason)

    def _cleanup(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.cancel()
        for timer in (self._timer, self._expiry):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._expiry = None
        self._queue.clear()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            try:
                on_close(self)
            except Exception:
                log.failure("SSE on_close callback failed")

    def _end_response(self, abort: bool) -> None:
        if self._gone or getattr(self.request, "_disconnected", False):
            return  # never finish() a request whose connection is lost
        request = self.request
        try:
            request.unregisterProducer()
            if abort:
                transport = getattr(getattr(request, "channel", None), "transport", None)
                if transport is not None and hasattr(transport, "abortConnection"):
                    self._gone = True
                    transport.abortConnection()
                    return
            request.finish()
        except Exception:
            log.failure("Could not end SSE response")

    # -- writing ----------------------------------------------------------------

    def _write(self, data: bytes, chunk: bytes | None = None) -> None:
        """Write ``data``; or ``chunk``, ``data`` framed as a chunk, straight to the connection."""
        self._last_write = self.clock.seconds()
        transport = self._transport
        try:
            if chunk is None or transport is None:
                self.request.write(data)
            else:
                self.request.sentLength += len(data)  # as request.write counts it
                transport.write(chunk)
        except Exception:
            log.failure("SSE write failed; closing the stream")
            self._cleanup("write failed")
            self._end_response(abort=True)

    def _deliver(self, event: Event) -> None:
        if self._closed:
            return
        if self.expires_at is not None and self.clock.seconds() >= self.expires_at:
            self._expired()
            return
        frame = encode_event(event)
        if self._paused:
            if len(self._queue) >= self.queue_size:
                self._overflow()
                return
            self._queue.append(frame)
            return
        self.events_sent += 1
        self._write(frame, None if self._transport is None else encode_chunk(event))

    def _overflow(self) -> None:
        log.warn(
            "SSE client stopped reading; closing its stream after {n} queued events",
            n=len(self._queue),
        )
        self.cut_off = True
        self._cleanup("client too slow")
        self._end_response(abort=True)

    def _expired(self) -> None:
        """The token's lifetime is over: so is the stream (the timer, if
        still pending, is cancelled by the cleanup)."""
        self.close("access token expired")

    def _tick(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self.clock.seconds()
        idle = now - self._last_write
        if self._paused or idle >= self.keepalive:
            if not self._paused:
                self._write(KEEPALIVE)
                if self._closed:
                    return
            delay = self.keepalive
        else:
            delay = self.keepalive - idle
        self._timer = self.clock.callLater(delay, self._tick)

    # -- IPushProducer ----------------------------------------------------------

    def pauseProducing(self) -> None:
        """The transport's buffer is full: queue events instead of writing."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The buffer drained: write what was queued, as one write."""
        self._paused = False
        if self._closed or not self._queue:
            return
        frames = b"".join(self._queue)
        self.events_sent += len(self._queue)
        self._queue.clear()
        self._write(frames)

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._gone = True
        self._cleanup("client disconnected")
