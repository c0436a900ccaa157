# -*- test-case-name: tests.test_events_bus -*-
"""In-process publish/subscribe of events, by name prefix and visibility rule.

:class:`EventBus` delivers each published :class:`~twisted_spark.models.Event`
synchronously to every subscription whose prefix starts the event's name
(case-sensitive; the empty prefix matches everything) and whose ``accepts``
rule (see :mod:`twisted_spark.events.visibility`) returns true.

Subscribers are isolated: an exception in one rule or callback is logged and
never reaches the publisher or the other subscribers.  Delivery is a plain
call, so callbacks must not block; subscribers that can stall (SSE streams,
webhooks) keep their own bounded queue (:class:`~twisted_spark.api.sse.EventStream`).

Subscriptions are indexed by prefix: a publish looks up each prefix of the
event name (names are at most 63 characters) or scans the distinct prefixes,
whichever is shorter, so its cost does not grow with the number of
subscribers that do *not* match.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.interfaces import IEventBus, ISubscription
from twisted_spark.models import Event

log = Logger()


@implementer(ISubscription)
class Subscription:
    """One subscriber; ``cancel()`` removes it (idempotent)."""

    __slots__ = ("prefix", "callback", "accepts", "_bus")

    def __init__(self, bus, prefix: str, callback, accepts) -> None:
        self._bus = bus
        self.prefix = prefix
        self.callback = callback
        self.accepts = accepts

    def cancel(self) -> None:
        bus = self._bus
        if bus is not None:
            self._bus = None
            bus._remove(self)

    @property
    def active(self) -> bool:
        return self._bus is not None

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<Subscription {self.prefix!r} {state} {self.callback!r}>"


@implementer(IEventBus)
class EventBus:
    """Deliver each published event to the subscribers whose prefix and rule match.

    :ivar published: events published so far.
    :ivar delivered: callback calls made so far.
    :ivar failures: rules or callbacks that raised (each logged).
    """

    def __init__(self) -> None:
        self._by_prefix: dict[str, dict[Subscription, None]] = {}
        self._count = 0
        self.published = 0
        self.delivered = 0
        self.failures = 0

    def __len__(self) -> int:
        """The number of active subscriptions."""
        return self._count

    def prefixes(self) -> list[str]:
        """The distinct prefixes subscribed to now (for diagnostics and tests)."""
        return list(self._by_prefix)

    def subscribe(
        self,
        prefix: str,
        callback: Callable[[Event], object],
        accepts: Callable[[Event], bool] | None = None,
    ) -> Subscription:
        """Call ``callback(event)`` for matching events until ``cancel()``."""
        subscription = Subscription(self, prefix, callback, accepts)
        self._by_prefix.setdefault(prefix, {})[subscription] = None
        self._count += 1
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        group = self._by_prefix.get(subscription.prefix)
        if group is None or subscription not in group:
            return
        del group[subscription]
        self._count -= 1
        if not group:
            del self._by_prefix[subscription.prefix]

    def _matching(self, name: str) -> list[Subscription]:
        by_prefix = self._by_prefix
        matches: list[Subscription] = []
        if len(by_prefix) <= len(name) + 1:
            for prefix, group in by_prefix.items():
                if name.startswith(prefix):
                    matches.extend(group)
        else:
            for end in range(len(name) + 1):
                found = by_prefix.get(name[:end])
                if found:
                    matches.extend(found)
        return matches

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every matching subscriber; never raises."""
        self.published += 1
        try:
            matches = self._matching(event.name)
        except Exception:
            self.failures += 1
            log.failure("Could not route event {event!r}", event=event)
            return
        for subscription in matches:
            # A callback may cancel other subscriptions while we deliver.
            if subscription._bus is None:
                continue
            try:
                accepts = subscription.accepts
                if accepts is None or accepts(event):
                    self.delivered += 1
                    subscription.callback(event)
            except Exception:
                self.failures += 1
                log.failure(
                    "Event subscriber {subscription!r} failed on {name}; "
                    "other subscribers unaffected",
                    subscription=subscription,
                    name=event.name,
                )
