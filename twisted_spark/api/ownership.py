# -*- test-case-name: tests.test_api_devices,tests.test_api_races -*-
"""Who owns a device, changed safely: claim, release, provisioning and rename.

Every such write goes through :func:`change_device`, a compare-and-set on
the store: of two requests racing for one device, exactly one wins, and the
loser is judged again on the new state.  The live session learns a new owner
through the registry (event visibility uses it).
"""

from __future__ import annotations

from twisted_spark.api.errors import ApiError, bad_request
from twisted_spark.models import DeviceRecord
from twisted_spark.store import DeviceChanged

#: Fields a claim, release, provisioning or rename decides on: a write goes
#: through only if none of them changed since the decision was made.
DECIDED_ON = ("owner", "name", "public_key")
#: Compare-and-set attempts before giving up (each failure means another
#: request changed the device in between: only a flood of writes gets there).
CAS_ATTEMPTS = 5


_UNREAD = object()


async def change_device(api, device_id: str, decide, record=_UNREAD):
    """Apply ``decide(record)``'s changes as a compare-and-set; the record after.

    ``decide`` gets the device as it is (``None`` if not stored) and returns
    the fields to change, or raises the :class:`ApiError` that refuses the
    request.  The write is conditional on :data:`DECIDED_ON` still being what
    ``decide`` saw; if another request changed them first, ``decide`` runs
    again on the new state, so of two racing requests the loser is judged
    (and usually refused) as if it had come second.  The live session learns
    the new owner through the registry (event visibility uses it).  Pass ``record`` when the
    caller has just read it (``None`` = not stored), to save a read.
    """
    if record is _UNREAD:
        record = await api.store.get_device(device_id)
    for _ in range(CAS_ATTEMPTS):
        seen = record or DeviceRecord(device_id)
        changes = decide(record)
        expected = {field: getattr(seen, field) for field in DECIDED_ON}
        try:
            record = await api.store.update_device_if(device_id, expected, **changes)
        except DeviceChanged as changed:
            record = changed.current
            continue
        api.registry.owner_changed(device_id, record.owner)
        return record
    sentence = "The device changed while this request ran; try again."
    raise ApiError(409, "Conflict", sentence, errors=[sentence])


def belongs_to_someone_else() -> ApiError:
    sentence = "That belongs to someone else"
    return ApiError(403, "Forbidden", sentence, errors=[sentence])


def name_in_use() -> ApiError:
    return bad_request("name already in use", errors=["name already in use"])


def key_registered() -> ApiError:
    sentence = (
        "This device already has a registered key; only its owner or an administrator "
        "can replace it."
    )
    return ApiError(403, "Forbidden", sentence, errors=[sentence])
