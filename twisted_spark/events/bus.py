"""In-process publish/subscribe of events, by name prefix.

Subscribers are isolated: an exception in one callback is logged and never
reaches the publisher or the other subscribers.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.interfaces import IEventBus
from twisted_spark.models import Event

log = Logger()


class Subscription:
    """One subscriber; ``cancel()`` removes it (idempotent)."""

    __slots__ = ("prefix", "callback", "accepts", "_bus")

    def __init__(self, bus, prefix: str, callback, accepts) -> None:
        self._bus = bus
        self.prefix = prefix
        self.callback = callback
        self.accepts = accepts

    def cancel(self) -> None:
        if self._bus is not None:
            self._bus._remove(self)
            self._bus = None

    @property
    def active(self) -> bool:
        return self._bus is not None


@implementer(IEventBus)
class EventBus:
    """Deliver each published event to the subscribers whose prefix matches."""

    def __init__(self) -> None:
        self._subscriptions: dict[Subscription, None] = {}
        self.published = 0

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(
        self,
        prefix: str,
        callback: Callable[[Event], object],
        accepts: Callable[[Event], bool] | None = None,
    ) -> Subscription:
        subscription = Subscription(self, prefix, callback, accepts)
        self._subscriptions[subscription] = None
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        self._subscriptions.pop(subscription, None)

    def publish(self, event: Event) -> None:
        self.published += 1
        for subscription in list(self._subscriptions):
            if not subscription.active or not event.name.startswith(subscription.prefix):
                continue
            try:
                if subscription.accepts is None or subscription.accepts(event):
                    subscription.callback(event)
            except Exception:
                log.failure("Event subscriber failed on {name}; other subscribers unaffected",
                            name=event.name)
