# -*- test-case-name: tests.test_store_contract -*-
"""An in-memory :class:`~twisted_spark.interfaces.IStore` for tests.

It follows the same contract as the SQLite store, integrity rules included,
so code tested against it behaves the same in production.  Every method
returns an already-fired Deferred.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from twisted_spark.errors import DuplicateUser
from twisted_spark.interfaces import IDtlsSessionStore, IStore
from twisted_spark.interfaces.webhooks import IWebhookStore
from twisted_spark.models import AccessToken, DeviceRecord, DtlsSessionRecord, User, Webhook
from twisted_spark.store import (
    ConstraintError,
    DeviceChanged,
    NameTaken,
    TooManyWebhooks,
    check_device_changes,
    names_clash,
    normalize_device,
    still_as_expected,
)


@implementer(IStore, IDtlsSessionStore, IWebhookStore)
class MemoryStore:
    """Users, tokens and devices in dicts; nothing survives the process."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        # Insertion order breaks created_at ties, like the SQLite rowid does.
        self._tokens: dict[str, AccessToken] = {}
        self._devices: dict[str, DeviceRecord] = {}
        self._dtls_sessions: dict[bytes, DtlsSessionRecord] = {}
        self._webhooks: dict[str, Webhook] = {}

    # -- users ---------------------------------------------------------------

    def add_user(self, user: User) -> defer.Deferred:
        if user.username in self._users:
            return defer.fail(DuplicateUser(user.username))
        self._users[user.username] = user
        return defer.succeed(user)

    def get_user(self, username: str) -> defer.Deferred:
        return defer.succeed(self._users.get(username))

    def list_users(self) -> defer.Deferred:
        return defer.succeed([self._users[name] for name in sorted(self._users)])

    def count_users(self) -> defer.Deferred:
        return defer.succeed(len(self._users))

    # -- tokens --------------------------------------------------------------

    def add_token(self, token: AccessToken) -> defer.Deferred:
        if token.token in self._tokens:
            return defer.fail(ConstraintError("duplicate access token"))
        if token.username not in self._users:
            return defer.fail(ConstraintError(f"unknown user {token.username!r}"))
        self._tokens[token.token] = token
        return defer.succeed(token)

    def get_token(self, token: str) -> defer.Deferred:
        return defer.succeed(self._tokens.get(token))

    def list_tokens(self, username: str) -> defer.Deferred:
        mine = [t for t in self._tokens.values() if t.username == username]
        mine.sort(key=lambda t: t.created_at)  # stable: insertion order on ties
        return defer.succeed(mine)

    def delete_token(self, token: str) -> defer.Deferred:
        return defer.succeed(self._tokens.pop(token, None) is not None)

    def delete_expired(self, now: float) -> defer.Deferred:
        """Remove tokens for which ``AccessToken.expired(now)`` is true."""
        dead = [key for key, t in self._tokens.items() if t.expired(now)]
        for key in dead:
            del self._tokens[key]
        return defer.succeed(len(dead))

    # -- devices -------------------------------------------------------------

    def _check_device(self, record: DeviceRecord) -> None:
        """The integrity rules of a device write: a known owner, a name unique to it."""
        if record.owner is not None and record.owner not in self._users:
            raise ConstraintError(f"unknown owner {record.owner!r}")
        if record.owner is None or record.name is None:
            return  # nothing to compare (and most writes are last_heard updates)
        if any(names_clash(record, other) for other in self._devices.values()):
            raise NameTaken(record.owner, record.name)

    def get_device(self, device_id: str) -> defer.Deferred:
        record = self._devices.get(device_id)
        return defer.succeed(None if record is None else normalize_device(record))

    def list_devices(self, owner: str | None = None) -> defer.Deferred:
        chosen = [
            normalize_device(self._devices[key])
            for key in sorted(self._devices)
            if owner is None or self._devices[key].owner == owner
        ]
        return defer.succeed(chosen)

    def list_devices_named(self, name: str, owner: str | None = None) -> defer.Deferred:
        chosen = [
            normalize_device(self._devices[key])
            for key in sorted(self._devices)
            if self._devices[key].name == name
            and (owner is None or self._devices[key].owner == owner)
        ]
        return defer.succeed(chosen)

    def put_device(self, record: DeviceRecord) -> defer.Deferred:
        record = normalize_device(record)
        try:
            self._check_device(record)
        except ConstraintError as e:
            return defer.fail(e)
        self._devices[record.device_id] = record
        return defer.succeed(normalize_device(record))

    def update_device(self, device_id: str, **changes) -> defer.Deferred:
        return self.update_device_if(device_id, {}, **changes)

    def update_device_if(self, device_id: str, expected: dict, **changes) -> defer.Deferred:
        """Compare and set in one step (nothing else runs between them here)."""
        try:
            check_device_changes(expected)
            check_device_changes(changes)
            current = self._devices.get(device_id)
            still_as_expected(device_id, current, expected)
            if current is None:
                record = normalize_device(DeviceRecord(device_id=device_id, **changes))
            else:
                record = normalize_device(current, **changes)
            self._check_device(record)
        except (TypeError, ConstraintError, DeviceChanged) as e:
            return defer.fail(e)
        self._devices[device_id] = record
        return defer.succeed(normalize_device(record))

    def delete_device(self, device_id: str) -> defer.Deferred:
        return defer.succeed(self._devices.pop(device_id, None) is not None)

    # -- DTLS sessions ---------------------------------------------------------

    def save_dtls_session(self, record: DtlsSessionRecord) -> defer.Deferred:
        self._dtls_sessions[bytes(record.cid)] = record
        return defer.succeed(record)

    def get_dtls_session(self, cid: bytes, now: float) -> defer.Deferred:
        record = self._dtls_sessions.get(bytes(cid))
        return defer.succeed(record if record is not None and record.expires_at > now else None)

    def delete_dtls_session(self, cid: bytes) -> defer.Deferred:
        return defer.succeed(self._dtls_sessions.pop(bytes(cid), None) is not None)

    def delete_expired_dtls_sessions(self, now: float) -> defer.Deferred:
        dead = [cid for cid, record in self._dtls_sessions.items() if record.expires_at <= now]
        for cid in dead:
            del self._dtls_sessions[cid]
        return defer.succeed(len(dead))

    # -- webhooks --------------------------------------------------------------

    def add_webhook(self, hook: Webhook, limit: int | None = None) -> defer.Deferred:
        if hook.owner not in self._users:
            return defer.fail(ConstraintError(f"unknown user {hook.owner!r}"))
        if hook.hook_id in self._webhooks:
            return defer.fail(ConstraintError("duplicate webhook id"))
        owned = sum(1 for h in self._webhooks.values() if h.owner == hook.owner)
        if limit is not None and owned >= limit:
            return defer.fail(TooManyWebhooks(hook.owner, limit))
        self._webhooks[hook.hook_id] = hook
        return defer.succeed(hook)

    def get_webhook(self, hook_id: str) -> defer.Deferred:
        return defer.succeed(self._webhooks.get(hook_id))

    def list_webhooks(self, owner: str | None = None) -> defer.Deferred:
        hooks = [h for h in self._webhooks.values() if owner is None or h.owner == owner]
        return defer.succeed(sorted(hooks, key=lambda h: (h.created_at, h.hook_id)))

    def delete_webhook(self, hook_id: str) -> defer.Deferred:
        return defer.succeed(self._webhooks.pop(hook_id, None) is not None)

    def close(self) -> defer.Deferred:
        return defer.succeed(None)
