# -*- test-case-name: tests.test_store_contract -*-
"""Persistence behind :class:`~twisted_spark.interfaces.IStore`.

Three implementations honour the same contract (``tests/test_store_contract.py``):
:class:`MemoryStore` for tests; :class:`SQLiteStore`, the default, which
keeps everything in one SQLite file; and :class:`PostgresStore`
(``--database postgresql://...``), which several nodes share.  The SQL
stores do all database work off the reactor thread.  The helpers here are
shared by all of them so they agree on validation.
"""

from __future__ import annotations

from dataclasses import fields

from twisted_spark.errors import SparkError
from twisted_spark.models import DeviceRecord


class ConstraintError(SparkError, ValueError):
    """A write broke an integrity rule other than a duplicate user name.

    Raised (through the Deferred) for a duplicate access token, a token for
    an unknown user, or a device owned by an unknown user.
    """


class NameTaken(ConstraintError):
    """The write would give one owner two devices of the same name.

    :ivar owner: the owner; :ivar name: the name already in use.
    """

    def __init__(self, owner: str, name: str) -> None:
        super().__init__(f"{owner!r} already has a device called {name!r}")
        self.owner = owner
        self.name = name


class TooManyWebhooks(SparkError):
    """The owner already has as many webhooks as the limit allows.

    :ivar limit: that limit.
    """

    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(f"{owner!r} already has {limit} webhooks")
        self.owner = owner
        self.limit = limit
class StoreClosed(SparkError, RuntimeError):
    """The store was used after its ``close()``."""


class DeviceChanged(SparkError):
    """A compare-and-set found the device no longer as the caller last saw it.

    Raised by ``update_device_if`` when a field differs from what was
    expected (another request changed it first).

    :ivar current: the record as it is now, or ``None`` if there is none.
    """

    def __init__(self, device_id: str, current: DeviceRecord | None) -> None:
        super().__init__(f"device {device_id} changed under the caller")
        self.device_id = device_id
        self.current = current


#: Fields of :class:`DeviceRecord` that ``update_device`` may change.
DEVICE_FIELDS = frozenset(spec.name for spec in fields(DeviceRecord)) - {"device_id"}


def check_device_changes(changes: dict) -> None:
    """Raise TypeError if ``changes`` names anything but a DeviceRecord field.

    ``device_id`` is refused too: it is the key, not a changeable field.
    """
    unknown = sorted(set(changes) - DEVICE_FIELDS)
    if unknown:
        raise TypeError(f"unknown device field(s): {', '.join(unknown)}")


def still_as_expected(device_id: str, record: DeviceRecord | None, expected: dict) -> None:
    """Raise :class:`DeviceChanged` unless ``record`` has the ``expected`` values.

    A missing record counts as ``DeviceRecord(device_id)``: every field at
    its default (no owner, no name, no key).
    """
    if not expected:
        return
    seen = normalize_device(record or DeviceRecord(device_id))
    for field_name, value in expected.items():
        if getattr(seen, field_name) != value:
            raise DeviceChanged(device_id, None if record is None else seen)


def names_clash(record: DeviceRecord, other: DeviceRecord) -> bool:
    """True if ``record`` and ``other`` are two devices of one owner with one name.

    Names are compared exactly (case counts); devices without an owner or a
    name never clash.
    """
    return (
        record.owner is not None
        and record.name is not None
        and other.device_id != record.device_id
        and other.owner == record.owner
        and other.name == record.name
    )


def normalize_device(record: DeviceRecord, **changes) -> DeviceRecord:
    """Return a copy of ``record`` with its own tuple of functions and dict of variables.

    The record is frozen but its ``variables`` dict is not: copying it on the
    way in and out keeps callers from changing stored state by accident, and
    turning ``functions`` into a tuple makes every store return equal values.
    ``changes`` (field names checked by :func:`check_device_changes`) are
    applied to the copy, as ``dataclasses.replace`` would.

    Every read and write of a device copies it (a handshake about ten
    times), so the copy fills the new record's ``__dict__`` directly:
    2 µs, where ``dataclasses.replace`` takes 9 µs to call ``__init__``.
    """
    copy = object.__new__(type(record))
    attributes = copy.__dict__
    attributes.update(record.__dict__)
    attributes.update(changes)
    attributes["functions"] = tuple(attributes["functions"])
    attributes["variables"] = dict(attributes["variables"])
    return copy


async def adopt_device_key(devices, device_id: str, public_key: bytes) -> DeviceRecord:
    """Store ``public_key`` for a device that has none yet, atomically.

    ``--accept-unknown-devices`` trusts the first key a device presents; two
    connections racing with different keys must not both be admitted, so the
    key is written only if the device still has no key.

    :param devices: an :class:`~twisted_spark.interfaces.IDeviceStore`.
    :return: the device's record afterwards; its ``public_key`` is
        ``public_key`` if this call stored it, or the key another writer
        stored first (the caller compares it with what it was shown).
    """
    try:
        return await devices.update_device_if(
            device_id, {"public_key": None}, public_key=public_key
        )
    except DeviceChanged as changed:
        if changed.current is None:  # deleted in between: nothing to compare with
            raise
        return changed.current


from twisted_spark.store.memory import MemoryStore  # noqa: E402  (needs the helpers above)

__all__ = [
    "adopt_device_key",
    "DEVICE_FIELDS",
    "ConstraintError",
    "DeviceChanged",
    "MemoryStore",
    "NameTaken",
    "StoreClosed",
    "check_device_changes",
    "names_clash",
    "normalize_device",
    "still_as_expected",
]
