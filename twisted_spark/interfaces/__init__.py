# -*- test-case-name: tests.test_interfaces -*-
"""The seams between parts, as ``zope.interface`` interfaces.

Protocol code and API code meet only through these: the API never touches
bytes and the device side never touches HTTP.  Methods documented as
returning ``Deferred[X]`` always return a Deferred, even in the in-memory
implementations, so callers are written once.  mypy with mypy-zope checks
every ``@implementer`` class against them (``tests/test_typecheck.py``).

Here: the store (:class:`IStore`, and :class:`IDtlsSessionStore` beside it
for the UDP port, and :class:`IStoreCache` for the caches in front of it),
the event bus (:class:`IEventBus`), executors (:class:`IExecutor`) and metrics (:class:`IMetrics`).
:mod:`twisted_spark.interfaces.devices` holds the device seams (API-facing
session, registry, the session's transport, its reports to the registry,
the flasher's channel) and :mod:`twisted_spark.interfaces.firmware` the
flashing entry point; all are importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface


class IUserStore(Interface):
    """Users and their password hashes."""

    def add_user(user):
        """Store a new :class:`~twisted_spark.models.User`.

        :rtype: Deferred[User]; fails with DuplicateUser if the name is taken.
        """

    def get_user(username):
        """:rtype: Deferred[User | None]"""

    def list_users():
        """:rtype: Deferred[list[User]] sorted by username."""

    def count_users():
        """:rtype: Deferred[int]"""


class ITokenStore(Interface):
    """OAuth access tokens."""

    def add_token(token):
        """Store an :class:`~twisted_spark.models.AccessToken`. :rtype: Deferred[AccessToken]"""

    def get_token(token):
        """:rtype: Deferred[AccessToken | None] (expired tokens are returned too)."""

    def list_tokens(username):
        """:rtype: Deferred[list[AccessToken]] of that user, oldest first."""

    def delete_token(token):
        """:rtype: Deferred[bool], True if a token was removed."""

    def delete_expired(now):
        """Remove tokens that expired before ``now``. :rtype: Deferred[int]"""


class IDeviceStore(Interface):
    """What is remembered about devices: owner, name, key, attributes.

    Names are unique per owner: no write may leave one owner with two
    devices whose ``name`` is equal (compared exactly, case counts).
    Devices without an owner or without a name are not constrained.  A
    write that would break the rule fails with
    :class:`~twisted_spark.store.NameTaken` (a ``ConstraintError``) and
    changes nothing; it must hold under concurrent writers too (a unique
    index on ``(owner, name)``, not only a check before writing).
    """

    def get_device(device_id):
        """:rtype: Deferred[DeviceRecord | None]"""

    def list_devices(owner=None):
        """All devices, or those of ``owner``. :rtype: Deferred[list[DeviceRecord]] by id."""

    def list_devices_named(name, owner=None):
        """The devices whose ``name`` is ``name`` exactly (case counts), of
        every owner or of ``owner`` only: what a request naming a device
        needs, without reading all of an owner's devices (an index lookup).

        :rtype: Deferred[list[DeviceRecord]] by id.
        """

    def put_device(record):
        """Insert or replace a whole record.

        :rtype: Deferred[DeviceRecord]; fails with NameTaken or ConstraintError.
        """

    def update_device(device_id, **changes):
        """Change some fields of a device, creating the record if absent.

        :rtype: Deferred[DeviceRecord] (the record after the change); fails
            with NameTaken, ConstraintError (unknown owner) or TypeError
            (unknown field).
        """

    def update_device_if(device_id, expected, **changes):
        """Compare-and-set: apply ``changes`` only if the device still has the
        ``expected`` field values (``{field: value}``).

        The comparison and the write are one atomic step (one transaction
        holding the row against other writers): of two callers that read the
        same state and then both try to change it, exactly one succeeds.  This
        is how claim, release, provisioning and rename stay correct when two
        requests race.  A device with no record counts as
        ``DeviceRecord(device_id)`` (no owner, no name, no key...), so
        ``expected={"owner": None}`` matches a missing device and the write
        then creates it, as ``update_device`` does.  ``expected={}`` is
        ``update_device``.

        :rtype: Deferred[DeviceRecord] (the record after the change); fails
            with :class:`~twisted_spark.store.DeviceChanged` (its ``current``
            is the record as it is, or ``None``) when a field differs, and
            changes nothing; otherwise as :meth:`update_device`.
        """

    def delete_device(device_id):
        """:rtype: Deferred[bool]"""


class IDtlsSessionStore(Interface):
    """Gen3 DTLS sessions by connection ID, so sleeping devices resume across restarts.

    A separate interface from :class:`IStore`: the UDP device port needs it,
    nothing else does.  Records are
    :class:`~twisted_spark.models.DtlsSessionRecord`; an expired one
    (``expires_at <= now``) is never returned.
    """

    def save_dtls_session(record):
        """Insert or replace the session with ``record.cid``. :rtype: Deferred[DtlsSessionRecord]"""

    def get_dtls_session(cid, now):
        """The unexpired session with this CID. :rtype: Deferred[DtlsSessionRecord | None]"""

    def delete_dtls_session(cid):
        """:rtype: Deferred[bool], True if a session was removed."""

    def delete_expired_dtls_sessions(now):
        """Remove sessions with ``expires_at <= now``. :rtype: Deferred[int] (how many)"""


class IStore(IUserStore, ITokenStore, IDeviceStore):
    """Everything persistent, in one place that can be opened and closed."""

    def close():
        """Release the database. :rtype: Deferred[None]"""


class IStoreCache(Interface):
    """Short-lived read caches in front of an :class:`IStore` (tokens, users, devices).

    The seam for keeping caches right.  The caching store drops an entry
    itself on every write that goes through it, and trusts any entry for at
    most ``ttl`` seconds (writes made elsewhere, such as by the command line
    or another cluster node, are seen within that time).  A cluster relay
    would call the ``invalidate_*`` methods for writes other nodes report,
    and :meth:`add_listener` tells it about this node's own, to pass on.
    """

    ttl = Attribute("float: the longest an entry is trusted, in seconds")

    def invalidate_token(token: str) -> None:
        """Forget the cached access token ``token``."""

    def invalidate_user(username: str) -> None:
        """Forget the cached user ``username``."""

    def invalidate_device(device_id: str) -> None:
        """Forget the cached record of device ``device_id``."""

    def invalidate_all() -> None:
        """Forget everything cached."""

    def add_listener(listener: Callable[[str, str | None], object]) -> None:
        """Call ``listener(kind, key)`` after each invalidation caused by a
        write through this store: ``kind`` is ``"token"``, ``"user"``,
        ``"device"`` or ``"all"`` (``key`` None)."""


class ISubscription(Interface):
    """One subscriber of an :class:`IEventBus`."""

    prefix = Attribute("str: the event-name prefix subscribed to")
    active = Attribute("bool: False once cancelled")

    def cancel() -> None:
        """Stop delivering to this subscriber (idempotent)."""


class IEventBus(Interface):
    """Publish/subscribe of :class:`~twisted_spark.models.Event`.

    Subscribers are the event streams, the device router, the firmware
    updater, webhooks; in cluster mode a relay joins the nodes' buses.
    """

    published = Attribute("int: events published so far (a metric)")

    def publish(event: Any) -> None:
        """Deliver ``event`` to every matching subscriber; never raises.

        Delivery is synchronous and a subscriber's exception is logged and
        contained, so callbacks must not block (queue, then work later).
        """

    def subscribe(
        prefix: str, callback: Callable[[Any], object], accepts: Callable[[Any], bool] | None = None
    ) -> ISubscription:
        """Call ``callback(event)`` for each event whose name starts with ``prefix``
        (case-sensitive; ``""`` is every event) and for which ``accepts(event)``
        (a rule of :mod:`twisted_spark.events.visibility`) is true.
        """


class IExecutor(Interface):
    """A named place where blocking calls run, off the reactor thread.

    The composition root creates one per kind of work (see
    :class:`~twisted_spark.executors.Executors`); tests pass a synchronous one.
    """

    name = Attribute("str: what runs here (rsa, store, passwords, files)")
    pending = Attribute("int: calls submitted and not finished yet (queued or running)")

    def run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Call ``function(*args, **kwargs)`` there.

        :rtype: Deferred firing (on the reactor thread) with its result or failure.
        """

    def start() -> None:
        """Get ready to run calls (idempotent; :meth:`run` also starts lazily)."""

    def stop() -> None:
        """Finish the calls already submitted, then release the threads (idempotent)."""


