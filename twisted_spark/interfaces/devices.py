# -*- test-case-name: tests.test_interfaces -*-
"""The device seams: who may do what with an online device.

Four audiences, four interfaces, from the top down:

* the API (and anything location-independent) sees an online device as an
  :class:`IDeviceSession`: information and calls, nothing that needs the
  connection to be in this process, so that in cluster mode the registry can
  hand out a proxy for a device held by another node;
* the parts of the node holding the connection (registry, event router,
  firmware updater) use an :class:`ILocalSession`;
* the OTA flasher, and only it, drives the CoAP exchange through an
  :class:`IDeviceChannel` while it holds the device's ``busy`` lock;
* a session talks to the connection carrying it through an
  :class:`ISessionTransport` (TCP with AES frames now, CoAP over DTLS next),
  and reports to the registry through :class:`ISessionSink`.

The registry is :class:`IDeviceRegistry` to its users and notifies
:class:`IRegistryObserver` objects of devices coming and going.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted_spark.models import DeviceRecord

#: A device subscription: ``(prefix, my_devices, device_id or None)`` (PROTOCOL.md §9.3).
SubscriptionEntry = tuple[str, bool, "str | None"]


class IDeviceSession(Interface):
    """An online device as the API sees it: information and calls.

    Location-independent: every attribute and method can be served for a
    device whose connection another node holds.  The attributes are read-only
    for callers; a new owner goes through :meth:`IDeviceRegistry.owner_changed`.
    """

    device_id = Attribute("str: 24 lowercase hex characters")
    platform_id = Attribute("int: from the Hello (0 when a Core's Hello states none)")
    product_id = Attribute("int | None: from the Hello")
    firmware_version = Attribute("int | None: from the Hello")
    remote_ip = Attribute("str: the device's address")
    last_heard = Attribute("float: POSIX time of the device's last frame")
    owner = Attribute("str | None: the device's owner now (events are judged by it)")
    functions = Attribute("tuple[str, ...]: function names of the cached Describe")
    variables = Attribute("dict[str, str]: variable name -> type name, of the cached Describe")
    connected = Attribute("bool: False once the connection is gone")
    busy = Attribute("bool: True while the device is being flashed")

    def describe() -> Deferred[dict[str, Any]]:
        """The device's functions and variables (asked once, then cached).

        Fires with ``{"functions": (...), "variables": {...}}`` as soon as a
        Describe part names any, which may be only part of them: see
        :meth:`final_describe`.
        """

    def final_describe() -> Deferred[dict[str, Any]]:
        """The Describe once no further part can arrive (PROTOCOL.md §8.1).

        A Photon may answer in two parts a moment apart; a name not found in
        :meth:`describe`'s answer is looked up again in this one.
        """

    def call_function(name: str, argument: bytes) -> Deferred[int]:
        """Call function ``name`` with ``argument``; fires with its int32 result.

        Fails with UnknownFunction, ArgumentTooLong, DeviceBusy, DeviceTimeout,
        DeviceRequestFailed or DeviceNotConnected (:mod:`twisted_spark.errors`).
        """

    def read_variable(name: str) -> Deferred[bool | int | float | str]:
        """Read variable ``name``, typed by the Describe.

        Fails with UnknownVariable, DeviceBusy, DeviceTimeout,
        DeviceRequestFailed or DeviceNotConnected.
        """

    def signal(on: bool) -> Deferred[bool]:
        """Start (``on``) or stop the device's rainbow LED."""

    def ping() -> Deferred[bool]:
        """A CoAP ping; fires with True once the device answered."""


class ILocalSession(IDeviceSession):
    """A device session whose connection this node holds."""

    owner = Attribute("str | None: set by the registry when the stored owner changes")
    subscriptions = Attribute("list[SubscriptionEntry]: what the device subscribed to")
    last_saved = Attribute(
        "float: the registry's bookkeeping, the ``last_heard`` value it last persisted"
    )

    def send_event(event: Any) -> bool:
        """Deliver a :class:`~twisted_spark.models.Event` to the device (no answer).

        :return: False when it could not be sent (connection gone, no UTF-8
            form, larger than the device's buffer); the reason is logged.
        """

    def disconnect(reason: str) -> None:
        """Close the connection; pending calls fail with DeviceNotConnected."""


