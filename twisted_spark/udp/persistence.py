# -*- test-case-name: tests.test_udp_probe,tests.test_udp_port -*-
"""DTLS sessions kept in a store, so sleeping Gen3 devices resume across server restarts.

Saving: every :class:`~twisted_spark.dtls.HandshakeComplete` and
:class:`~twisted_spark.dtls.SessionCheckpoint` snapshot is written at once
(a checkpoint moves the outgoing sequence-number lease, which must be on
disk before the connection uses it: if a save fails, the caller should
close that session rather than risk reusing a nonce after a crash).  A
session is deleted when it closes or expires.  The stored expiry is
``last_seen + idle_timeout`` at the time of the save; :meth:`refresh`
re-saves live sessions whose stored expiry falls behind.

Loading is on demand, not at startup: a record arrives with a connection ID
the server does not hold, the caller asks :meth:`lookup`, and the session
comes back from the store (or not).  Unknown CIDs are remembered for a
while (a negative cache), so a flood of made-up CIDs costs at most one
store query per CID per ``negative_ttl``, and at most ``max_lookups`` run at
once.  A session of a device whose registered key changed since is
deleted instead of resumed.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable

from twisted.internet import defer
from twisted.logger import Logger

from twisted_spark.dtls import SessionState
from twisted_spark.dtls.session import SERVER
from twisted_spark.models import DtlsSessionRecord

__all__ = ["LookupRefused", "SessionPersistence"]

log = Logger()


class LookupRefused(Exception):
    """No store query was made for this CID: it is known to be unknown, or too many run."""


class SessionPersistence:
    """Saves, deletes and finds DTLS sessions in a session store.

    :param store: an :class:`~twisted_spark.interfaces.IDtlsSessionStore`.
    :param devices: an :class:`~twisted_spark.interfaces.IDeviceStore`, to
        check a bound session's key against the device's registered one.
    :param idle_timeout: seconds a session lives after it was last heard
        from (the :class:`~twisted_spark.dtls.SessionTable`'s).
    """

    def __init__(
        self,
        store,
        devices,
        *,
        idle_timeout: float,
        negative_ttl: float = 60.0,
        max_negative: int = 10_000,
        max_lookups: int = 64,
    ) -> None:
        self.store = store
        self.devices = devices
        self.idle_timeout = idle_timeout
        self.negative_ttl = negative_ttl
        self.max_negative = max_negative
        self.max_lookups = max_lookups
        self._unknown: OrderedDict[bytes, float] = OrderedDict()  # cid -> until when
        self._looking: set[bytes] = set()
        self._saved_expiry: dict[bytes, float] = {}

    @property
    def lookups(self) -> int:
        return len(self._looking)

    # -- saving ------------------------------------------------------------------------

    def save(self, state: SessionState, now: float) -> defer.Deferred:
        """Write ``state``; the Deferred fails if the store does."""
        expires_at = state.last_seen + self.idle_timeout
        record = DtlsSessionRecord(
            cid=state.cid,
            state=json.dumps(state.to_dict(), separators=(",", ":")),
            expires_at=expires_at,
            device_id=state.device_id,
            updated_at=now,
        )
        self._saved_expiry[state.cid] = expires_at
        self._unknown.pop(state.cid, None)
        return self.store.save_dtls_session(record)

    def delete(self, cid: bytes) -> defer.Deferred:
        self._saved_expiry.pop(cid, None)
        return self.store.delete_dtls_session(cid)

    def refresh(self, connections: Iterable, now: float, margin: float) -> list[defer.Deferred]:
        """Re-save live sessions whose stored expiry is less than ``margin`` ahead of the truth."""
        saves = []
        for connection in connections:
            if connection.closed:
                continue
            stored = self._saved_expiry.get(connection.cid, 0.0)
            if connection.last_seen + self.idle_timeout > stored + margin:
                saves.append(self.save(connection.snapshot(), now))
        return saves

    def sweep(self, now: float) -> defer.Deferred:
        """Delete expired sessions from the store (those never loaded again included)."""
        while self._unknown and next(iter(self._unknown.values())) <= now:
            self._unknown.popitem(last=False)
        return self.store.delete_expired_dtls_sessions(now)

    # -- loading -----------------------------------------------------------------------

    def lookup(self, cid: bytes, now: float) -> defer.Deferred:
        """The saved session with this CID, checked and ready for ``DtlsServer.restore``.

        :rtype: Deferred[tuple[SessionState | None, str]]: the state, or None
            and why (for the log).
        :raises LookupRefused: without querying the store.
        """
        until = self._unknown.get(cid)
        if until is not None and until > now:
            raise LookupRefused(f"connection ID {cid.hex()} has no saved session")
        if cid in self._looking:
            raise LookupRefused(f"connection ID {cid.hex()} is being looked up already")
        if len(self._looking) >= self.max_lookups:
            raise LookupRefused(f"{len(self._looking)} session lookups are running")
        self._looking.add(cid)
        d = defer.ensureDeferred(self._load(cid, now))
        d.addBoth(self._done, cid)
        return d

    def _done(self, result, cid: bytes):
        self._looking.discard(cid)
        return result

    async def _load(self, cid: bytes, now: float) -> tuple[SessionState | None, str]:
        record = await self.store.get_dtls_session(cid, now)
        if record is None:
            return self._not_found(cid, now, "no saved session")
        try:
            state = SessionState.from_dict(json.loads(record.state))
            if state.role != SERVER or state.cid != cid:
                raise ValueError("it is not this server's session for that CID")
        except (ValueError, TypeError) as error:
            await self.delete(cid)
            return self._not_found(cid, now, f"the saved session is unusable ({error})")
        if state.device_id is not None:
            device = await self.devices.get_device(state.device_id)
            if device is None or device.public_key != state.peer_public_key:
                await self.delete(cid)
                why = f"device {state.device_id}'s registered key changed since it was saved"
                return self._not_found(cid, now, why)
        self._saved_expiry[cid] = record.expires_at
        return state, "resumed"

    def _not_found(self, cid: bytes, now: float, why: str) -> tuple[None, str]:
        self._unknown[cid] = now + self.negative_ttl
        self._unknown.move_to_end(cid)
        while len(self._unknown) > self.max_negative:
            self._unknown.popitem(last=False)
        return None, why
