# -*- test-case-name: tests.test_cluster_units -*-
"""What nodes say to each other through Redis, as compact JSON text.

Events travel as ``[origin, name, data, ttl, published_at, coreid, public,
owner]``; call results and errors as ``{"ok": value}`` or ``{"error":
class name, "message": text}``.  Only the domain errors of
:mod:`twisted_spark.errors` cross nodes as themselves: anything else arrives
as DeviceRequestFailed, so a bug on one node never turns into a strange
exception type on another.
"""

from __future__ import annotations

import json
from typing import Any

from twisted_spark import errors
from twisted_spark.models import Event

#: Errors rebuilt by name on the calling node (their one-argument form).
CROSSING = {
    cls.__name__: cls
    for cls in (
        errors.DeviceNotConnected, errors.DeviceTimeout, errors.DeviceBusy,
        errors.UnknownFunction, errors.UnknownVariable, errors.DeviceRequestFailed,
        errors.ArgumentTooLong, errors.FirmwareError, errors.EmptyFirmware,
        errors.NoCompiler, errors.BadFileName, errors.FirmwareDeviceOffline,
        errors.FirmwareTooLarge,
    )
}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def encode_event(event: Event, origin: str) -> str:
    """``event`` as published by node ``origin``."""
    return dumps([origin, event.name, event.data, event.ttl, event.published_at,
                  event.coreid, event.public, event.owner])


def decode_event(message: str) -> Event:
    """The event of :func:`encode_event`, its ``origin`` the publishing node.

    Raises ValueError for anything else.
    """
    try:
        origin, name, data, ttl, published_at, coreid, public, owner = json.loads(message)
    except (TypeError, ValueError) as e:
        raise ValueError(f"not a relayed event: {message[:80]!r}") from e
    return Event(name=name, data=data, ttl=int(ttl), published_at=float(published_at),
                 coreid=coreid, public=bool(public), owner=owner, origin=origin)


def encode_error(error: BaseException) -> dict[str, Any]:
    """An exception as a reply body (unknown kinds become DeviceRequestFailed)."""
    name = type(error).__name__
    reply: dict[str, Any] = {"error": name if name in CROSSING else "DeviceRequestFailed",
                             "message": str(error)}
    image_id = getattr(error, "image_id", None)
    if image_id is not None:
        reply["image_id"] = image_id
    if isinstance(error, errors.UpdateFailed):
        reply.update(error="UpdateFailed", timeout=error.timeout)
    return reply


def decode_error(reply: dict[str, Any]) -> Exception:
    """The exception a reply body of :func:`encode_error` describes."""
    name, message = reply.get("error"), str(reply.get("message", ""))
    if name == "UpdateFailed":
        return errors.UpdateFailed(message, reply.get("image_id"), bool(reply.get("timeout")))
    cls = CROSSING.get(name or "", errors.DeviceRequestFailed)
    if issubclass(cls, errors.FirmwareError):
        return cls(message, reply.get("image_id"))
    return cls(message)
