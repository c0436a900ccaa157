# -*- test-case-name: tests.test_store_sqlite,tests.test_store_contract -*-
"""The default :class:`~twisted_spark.interfaces.IStore`: one SQLite file.

All database work runs on one dedicated thread holding one connection (the
``store`` executor of :mod:`twisted_spark.executors`), so the reactor never
waits on disk and writes are serialized the way SQLite wants.  Each write
commits in a ``BEGIN IMMEDIATE`` transaction and its Deferred fires only
after ``COMMIT`` returned; the writes that queue up while the thread is
busy share one transaction (:mod:`twisted_spark.store.group_commit`).
The statements themselves, and opening the file, are in
:mod:`twisted_spark.store.sqlite_ops`.

Durability: WAL journal with ``synchronous=FULL`` (the default here) fsyncs
the WAL on every commit, so an acknowledged write survives a SIGKILL *and*
an OS crash or power loss.  ``NORMAL`` also survives a SIGKILL but may lose
the last commits on power loss; the writes this server makes (tokens,
claims, renames) are few and users expect them to stick, so FULL is worth
its fsync.  Measured on the development VM (ext4, virtio disk), token
inserts: FULL 3,800/s one at a time and 5,200/s pipelined, one fdatasync
per commit (strace); NORMAL 11,000/s and 15,000/s, fsync only at WAL
checkpoints.  A disk that really flushes its cache costs FULL ~0.1-10 ms per
commit, still far above this server's write rate.
"""

from __future__ import annotations

import os
import sqlite3

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_spark.executors import ThreadExecutor
from twisted_spark.interfaces import IDtlsSessionStore, IExecutor, IStore
from twisted_spark.interfaces.webhooks import IWebhookStore
from twisted_spark.models import AccessToken, DeviceRecord, DtlsSessionRecord, User, Webhook
from twisted_spark.store import StoreClosed, check_device_changes, normalize_device
from twisted_spark.store.group_commit import GroupCommit
from twisted_spark.store.sqlite_ops import (
    DTLS_COLUMNS,
    SELECT_DEVICE,
    SYNCHRONOUS_MODES,
    TOKEN_COLUMNS,
    UPSERT_DTLS_SESSION,
    USER_COLUMNS,
    WEBHOOK_COLUMNS,
    add_token,
    add_user,
    add_webhook,
    change,
    connect,
    device_row,
    dtls_session_row,
    get_all,
    get_one,
    put_device,
    token_row,
    update_device,
    user_row,
    webhook_row,
)


