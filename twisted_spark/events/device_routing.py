# -*- test-case-name: tests.test_events_routing,tests.test_events_devices -*-
"""Events to devices: device subscriptions on the bus (PROTOCOL.md §9.3/§9.4).

:class:`DeviceRouter` is a registry observer.  When a session comes online
it subscribes each entry of ``session.subscriptions`` — ``(prefix,
my_devices, device_id)`` tuples recorded by the device session — to the bus,
with :func:`~twisted_spark.events.visibility.device_subscription_rule`
(which reads the session's *current* owner: claim/release change it live)
and ``session.send_event`` as the callback (the session encodes the §9.2
frame and refuses what does not fit the device's buffer).  When the session
goes offline every one of its bus subscriptions is cancelled.

Subscriptions usually arrive *after* the online notification (devices
subscribe right after the handshake): the session reports each new one to
the registry (``registry.subscription_added``), which calls
:meth:`DeviceRouter.subscription_added` on its observers.  An entry routed
twice is ignored the second time.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.events.visibility import device_subscription_rule
from twisted_spark.interfaces import IRegistryObserver

log = Logger()


@implementer(IRegistryObserver)
class DeviceRouter:
    """Keeps the bus subscriptions of online devices (see the module docstring).

    :param bus: the ``IEventBus``.
    :param registry: optional ``IDeviceRegistry``; the router adds itself as
        an observer.
    """

    def __init__(self, bus, registry=None) -> None:
        self.bus = bus
        self.registry = registry
        # session -> {entry: Subscription}
        self._routes: dict[object, dict[tuple, Any]] = {}
        if registry is not None:
            registry.add_observer(self)

    def __len__(self) -> int:
        """The number of device subscriptions on the bus."""
        return sum(len(routes) for routes in self._routes.values())

    def subscriptions_of(self, session) -> list[tuple]:
        """The entries of ``session`` routed now."""
        return list(self._routes.get(session, ()))

    # -- registry observer -----------------------------------------------------

    def device_online(self, session) -> None:
        if session in self._routes:
            return
        self._routes[session] = {}
        for entry in list(session.subscriptions):
            self.subscription_added(session, entry)

    def device_offline(self, session) -> None:
        routes = self._routes.pop(session, None)
        if routes:
            for subscription in routes.values():
                subscription.cancel()

    # -- the hook ------------------------------------------------------------------

    def subscription_added(self, session, entry) -> None:
        """Route ``entry`` = ``(prefix, my_devices, device_id)`` of an online ``session``.

        Ignored for sessions that are not online (they are picked up by
        ``device_online``) and for entries already routed.
        """
        routes = self._routes.get(session)
        if routes is None:
            return
        prefix, my_devices, device_id = entry
        key = (prefix or "", bool(my_devices), device_id or None)
        if key in routes:
            return
        routes[key] = self.bus.subscribe(
            key[0], session.send_event, device_subscription_rule(session, key[1], key[2])
        )
