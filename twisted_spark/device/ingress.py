# -*- test-case-name: tests.test_device_session,tests.test_events_devices -*-
"""What a device originates: events, subscriptions, time requests (PROTOCOL.md §9, §10).

A device's publish becomes an :class:`~twisted_spark.models.Event` on the
bus, owned by the device's owner, private when the device said so or the
name starts with ``spark`` (any case); ``--device-publish-rate`` limits it
with a token bucket (burst 4) and a publish over the limit is answered with
EventSlowdown and dropped (§9.7).  A subscription is recorded on the session
and reported to the registry, whose observers (the event router) start
delivering.  A time request is answered with the clock's time.
:class:`EventIngress` is a mixin of
:class:`~twisted_spark.device.session.DeviceSession`.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from twisted_spark.coap import to_device
from twisted_spark.coap.codec import CoapError, MessageType
from twisted_spark.coap.payloads import parse_event, parse_subscribe
from twisted_spark.models import Event

CON = MessageType.CON

log = Logger()


class EventIngress:
    """Device events, subscriptions and time requests of one session."""

    __slots__ = ()

    # State (slots of the session, which this mixin reads):
    device_id: str
    owner: str | None
    subscriptions: list
    transport: Any
    _clock: Any
    _bus: Any
    _sink: Any
    _bucket: Any

    def _device_event(self, kind, msg):
        bucket = self._bucket
        slowed = bucket is not None and not bucket.allow()
        if msg.type == CON or slowed:
            answer = to_device.slowdown if slowed else to_device.empty_ack
            self.transport.send_coap(answer(msg.message_id))
        if slowed:
            return
        try:
            parsed = parse_event(msg)
        except CoapError as e:
            log.info("Dropping a bad event from {device_id}: {why}",
                     device_id=self.device_id, why=e)
            return
        name = parsed.name
        event = Event(
            name=name,
            data=parsed.data,
            ttl=parsed.ttl,
            published_at=self._clock.seconds(),
            coreid=self.device_id,
            public=not parsed.private and not name.lower().startswith("spark"),
            owner=self.owner,
        )
        try:
            self._bus.publish(event)
        except Exception:
            log.failure("Publishing event {name!r} of {device_id} failed",
                        name=name, device_id=self.device_id)

    def _subscribe(self, kind, msg):
        try:
            sub = parse_subscribe(msg)
        except CoapError:
            sub = None
        if sub is None or (not sub.prefix and not sub.my_devices and sub.device_id is None):
            self.transport.send_coap(to_device.subscribe_fail(msg.message_id))
            return
        entry = (sub.prefix, sub.my_devices, sub.device_id)
        if entry not in self.subscriptions:
            self.subscriptions.append(entry)
            self._sink.subscription_added(self, entry)
        self.transport.send_coap(to_device.empty_ack(msg.message_id))

    def _time(self, kind, msg):
        now = int(self._clock.seconds()) & 0xFFFFFFFF
        self.transport.send_coap(to_device.time_reply(msg.message_id, msg.token, now))