@implementer(IStore, IDtlsSessionStore, IWebhookStore)
class SQLiteStore:
    """IStore over a SQLite file; create one with :meth:`open`, end with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, executor: IExecutor, reactor) -> None:
        """Wrap an open, migrated connection used only from ``executor``'s one thread."""
        self._connection = connection
        self._executor = executor
        self._reactor = reactor
        self._group_commit = GroupCommit(executor, connection)
        # None until close() is first called; then the Deferreds it handed out.
        self._close_waiters: list[defer.Deferred] | None = None
        self._closed = False
        # A safety net for owners who never call close(); see _close_at_shutdown.
        self._trigger = reactor.addSystemEventTrigger("during", "shutdown", self._close_at_shutdown)

    @classmethod
    def open(
        cls, path, reactor=None, *, synchronous: str = "FULL", executor: IExecutor | None = None
    ) -> defer.Deferred:
        """Open (creating and migrating as needed) the database at ``path``.

        :param path: a file path (``str`` or ``os.PathLike``), not ``:memory:``.
        :param synchronous: ``PRAGMA synchronous``; see the module docstring.
        :param executor: runs every database call, one at a time and in order
            (one thread: ``Executors.store``); by default a new one-thread
            executor.  The store owns it: :meth:`close` stops it.
        :rtype: Deferred[SQLiteStore]; fails with
            :class:`~twisted_spark.store.schema.SchemaTooNew` for a database
            from a newer release, or with the ``sqlite3``/``OSError`` error.
        """
        if reactor is None:
            from twisted.internet import reactor
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        if executor is None:
            executor = ThreadExecutor(reactor, "store", 1)
        d = executor.run(connect, os.fspath(path), synchronous)

        def failed(failure):
            executor.stop()  # the one thread is idle: this join is immediate
            return failure

        d.addCallbacks(lambda connection: cls(connection, executor, reactor), failed)
        return d

    # -- plumbing ------------------------------------------------------------

    def _call(self, function, *args) -> defer.Deferred:
        """Run ``function(connection, *args)`` on the store thread."""
        if self._close_waiters is not None:
            return defer.fail(StoreClosed("the store is closed"))
        return self._executor.run(function, self._connection, *args)

    def _write(self, function, *args) -> defer.Deferred:
        """Like :meth:`_call`, inside a transaction committed before the Deferred fires."""
        if self._close_waiters is not None:
            return defer.fail(StoreClosed("the store is closed"))
        return self._group_commit.write(function, *args)

    def close(self) -> defer.Deferred:
        """Finish queued work, close the connection and stop the thread.

        Safe to call more than once: every call's Deferred fires when the
        connection is closed and the thread gone.  Calls made afterwards fail
        with :class:`StoreClosed`.
        """
        if self._closed:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._close_waiters is not None:
            self._close_waiters.append(waiter)
            return waiter
        self._close_waiters = [waiter]
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
        d = self._executor.run(self._connection.close)
        d.addBoth(self._stopped)
        return waiter

    def _stopped(self, result) -> None:
        if not self._closed:  # else _close_at_shutdown already stopped the executor
            self._executor.stop()  # the connection is closed and the one thread idle
            self._closed = True
        waiters, self._close_waiters = self._close_waiters or [], []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    def _close_at_shutdown(self) -> None:
        """Close synchronously at reactor shutdown if the owner did not.

        Without this the store's (non-daemon) thread would keep the process
        alive after the reactor stops.  It runs in the "during" phase, after
        every "before" trigger -- such as a service's stopService that still
        writes -- has finished, but after the reactor loop has ended, so it
        cannot wait on a Deferred: like adbapi, it blocks briefly instead.
        ``ThreadPool.stop`` runs the queued work before the thread exits, so
        writes already requested are committed.
        """
        self._trigger = None  # the reactor has consumed it; never remove it now
        if self._closed:
            return
        self._executor.stop()
        if self._close_waiters is None:  # close() never started: connection still open
            self._close_waiters = []
            self._connection.close()
        self._closed = True

    # -- users ---------------------------------------------------------------

    def add_user(self, user: User) -> defer.Deferred:
        return self._write(add_user, user)

    def get_user(self, username: str) -> defer.Deferred:
        return self._call(
            get_one, f"SELECT {USER_COLUMNS} FROM users WHERE username = ?", (username,), user_row
        )

    def list_users(self) -> defer.Deferred:
        return self._call(
            get_all, f"SELECT {USER_COLUMNS} FROM users ORDER BY username", (), user_row
        )

    def count_users(self) -> defer.Deferred:
        return self._call(get_one, "SELECT count(*) FROM users", (), lambda row: row[0])

    # -- tokens --------------------------------------------------------------

    def add_token(self, token: AccessToken) -> defer.Deferred:
        return self._write(add_token, token)

    def get_token(self, token: str) -> defer.Deferred:
        return self._call(
            get_one,
            f"SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE token = ?",
            (token,),
            token_row,
        )

    def list_tokens(self, username: str) -> defer.Deferred:
        return self._call(
            get_all,
            f"SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE username = ?"
            " ORDER BY created_at, rowid",
            (username,),
            token_row,
        )

    def delete_token(self, token: str) -> defer.Deferred:
        d = self._write(change, "DELETE FROM access_tokens WHERE token = ?", (token,))
        return d.addCallback(bool)

    def delete_expired(self, now: float) -> defer.Deferred:
        """Remove tokens for which ``AccessToken.expired(now)`` is true."""
        return self._write(
            change,
            "DELETE FROM access_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (now,),
        )

    # -- devices -------------------------------------------------------------

    def get_device(self, device_id: str) -> defer.Deferred:
        return self._call(get_one, f"{SELECT_DEVICE} WHERE device_id = ?", (device_id,), device_row)

    def list_devices(self, owner: str | None = None) -> defer.Deferred:
        if owner is None:
            return self._call(get_all, f"{SELECT_DEVICE} ORDER BY device_id", (), device_row)
        return self._call(
            get_all, f"{SELECT_DEVICE} WHERE owner = ? ORDER BY device_id", (owner,), device_row
        )

    def list_devices_named(self, name: str, owner: str | None = None) -> defer.Deferred:
        if owner is None:
            return self._call(
                get_all, f"{SELECT_DEVICE} WHERE name = ? ORDER BY device_id", (name,), device_row
            )
        return self._call(
            get_all, f"{SELECT_DEVICE} WHERE owner = ? AND name = ? ORDER BY device_id",
            (owner, name), device_row,
        )

    def put_device(self, record: DeviceRecord) -> defer.Deferred:
        return self._write(put_device, normalize_device(record))

    def update_device(self, device_id: str, **changes) -> defer.Deferred:
        return self.update_device_if(device_id, {}, **changes)

    def update_device_if(self, device_id: str, expected: dict, **changes) -> defer.Deferred:
        """Read, compare and write in one ``BEGIN IMMEDIATE`` transaction.

        The write lock is taken before the read, so no other connection (or
        process) can change the row between the comparison and the write.
        """
        try:
            check_device_changes(expected)
            check_device_changes(changes)
        except TypeError as e:
            return defer.fail(e)
        return self._write(update_device, device_id, expected, changes)

    def delete_device(self, device_id: str) -> defer.Deferred:
        d = self._write(change, "DELETE FROM devices WHERE device_id = ?", (device_id,))
        return d.addCallback(bool)

    # -- DTLS sessions ---------------------------------------------------------

    def save_dtls_session(self, record: DtlsSessionRecord) -> defer.Deferred:
        params = (bytes(record.cid).hex(), record.device_id, record.state,
                  record.updated_at, record.expires_at)
        d = self._write(change, UPSERT_DTLS_SESSION, params)
        return d.addCallback(lambda _: record)

    def get_dtls_session(self, cid: bytes, now: float) -> defer.Deferred:
        return self._call(
            get_one,
            f"SELECT {DTLS_COLUMNS} FROM dtls_sessions WHERE cid = ? AND expires_at > ?",
            (bytes(cid).hex(), now),
            dtls_session_row,
        )

    def delete_dtls_session(self, cid: bytes) -> defer.Deferred:
        d = self._write(change, "DELETE FROM dtls_sessions WHERE cid = ?", (bytes(cid).hex(),))
        return d.addCallback(bool)

    def delete_expired_dtls_sessions(self, now: float) -> defer.Deferred:
        return self._write(change, "DELETE FROM dtls_sessions WHERE expires_at <= ?", (now,))

    # -- webhooks --------------------------------------------------------------

    def add_webhook(self, hook: Webhook, limit: int | None = None) -> defer.Deferred:
        return self._write(add_webhook, hook, limit)

    def get_webhook(self, hook_id: str) -> defer.Deferred:
        return self._call(get_one, f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE hook_id = ?",
                          (hook_id,), webhook_row)

    def list_webhooks(self, owner: str | None = None) -> defer.Deferred:
        query = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks"
        if owner is None:
            return self._call(get_all, f"{query} ORDER BY created_at, hook_id", (), webhook_row)
        return self._call(get_all, f"{query} WHERE owner = ? ORDER BY created_at, hook_id",
                          (owner,), webhook_row)

    def delete_webhook(self, hook_id: str) -> defer.Deferred:
        d = self._write(change, "DELETE FROM webhooks WHERE hook_id = ?", (hook_id,))
        return d.addCallback(bool)
