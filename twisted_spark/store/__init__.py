"""Persistence behind :class:`~twisted_spark.interfaces.IStore`.

Two implementations honour the same contract (``tests/test_store_contract.py``):
:class:`MemoryStore` for tests, and :class:`SQLiteStore`, the default, which
keeps everything in one SQLite file and does all database work off the reactor
thread.  The helpers here are shared by both so they agree on validation.
"""

from __future__ import annotations

from dataclasses import fields, replace

from twisted_spark.errors import SparkError
from twisted_spark.models import DeviceRecord


class ConstraintError(SparkError, ValueError):
    """A write broke an integrity rule other than a duplicate user name.

    Raised (through the Deferred) for a duplicate access token, a token for
    an unknown user, or a device owned by an unknown user.
    """


#: Fields of :class:`DeviceRecord` that ``update_device`` may change.
DEVICE_FIELDS = frozenset(spec.name for spec in fields(DeviceRecord)) - {"device_id"}


def check_device_changes(changes: dict) -> None:
    """Raise TypeError if ``changes`` names anything but a DeviceRecord field.

    ``device_id`` is refused too: it is the key, not a changeable field.
    """
    unknown = sorted(set(changes) - DEVICE_FIELDS)
    if unknown:
        raise TypeError(f"unknown device field(s): {', '.join(unknown)}")


def normalize_device(record: DeviceRecord) -> DeviceRecord:
    """Return ``record`` with its own tuple of functions and dict of variables.

    The record is frozen but its ``variables`` dict is not: copying it on the
    way in and out keeps callers from changing stored state by accident, and
    turning ``functions`` into a tuple makes every store return equal values.
    """
    return replace(record, functions=tuple(record.functions), variables=dict(record.variables))


from twisted_spark.store.memory import MemoryStore  # noqa: E402  (needs the helpers above)

__all__ = [
    "DEVICE_FIELDS",
    "ConstraintError",
    "MemoryStore",
    "check_device_changes",
    "normalize_device",
]