class IMetrics(Interface):
    """Counters and gauges of the whole server, rendered at ``/metrics``.

    The implementation (:class:`twisted_spark.metrics.Metrics`) also holds
    the typed instruments (histograms) the parts record into.
    """

    def describe(name: str, help_text: str) -> None:
        """Give counter ``name`` its help line."""

    def inc(name: str, amount: float = 1, **labels: Any) -> None:
        """Add ``amount`` to counter ``name`` with these ``labels``."""

    def value(name: str, **labels: Any) -> float:
        """The current value of counter ``name`` with ``labels`` (0 if never counted)."""

    def gauge(name: str, help_text: str, read: Callable[[], Any]) -> None:
        """Register gauge ``name``, whose value is ``read()`` at each scrape."""

    def counter_reading(name: str, help_text: str, read: Callable[[], Any]) -> None:
        """Register counter ``name``: a count a part keeps, ``read()`` at each scrape."""

    def render() -> str:
        """Every counter and gauge as Prometheus text."""


from twisted_spark.interfaces.devices import (  # noqa: E402  (they may use the above)
    IDeviceChannel,
    IDeviceRegistry,
    IDeviceSession,
    ILocalSession,
    IRegistryObserver,
    ISessionSink,
    ISessionTransport,
)
from twisted_spark.interfaces.firmware import IFirmwareUpdater  # noqa: E402

__all__ = [
    "IDeviceChannel",
    "IDeviceRegistry",
    "IDeviceSession",
    "IDeviceStore",
    "IEventBus",
    "IExecutor",
    "IFirmwareUpdater",
    "ILocalSession",
    "IMetrics",
    "IRegistryObserver",
    "ISessionSink",
    "ISessionTransport",
    "IStore",
    "IStoreCache",
    "ISubscription",
    "ITokenStore",
    "IUserStore",
]
