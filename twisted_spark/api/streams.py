# -*- test-case-name: tests.test_api_sse -*-
r"""The open event streams of the API, by access token.

:class:`StreamRegistry` opens :class:`~twisted_spark.api.sse.EventStream`\ s
and finds them again by access token (token deleted → its streams close) or
all at once (server stopping).  The composition root makes one and hands it
to the API.
"""

from __future__ import annotations

from twisted_spark.api.sse import KEEPALIVE_INTERVAL, EventStream


class StreamRegistry:
    """The open SSE streams, by access token.

    :param bus: the ``IEventBus`` streams subscribe to.
    :param clock: ``IReactorTime`` for keep-alives.
    :param queue_size: per-stream bound (``Settings.sse_queue_size``).
    :param keepalive: keep-alive interval in seconds.

    :ivar opened: streams opened so far.
    :ivar cut_off: streams closed because their client stopped reading.
    :ivar dropped: events those streams held, never delivered.
    """

    def __init__(self, bus, clock, queue_size: int = 1000, keepalive: float = KEEPALIVE_INTERVAL):
        self.bus = bus
        self.clock = clock
        self.queue_size = queue_size
        self.keepalive = keepalive
        self._streams: dict[EventStream, None] = {}
        self._by_token: dict[str, dict[EventStream, None]] = {}
        self.opened = 0
        self.cut_off = 0
        self.dropped = 0

    @classmethod
    def from_settings(cls, bus, clock, settings) -> StreamRegistry:
        return cls(bus, clock, queue_size=settings.sse_queue_size)

    def __len__(self) -> int:
        """The number of open streams."""
        return len(self._streams)

    def streams(self, token: str | None = None) -> list[EventStream]:
        """The open streams (of ``token``, if given)."""
        if token is None:
            return list(self._streams)
        return list(self._by_token.get(token, ()))

    def open(
        self,
        request,
        prefix: str,
        accepts,
        token: str | None = None,
        expires_at: float | None = None,
    ) -> EventStream:
        """Start an :class:`EventStream` on ``request`` and track it."""
        stream = EventStream(
            request,
            self.clock,
            queue_size=self.queue_size,
            keepalive=self.keepalive,
            token=token,
            expires_at=expires_at,
            on_close=self._closed,
        )
        self.opened += 1
        self._streams[stream] = None
        if token is not None:
            self._by_token.setdefault(token, {})[stream] = None
        stream.start(self.bus, prefix, accepts)
        return stream

    def _closed(self, stream: EventStream) -> None:
        self._streams.pop(stream, None)
        if stream.cut_off:
            self.cut_off += 1
            self.dropped += stream.queued + 1  # the one that did not fit, too
        token = stream.token
        if token is not None:
            group = self._by_token.get(token)
            if group is not None:
                group.pop(stream, None)
                if not group:
                    del self._by_token[token]

    def close_streams_for_token(self, token: str, reason: str = "access token deleted") -> int:
        """Close every stream opened with ``token``; returns how many."""
        streams = list(self._by_token.get(token, ()))
        for stream in streams:
            stream.close(reason)
        return len(streams)

    def close_all(self, reason: str = "server stopping", retry: float | None = None) -> int:
        """Close every stream (sending ``retry:``, in seconds, if given); returns how many."""
        streams = list(self._streams)
        for stream in streams:
            stream.close(reason, retry=retry)
        return len(streams)


def observe_events(metrics, bus, streams: StreamRegistry) -> None:
    """Export the bus's and the streams' own counts to ``metrics``, read at scrape time."""
    metrics.gauge("spark_sse_streams", "Event streams open now", lambda: len(streams))
    metrics.gauge("spark_sse_queued_bytes", "Bytes of events queued for event-stream clients "
                  "that are not reading", lambda: sum(s.queued_bytes for s in streams.streams()))
    metrics.counter_reading("spark_sse_streams_opened", "Event streams opened",
                            lambda: streams.opened)
    metrics.counter_reading("spark_events_published", "Events published (devices and API)",
                            lambda: bus.published)
    metrics.counter_reading("spark_events_delivered", "Events handed to subscribers (event "
                            "streams, devices, webhooks)", lambda: bus.delivered)
    metrics.counter_reading(
        "spark_events_dropped", "Events not delivered, by reason: slow_stream (queued for a "
        "stream cut off for not reading), subscriber_error (a subscriber raised)",
        lambda: {("reason", "slow_stream"): streams.dropped,
                 ("reason", "subscriber_error"): bus.failures})
