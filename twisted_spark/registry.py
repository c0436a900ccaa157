# -*- test-case-name: tests.test_registry -*-
"""Which devices are online, by id, and what is remembered about them.

The device server registers a session once its handshake is complete and
unregisters it when the connection ends.  A second connection for an id that
is already online replaces the first (PROTOCOL.md §10.2): observers see one
``device_offline`` for the old session and one ``device_online`` for the new
one.  The registry also publishes ``spark/status`` events and persists the
attributes the API shows while a device is offline (last heard, last ip,
platform, product, firmware), throttling ``last_heard`` writes so a chatty
device does not turn into one database write per frame.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.errors import StoreUnavailable
from twisted_spark.interfaces import (
    IDeviceRegistry,
    ILocalSession,
    IRegistryObserver,
    ISessionSink,
)
from twisted_spark.interfaces.devices import SubscriptionEntry
from twisted_spark.models import DeviceRecord, Event

#: Seconds between two ``last_heard`` writes for one device.
LAST_HEARD_INTERVAL = 60.0


@implementer(IDeviceRegistry, ISessionSink)
class DeviceRegistry:
    """Online sessions by device id, with observers, status events and persistence.

    The API and the node's parts use it as an :class:`IDeviceRegistry`; the
    device side reports to it as an :class:`ISessionSink`.

    :param clock: an ``IReactorTime`` (timestamps only).
    :param bus: optional ``IEventBus`` receiving ``spark/status`` events.
    :param store: optional ``IDeviceStore`` receiving device attributes.
    :param last_heard_interval: minimum seconds between ``last_heard`` writes.
    """

    log = Logger()

    def __init__(self, clock, bus=None, store=None, last_heard_interval=LAST_HEARD_INTERVAL):
        self.clock = clock
        self.bus = bus
        self.store = store
        self.last_heard_interval = last_heard_interval
        self._sessions: dict[str, ILocalSession] = {}
        self._observers: list[IRegistryObserver] = []

    # -- IDeviceRegistry -------------------------------------------------------

    def get(self, device_id: str) -> ILocalSession | None:
        """The online session for ``device_id`` or ``None``."""
        return self._sessions.get(device_id)

    def local(self, device_id: str) -> ILocalSession | None:
        """The session for ``device_id`` (every session is local on a single node)."""
        return self._sessions.get(device_id)

    def online_ids(self) -> set[str]:
        """A new set of the ids online now."""
        return set(self._sessions)

    def add_observer(self, observer: IRegistryObserver) -> None:
        """Call ``observer.device_online(s)`` / ``device_offline(s)`` from now on."""
        self._observers.append(observer)

    def remove_observer(self, observer: IRegistryObserver) -> None:
        """Stop notifying ``observer`` (no error if it was not added)."""
        if observer in self._observers:
            self._observers.remove(observer)

    def __len__(self):
        return len(self._sessions)

    def sessions(self) -> list[ILocalSession]:
        """A list of the online sessions (a copy)."""
        return list(self._sessions.values())

    def owner_changed(self, device_id: str, owner: str | None) -> None:
        """The stored owner changed: the live session (event visibility) follows."""
        session = self._sessions.get(device_id)
        if session is not None:
            session.owner = owner

    # -- ISessionSink: called by the device side ---------------------------------

    def register(self, session: ILocalSession, stored: DeviceRecord | None = None) -> None:
        """Mark ``session`` online, replacing (and disconnecting) an older one.

        Its address and Hello attributes are saved with ``last_heard``, unless
        ``stored`` (the record read in the handshake) already holds them and a
        ``last_heard`` less than the save interval old: a fleet reconnecting
        after a network blip or a restart then costs the store no writes.
        """
        device_id = session.device_id
        old = self._sessions.get(device_id)
        if old is session:
            return
        if old is not None:
            self.log.info(
                "Device {device_id} reconnected from {ip}; "
                "closing its previous connection from {old_ip}",
                device_id=device_id,
                ip=session.remote_ip,
                old_ip=old.remote_ip,
            )
            del self._sessions[device_id]
            self._went_offline(old)
            old.disconnect("replaced by a new connection")
        self._sessions[device_id] = session
        now = self.clock.seconds()
        attributes = {
            "last_ip": session.remote_ip,
            "platform_id": session.platform_id,
            "product_id": session.product_id,
            "firmware_version": session.firmware_version,
        }
        saved_at = self._stored_at(stored, attributes, now)
        if saved_at is not None:
            session.last_saved = saved_at  # heard() saves once the interval is up
        else:
            session.last_saved = now
            self.save(device_id, last_heard=now, **attributes)
        self._publish_status(session, "online")
        for observer in list(self._observers):
            self._notify(observer, "device_online", session)

    def unregister(self, session: ILocalSession) -> None:
        """Mark ``session`` offline if it is still the current one for its id."""
        if self._sessions.get(session.device_id) is not session:
            return
        del self._sessions[session.device_id]
        self._went_offline(session)

    def heard(self, session: ILocalSession) -> None:
        """The device sent a frame; persist ``last_heard`` at most once per interval."""
        last = session.last_heard
        if last - session.last_saved >= self.last_heard_interval:
            session.last_saved = last
            self.save(session.device_id, last_heard=last)

    def save(self, device_id, **changes):
        """Persist attribute changes, logging (never raising) a failure.

        A database that cannot be reached is one line per device (the store
        has said why once); anything else is logged with its traceback.
        """
        if self.store is None:
            return defer.succeed(None)
        d = defer.maybeDeferred(self.store.update_device, device_id, **changes)
        d.addErrback(self._not_saved, device_id, sorted(changes))
        return d

    def _not_saved(self, failure, device_id, fields) -> None:
        if failure.check(StoreUnavailable):
            self.log.warn("Could not save {fields} of device {device_id}: the database is "
                          "unavailable", fields=", ".join(fields), device_id=device_id)
        else:
            self.log.failure("Could not save attributes of device {device_id}", failure,
                             device_id=device_id)

    def subscription_added(self, session: ILocalSession, entry: SubscriptionEntry) -> None:
        """Tell observers that an online ``session`` added subscription ``entry``."""
        for observer in list(self._observers):
            try:
                observer.subscription_added(session, entry)
            except Exception:
                self.log.failure("Registry observer {observer!r} failed on a subscription "
                                 "of {device_id}", observer=observer,
                                 device_id=session.device_id)

    # -- internals -------------------------------------------------------------

    def _stored_at(self, stored, attributes, now):
        """``stored.last_heard`` if ``stored`` holds ``attributes`` and is recent, else None."""
        if stored is None or stored.last_heard is None:
            return None
        if not 0 <= now - stored.last_heard < self.last_heard_interval:
            return None
        if any(getattr(stored, name) != value for name, value in attributes.items()):
            return None
        return stored.last_heard

    def _went_offline(self, session):
        self.save(session.device_id, last_heard=session.last_heard)
        self._publish_status(session, "offline")
        for observer in list(self._observers):
            self._notify(observer, "device_offline", session)

    def _notify(self, observer, method, session):
        try:
            getattr(observer, method)(session)
        except Exception:
            self.log.failure(
                "Registry observer {observer!r}.{method} failed for {device_id}",
                observer=observer,
                method=method,
                device_id=session.device_id,
            )

    def _publish_status(self, session, status):
        if self.bus is None:
            return
        event = Event(
            name="spark/status",
            data=status,
            ttl=60,
            published_at=self.clock.seconds(),
            coreid=session.device_id,
            public=False,
            owner=session.owner,
        )
        try:
            self.bus.publish(event)
        except Exception:
            self.log.failure(
                "Publishing spark/status for {device_id} failed", device_id=session.device_id
            )
