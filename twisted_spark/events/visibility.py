# -*- test-case-name: tests.test_events_visibility -*-
"""Who may see which event: the visibility rules as small pure predicates.

Each factory returns a *rule*, a ``Callable[[Event], bool]`` handed to
:meth:`EventBus.subscribe <twisted_spark.events.bus.EventBus.subscribe>` as
``accepts``.  The name-prefix filter is the bus's job; a rule only decides
visibility (and the device-id filter of device subscriptions).

Words used below: an event's *owner* is the user owning the publishing
device, or the API caller who published it (``coreid == "api"``); ``None``
for a device nobody has claimed.

API streams (API.md §5):

==========================  ===============================================
``/v1/events``              public events of any owned publisher, plus every
                            event owned by the caller
``/v1/devices/events``      every event owned by the caller (their devices
                            and their own API publishes)
``/v1/devices/:id/events``  events of that device: all of them for its owner,
                            only the public ones for anyone else
==========================  ===============================================

Device subscriptions (PROTOCOL.md §9.3/§9.4), subscriber = a device with
owner O:

* ``prefix`` only ("firehose"): public events of any owned publisher;
* ``u`` (MY_DEVICES), with or without prefix: events owned by O, public or
  private;
* device id (with or without prefix): events of that one device that the
  subscriber may see: public ones, or private ones when owned by O (with
  ``u`` as well: only when owned by O);
* a device always sees its own events when a subscription matches them;
* ``spark*`` events never reach device subscriptions (see below).

Decisions (the documents leave these open):

* **Unowned devices** (``owner is None``): their events reach nobody but
  administrators' API streams (and the device itself, through a matching
  subscription of its own).  This is [BSP]'s "events from unclaimed devices are
  not published to users"; a single-user server claims its devices for the
  local user.  An unowned *subscriber* device gets public events through a
  firehose subscription and nothing through ``u``.
* **Administrators** see every event on all three API streams, whatever its
  owner (an administrator can already list, read and call every device, so
  this reveals nothing new, and it is the only way to watch unclaimed
  devices).  The administrator flag gives a *device* no extra power.
* **Webhook outcome events** (``coreid`` ``"particle-internal"``: hook-sent,
  responses, errors; API.md §6) are private events of the hook's owner; they
  reach that owner's devices through a matching subscription in either
  scope (firehose or ``u``), as on the hosted cloud.
* **System events** (names starting with ``spark``, any letter case) are
  private (the device session forces it; the API refuses to publish them).
  They reach their owner's API streams but never a device subscription: a
  device's own ``spark/...`` publishes are not echoed back (an echoed
  ``spark/device/claim/code`` would clear the device's claim code), and
  other devices never see them (:func:`device_subscription_accepts` refuses
  them first).  The server sends devices no commands of its own; one that
  addresses a single device (``spark/device/reset``...) must go to that
  session directly (``ILocalSession.send_event``), never through the bus, so
  that it can reach no one else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted_spark.models import Event

Rule = Callable[[Event], bool]

#: ``coreid`` of events published through the API.
API_COREID = "api"
#: ``coreid`` of the events webhook deliveries produce (hook-sent, responses, errors):
#: private to the hook's owner, and they never trigger a hook.
INTERNAL_COREID = "particle-internal"


def is_system(name: str) -> bool:
    """Whether ``name`` is reserved for the system (starts with ``spark``, any case)."""
    return name[:5].lower() == "spark"


def everything(event: Event) -> bool:
    """The administrators' rule: every event is visible."""
    return True


def firehose_rule(user: str, is_admin: bool = False) -> Rule:
    """``GET /v1/events``: public events of owned publishers + the user's own."""
    if is_admin:
        return everything

    def firehose(event: Event) -> bool:
        owner = event.owner
        return owner is not None and (event.public or owner == user)

    return firehose


def my_devices_rule(user: str, is_admin: bool = False) -> Rule:
    """``GET /v1/devices/events``: events of the user's devices and API publishes."""
    if is_admin:
        return everything

    def mine(event: Event) -> bool:
        return event.owner is not None and event.owner == user

    return mine


def device_rule(device_id: str, user: str, is_admin: bool = False) -> Rule:
    """``GET /v1/devices/:id/events``: one device's events as ``user`` may see them.

    The owner of an event (the device's owner when it published) sees all of
    them; others see the public events of an owned device; administrators
    see everything.  Ownership is the event's, so a device released or
    claimed while a stream is open is judged by who owns it *now* (the API
    updates the live session's owner).  The route answers 403/404 *before*
    opening a stream when the caller may not watch the device at all.
    """
    if is_admin:

        def all_of_device(event: Event) -> bool:
            return event.coreid == device_id

        return all_of_device

    def device(event: Event) -> bool:
        if event.coreid != device_id:
            return False
        owner = event.owner
        return owner is not None and (event.public or owner == user)

    return device


def device_subscription_accepts(
    event: Event,
    subscriber_id: str,
    subscriber_owner: str | None,
    my_devices: bool = False,
    device_id: str | None = None,
) -> bool:
    """Whether one device subscription receives ``event`` (§9.4; prefix aside).

    :param subscriber_id: the subscribing device's id.
    :param subscriber_owner: its owner now, ``None`` when unclaimed.
    :param my_devices: the subscription carried the ``u`` query (MY_DEVICES).
    :param device_id: the subscription named one publisher device (payload).
    """
    if is_system(event.name):
        return False
    coreid = event.coreid
    if device_id is not None and coreid != device_id:
        return False
    if coreid == subscriber_id:
        return True
    owner = event.owner
    if owner is None:
        return False
    same_owner = subscriber_owner is not None and owner == subscriber_owner
    if coreid == INTERNAL_COREID:
        return same_owner  # webhook answers reach the owner's devices in either scope
    if my_devices:
        return same_owner
    return event.public or (device_id is not None and same_owner)


def device_subscription_rule(
    subscriber: Any, my_devices: bool = False, device_id: str | None = None
) -> Rule:
    """:func:`device_subscription_accepts` as the rule of one device subscription.

    ``subscriber`` is the subscribing session (its ``device_id`` and
    ``owner``): the owner is read at each event, because a claim or release
    changes it while the device is online.  This is the rule
    :class:`~twisted_spark.events.device_routing.DeviceRouter` subscribes with.
    """
    subscriber_id = subscriber.device_id

    def device_subscription(event: Event) -> bool:
        return device_subscription_accepts(
            event, subscriber_id, subscriber.owner, my_devices, device_id
        )

    return device_subscription
