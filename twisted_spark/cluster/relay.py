# -*- test-case-name: tests.test_cluster_units -*-
"""Events across nodes: every local event to Redis, every other node's to the local bus.

One channel, ``<namespace>:events``, carries every event of the cluster.
Redis delivers the messages of one connection in the order they were sent,
and each node publishes on a single connection, so every node sees each
other node's events in publish order.  A single channel (rather than one
per owner) keeps that order across owners too and needs no subscription
bookkeeping as streams come and go; the price is that each node decodes
every event, which is small next to the SSE writes it feeds.

An event from another node is published on the local bus with ``origin``
set to that node's id; the relay never sends such an event back out, so
nothing is delivered twice and nothing loops.  Work done once per cluster
(webhooks) runs only where ``origin`` is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger

from twisted_spark.cluster.codec import decode_event, encode_event
from twisted_spark.models import Event

log = Logger()


@dataclass
class RelayCounts:
    """What the relay did since it started."""

    sent: int = 0
    received: int = 0
    failed: int = 0


class EventRelay:
    """Carries events between the local bus and the cluster's event channel.

    :param bus: the local :class:`~twisted_spark.interfaces.IEventBus`.
    :param link: the :class:`~twisted_spark.cluster.link.RedisLink`.
    :param node_id: this node's id (the ``origin`` other nodes see).
    """

    def __init__(self, bus, link, node_id: str) -> None:
        self.bus = bus
        self.link = link
        self.node_id = node_id
        self.channel = link.key("events")
        self.counts = RelayCounts()
        self._subscription = None
        self._already_sent: Event | None = None

    def start(self) -> None:
        """Forward local events from now on."""
        if self._subscription is None:
            self._subscription = self.bus.subscribe("", self._local)

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    def publish_locally(self, event: Event) -> None:
        """Deliver ``event`` on this node only: Redis already carries it
        (a presence script published it with the presence change)."""
        self._already_sent = event
        try:
            self.bus.publish(event)
        finally:
            self._already_sent = None

    def _local(self, event: Event) -> None:
        if event.origin is not None or event is self._already_sent:
            return
        self.counts.sent += 1
        d = self.link.publish(self.channel, encode_event(event, self.node_id))
        d.addErrback(self._failed, event)

    def _failed(self, failure, event) -> None:
        self.counts.failed += 1
        log.failure("Could not relay event {name} of {coreid} to the cluster", failure,
                    name=event.name, coreid=event.coreid)

    def received(self, message: str) -> None:
        """A message on the event channel: another node's event goes on the local bus."""
        try:
            event = decode_event(message)
        except ValueError as e:
            log.warn("Ignoring a malformed message on {channel}: {why}",
                     channel=self.channel, why=e)
            return
        if event.origin == self.node_id:
            return
        self.counts.received += 1
        self.bus.publish(event)