class IDeviceChannel(Interface):
    """The CoAP exchange with one device, for the OTA flasher of the node holding it.

    Requests sent here share the session's message ids, tokens and timeouts
    with the API's calls, so nothing bypasses the request table.
    """

    device_id = Attribute("str")
    platform_id = Attribute("int")
    is_core = Attribute("bool: a Core-class device (:func:`twisted_spark.platforms.is_core_class`)")
    buffer_size = Attribute("int: the largest frame (ciphertext bytes) the device accepts")
    connected = Attribute("bool")
    busy = Attribute(
        "bool, writable: the flasher sets it for the transfer; the device's other "
        "calls then fail with DeviceBusy"
    )
    owner = Attribute("str | None")
    ota_v3 = Attribute("bool: the device takes OTA v3 (a Gen3 device whose Hello says so)")
    ota_chunk_size = Attribute("int | None: the OTA chunk size the device announced")
    max_binary_size = Attribute("int | None: the largest image the device announced")

    def send_request(
        build: Callable[[int, int], bytes], timeout: float | None = None, token: int | None = None
    ) -> Deferred[Any]:
        """Send the request ``build(message_id, token)`` returns and wait for its answer.

        Fires with the first non-empty response carrying the token (a
        piggy-backed ACK or a separate response), as a
        :class:`~twisted_spark.coap.codec.CoapMessage`.  Fails with
        DeviceTimeout after ``timeout`` seconds (default: the request
        timeout), DeviceRequestFailed (an error code, in its ``code``, or a
        reset) or DeviceNotConnected.

        :param token: a token from :meth:`reserve_token` to use, instead of
            the next free one.
        """

    def send_message(build: Callable[[int], bytes]) -> None:
        """Send the message ``build(message_id)`` returns, taking the next message id.

        Nothing waits for an answer: for messages the device answers late or
        never (fast OTA chunks), whose answers are ignored unless a request
        waits for their token.
        """

    def reserve_token() -> int:
        """A token that no request gets until :meth:`release_token` (raises DeviceBusy if none).

        Fast OTA sends every chunk with the token of its UpdateBegin; the
        reservation keeps that token from being reused by another request
        while the transfer runs.
        """

    def release_token(token: int) -> None:
        """Give back a token from :meth:`reserve_token`."""

    def ping() -> Deferred[bool]:
        """A CoAP ping; the device answers it after every message sent before it."""

    def set_update_handler(handler: Callable[[Any, Any], None] | None) -> None:
        """Send the OTA messages the device originates to ``handler(kind, message)``.

        ``kind`` is the :class:`~twisted_spark.coap.kinds.MessageKind`
        (CHUNK_MISSED, UPDATE_DONE) and ``message`` the CoapMessage; the
        session has already acknowledged a confirmable one.  ``None`` stops
        it (the messages are then only acknowledged).
        """

    def invalidate_describe() -> None:
        """Forget the cached Describe (new firmware may expose other names)."""


class ISessionTransport(Interface):
    """The connection a device session runs on, as the session sees it."""

    remote_ip = Attribute("str: the peer's address, for logs and the API")

    def send_coap(message: bytes) -> None:
        """Send one CoAP message (messages leave in call order)."""

    def send_answer(message: bytes) -> None:
        """Send a short answer to what the device just sent (a keep-alive's
        ACK), in order with :meth:`send_coap`; a transport may send it at once
        instead of with the rest of the reactor pass's writes."""

    def close(reason: str, error: bool = False) -> None:
        """Close the connection with one log line naming the device and ``reason``
        (a warning when ``error``); the session is then told ``connection_lost``."""


class ISessionSink(Interface):
    """What the device side reports to the registry about its sessions."""

    def register(session: ILocalSession, stored: DeviceRecord | None = None) -> None:
        """``session`` finished its handshake: it is the device's connection now
        (an older one for the same id is disconnected).  ``stored`` is the
        device's record as the handshake read it, if any: attributes it already
        holds need not be written again."""

    def unregister(session: ILocalSession) -> None:
        """``session``'s connection ended (ignored if it was already replaced)."""

    def heard(session: ILocalSession) -> None:
        """A frame arrived (``session.last_heard`` is its time); persisted at intervals."""

    def save(device_id: str, **changes: Any) -> Deferred[Any]:
        """Persist device attributes (a new Describe's ``functions`` and
        ``variables``); a failure is logged, never raised."""

    def subscription_added(session: ILocalSession, entry: SubscriptionEntry) -> None:
        """An online ``session`` subscribed to ``entry``."""


class IRegistryObserver(Interface):
    """Told by the registry about local sessions (the event router, the updater)."""

    def device_online(session: ILocalSession) -> None:
        """``session`` is registered."""

    def device_offline(session: ILocalSession) -> None:
        """``session`` left (disconnected, or replaced by a new connection)."""

    def subscription_added(session: ILocalSession, entry: SubscriptionEntry) -> None:
        """An online ``session`` subscribed to ``entry`` (after ``device_online``)."""


class IDeviceRegistry(Interface):
    """Which devices are online, for the API and the node's own parts."""

    def get(device_id: str) -> IDeviceSession | None:
        """The online device ``device_id``, wherever its connection is held."""

    def local(device_id: str) -> ILocalSession | None:
        """The online device ``device_id`` if this node holds its connection."""

    def online_ids() -> set[str]:
        """The ids of the devices online now (a new set)."""

    def sessions() -> list[ILocalSession]:
        """The sessions this node holds (a new list)."""

    def owner_changed(device_id: str, owner: str | None) -> None:
        """The stored owner of ``device_id`` changed (claim, release,
        provisioning): its live session, if any, takes ``owner``."""

    def add_observer(observer: IRegistryObserver) -> None:
        """Notify ``observer`` of sessions coming and going from now on."""

    def remove_observer(observer: IRegistryObserver) -> None:
        """Stop notifying ``observer`` (no error if it was not added)."""
