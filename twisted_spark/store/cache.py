# -*- test-case-name: tests.test_store_cache -*-
"""A store that answers repeated reads of tokens, users and devices from memory.

Every API call reads its access token, the token's user and the device it
names; on SQLite each read is a trip to the store thread and back.
:class:`CachingStore` wraps any :class:`~twisted_spark.interfaces.IStore`
and keeps what those three reads returned for at most ``ttl`` seconds
(default 1 s).  It is correct by construction for writes made through it:
each one drops the entries it touches before it starts and again once it has
finished, and a read that was under way while a write started is not kept
(a per-table write counter, the epoch, tells).  Writes made elsewhere (the
``keys`` command line on the same database, another node of a cluster) are
seen within ``ttl``; the :class:`~twisted_spark.interfaces.IStoreCache`
methods let a cluster relay drop entries at once.

A device name's lookup (:meth:`CachingStore.list_devices_named`, what a
request naming a device does) keeps only the ids it found, and answers a
repeat through the device cache, checking that each record still has that
name and owner; writes that may change a name or an owner (a new, deleted,
renamed or given-away device) drop every name entry.

What is not cached: a missing token, user, device or name (so a new one
works at once), lists, and every other read.  Token expiry is still checked
on each call (the cached record carries ``expires_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.interfaces import IDtlsSessionStore, IStore, IStoreCache
from twisted_spark.store import normalize_device

__all__ = ["DEFAULT_SIZE", "DEFAULT_TTL", "CachingStore"]

log = Logger()

#: Seconds an entry is trusted: short enough that no cross-node invalidation
#: is needed for a cluster to be safe (README "Performance").
DEFAULT_TTL = 1.0
#: Entries per table; the oldest goes first when a table is full.  Expired
#: entries are dropped as new ones come, so an idle server holds few.
DEFAULT_SIZE = 10_000
#: Device fields whose change can change what a name lookup finds.
RENAMING = frozenset({"name", "owner"})


class _Table:
    """``key -> (value, time stored)``, bounded, with a write counter (``epoch``)."""

    __slots__ = ("entries", "epoch", "size")

    def __init__(self, size: int) -> None:
        self.entries: dict[Hashable, tuple[Any, float]] = {}
        self.epoch = 0
        self.size = size

    def get(self, key: Hashable, now: float, ttl: float) -> Any:
        found = self.entries.get(key)
        if found is None:
            return None
        value, stored_at = found
        if not 0 <= now - stored_at < ttl:
            del self.entries[key]
            return None
        return value

    def put(self, key: Hashable, value: Any, read_at: float, epoch: int, ttl: float) -> None:
        if epoch != self.epoch:  # a write began after this read did: its answer may be old
            return
        entries = self.entries
        entries.pop(key, None)  # entries stay in the order they were read
        while entries:  # so expired ones, and the excess, go from the front
            oldest = next(iter(entries))
            if len(entries) < self.size and read_at - entries[oldest][1] < ttl:
                break
            del entries[oldest]
        entries[key] = (value, read_at)

    def drop(self, key: Hashable | None) -> None:
        self.epoch += 1
        if key is None:
            self.entries.clear()
        else:
            self.entries.pop(key, None)


@implementer(IStore, IDtlsSessionStore, IStoreCache)
class CachingStore:
    """``store`` with cached token, user and device reads (see the module docstring).

    :param store: the :class:`~twisted_spark.interfaces.IStore` to wrap; every
        call goes to it, and attributes not in the interface are its own.
    :param clock: ``IReactorTime`` for the entries' age.
    :param ttl: seconds an entry is trusted; 0 turns caching off.
    :param size: entries per table (tokens, users, devices).
    """

    def __init__(self, store, clock, ttl: float = DEFAULT_TTL, size: int = DEFAULT_SIZE):
        self.store = store
        self.clock = clock
        self.ttl = ttl
        #: Reads answered from memory, and reads passed to the store.
        self.hits = 0
        self.misses = 0
        self._tables = {kind: _Table(size) for kind in ("token", "user", "device", "name")}
        self._listeners: list[Callable[[str, str | None], object]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    # -- IStoreCache ---------------------------------------------------------------

    def invalidate_token(self, token: str) -> None:
        self._tables["token"].drop(token)

    def invalidate_user(self, username: str) -> None:
        self._tables["user"].drop(username)

    def invalidate_device(self, device_id: str) -> None:
        self._tables["device"].drop(device_id)
        self._tables["name"].drop(None)  # what changed is not said: its name may have

    def invalidate_all(self) -> None:
        for table in self._tables.values():
            table.drop(None)

    def add_listener(self, listener: Callable[[str, str | None], object]) -> None:
        self._listeners.append(listener)

    # -- the machinery ---------------------------------------------------------------

    def _read(self, kind: str, key: str, fetch, copy=None) -> defer.Deferred:
        table = self._tables[kind]
        now = self.clock.seconds()
        value = table.get(key, now, self.ttl)
        if value is not None:
            self.hits += 1
            return defer.succeed(value if copy is None else copy(value))
        self.misses += 1
        epoch = table.epoch

        def keep(result):
            if result is not None and self.ttl > 0:
                table.put(key, result if copy is None else copy(result), now, epoch, self.ttl)
            return result

        return fetch(key).addCallback(keep)

    def _write(self, kind: str, key: str | None, write, *args) -> defer.Deferred:
        table = self._tables[kind]
        table.drop(key)

        def written(result):
            table.drop(key)
            for listener in list(self._listeners):
                try:
                    listener(kind, key)
                except Exception:
                    log.failure("Cache listener {listener!r} failed", listener=listener)
            return result

        return defer.maybeDeferred(write, *args).addBoth(written)

    def _device_write(self, device_id: str, renames: bool, write, *args) -> defer.Deferred:
        """A device write; one that may change a name or owner (``renames``)
        also drops the name entries, before and after, as :meth:`_write` does."""
        if not renames:
            return self._write("device", device_id, write, *args)
        names = self._tables["name"]
        names.drop(None)

        def written(result):
            names.drop(None)
            return result

        return self._write("device", device_id, write, *args).addBoth(written)

    # -- users -----------------------------------------------------------------------

    def add_user(self, user):
        return self._write("user", user.username, self.store.add_user, user)

    def get_user(self, username):
        return self._read("user", username, self.store.get_user)

    def list_users(self):
        return self.store.list_users()

    def count_users(self):
        return self.store.count_users()

    # -- tokens ----------------------------------------------------------------------

    def add_token(self, token):
        return self._write("token", token.token, self.store.add_token, token)

    def get_token(self, token):
        return self._read("token", token, self.store.get_token)

    def list_tokens(self, username):
        return self.store.list_tokens(username)

    def delete_token(self, token):
        return self._write("token", token, self.store.delete_token, token)

    def delete_expired(self, now):
        return self._write("token", None, self.store.delete_expired, now)

    # -- devices ---------------------------------------------------------------------

    def get_device(self, device_id):
        return self._read("device", device_id, self.store.get_device, normalize_device)

    def list_devices(self, owner=None):
        return self.store.list_devices(owner)

    def list_devices_named(self, name, owner=None):
        table = self._tables["name"]
        key = (owner, name)
        now = self.clock.seconds()
        ids = table.get(key, now, self.ttl)
        if ids is not None:
            self.hits += 1
            return defer.ensureDeferred(self._still_named(ids, name, owner))
        self.misses += 1
        epoch = table.epoch

        def keep(records):
            if records and self.ttl > 0:
                table.put(key, tuple(r.device_id for r in records), now, epoch, self.ttl)
            return records

        return self.store.list_devices_named(name, owner).addCallback(keep)

    async def _still_named(self, ids, name, owner):
        """The records of the remembered ``ids`` (through the device cache), if
        each still has ``name`` (and ``owner``); else the store's answer (a
        write made elsewhere changed one)."""
        records = [await self.get_device(device_id) for device_id in ids]
        if all(r is not None and r.name == name and owner in (None, r.owner) for r in records):
            return records
        self._tables["name"].drop((owner, name))
        return await self.store.list_devices_named(name, owner)

    def put_device(self, record):
        return self._device_write(record.device_id, True, self.store.put_device, record)

    def update_device(self, device_id, **changes):
        return self._device_write(
            device_id, not RENAMING.isdisjoint(changes),
            lambda: self.store.update_device(device_id, **changes),
        )

    def update_device_if(self, device_id, expected, **changes):
        return self._device_write(
            device_id, not RENAMING.isdisjoint(changes),
            lambda: self.store.update_device_if(device_id, expected, **changes),
        )

    def delete_device(self, device_id):
        return self._device_write(device_id, True, self.store.delete_device, device_id)

    # -- DTLS sessions (not cached) -------------------------------------------------------

    def save_dtls_session(self, record):
        return self.store.save_dtls_session(record)

    def get_dtls_session(self, cid, now):
        return self.store.get_dtls_session(cid, now)

    def delete_dtls_session(self, cid):
        return self.store.delete_dtls_session(cid)

    def delete_expired_dtls_sessions(self, now):
        return self.store.delete_expired_dtls_sessions(now)

    def close(self):
        return self.store.close()
