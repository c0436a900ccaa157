# -*- test-case-name: tests.test_api_devices,tests.test_events_devices -*-
"""Finding the device a request names: by its 24-hex id (any case) or its name.

One module for every route: :func:`resolve` is the caller's device (device
routes), :func:`any_device` any device whose public events the caller may
watch (its event stream).  A device that does not exist and one that belongs
to someone else both answer 403, so existence never leaks; administrators
see every device.
"""

from __future__ import annotations

import re

from twisted_spark.api.errors import forbidden
from twisted_spark.models import DeviceRecord

DEVICE_ID = re.compile(r"[0-9a-fA-F]{24}")


async def resolve(api, caller, ident: str) -> DeviceRecord:
    """The caller's device called ``ident`` (id or name), or 403."""
    record = None
    if DEVICE_ID.fullmatch(ident):
        device_id = ident.lower()
        record = await api.store.get_device(device_id)
        if record is None and caller.is_admin and api.registry.get(device_id) is not None:
            record = DeviceRecord(device_id)  # online, never stored: only admins see it
    if record is None:
        record = await by_name(api, caller, ident)
    if record is None or not (caller.is_admin or record.owner == caller.username):
        raise forbidden()
    return record


async def by_name(api, caller, name, *, own_only=False):
    """The device called ``name``: the caller's first, then (administrators,
    unless ``own_only``) anyone's; an exact match before one that differs
    only in case, or None.

    An exact name is an index lookup; only a name that matches no device
    exactly reads all the candidates to compare them ignoring case.
    """
    everyone = caller.is_admin and not own_only
    exact = await api.store.list_devices_named(name, owner=caller.username)
    if not exact and everyone:
        exact = await api.store.list_devices_named(name)
    if exact:
        return exact[0]
    candidates = await api.store.list_devices(owner=caller.username)
    if everyone:
        candidates += [r for r in await api.store.list_devices() if r.owner != caller.username]
    folded = name.lower()
    return next((r for r in candidates if r.name and r.name.lower() == folded), None)


async def any_device(api, caller, ident: str):
    """The device named by id (anyone's: others see its public events) or 403."""
    record = None
    if DEVICE_ID.fullmatch(ident):
        record = await api.store.get_device(ident.lower())
    if record is None:
        record = await by_name(api, caller, ident)
    if record is None:
        raise forbidden()
    return record
