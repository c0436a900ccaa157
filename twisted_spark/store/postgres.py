# -*- test-case-name: tests.test_store_postgres,tests.test_store_contract -*-
"""The :class:`~twisted_spark.interfaces.IStore` several nodes share: PostgreSQL.

``--database postgresql://USER@HOST:PORT/DBNAME`` selects it.  It holds the
same tables as the SQLite store, built by the same numbered migrations
(:mod:`twisted_spark.store.schema`), and passes the same contract suite.
The statements and the rules that keep conditional writes atomic across
nodes are in :mod:`twisted_spark.store.postgres_ops`; connections and
reconnection in :mod:`twisted_spark.store.pg_connections`.

Threads, not psycopg's async API: all database work runs on the bounded
``database`` executor (:mod:`twisted_spark.executors`), each thread with
its own blocking connection.  psycopg's ``AsyncConnection`` needs an asyncio
loop, so under Twisted it would mean running the asyncio reactor (every
other part of the server, and every test, would change reactor) or
bridging each call into a second loop in another thread anyway.  Threads
keep the reactor choice free, bound the load on the server to the pool's
size (4 connections; a burst queues in the executor instead of opening
more), and give the store the same shape as the SQLite one: a function run
elsewhere, its result delivered to the reactor as a Deferred.  The cost, a
thread hop per call, is measured in ``bench/bench_store.py``.

Durability: a write's Deferred fires after PostgreSQL acknowledged its
COMMIT, which with the default ``synchronous_commit = on`` means the WAL
was flushed on the server.  When the database cannot be reached, calls fail
with :class:`~twisted_spark.errors.StoreUnavailable` (the API answers 503),
one warning is logged per outage, and the store reconnects by itself.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_spark.errors import StoreUnavailable
from twisted_spark.executors import DATABASE_THREADS, ThreadExecutor
from twisted_spark.interfaces import IDtlsSessionStore, IExecutor, IStore
from twisted_spark.interfaces.webhooks import IWebhookStore
from twisted_spark.models import AccessToken, DeviceRecord, DtlsSessionRecord, User, Webhook
from twisted_spark.store import StoreClosed, check_device_changes, normalize_device
from twisted_spark.store import postgres_ops as ops
from twisted_spark.store.pg_connections import ThreadConnections
from twisted_spark.store.rows import (
    device_row,
    dtls_session_row,
    token_row,
    user_row,
    webhook_row,
)
from twisted_spark.store.schema import migrate_postgres
from twisted_spark.store.url import redact_url

log = Logger()


def _migrate(connections: ThreadConnections) -> int:
    """Open this thread's connection and bring the schema up to date (store thread)."""
    return migrate_postgres(connections.connection())


@implementer(IStore, IDtlsSessionStore, IWebhookStore)
class PostgresStore:
    """IStore over a PostgreSQL database; create one with :meth:`open`, end with :meth:`close`."""

    def __init__(self, connections: ThreadConnections, executor: IExecutor, reactor) -> None:
        """Wrap ``connections`` (to a migrated database), used only from ``executor``'s threads."""
        self._connections = connections
        self._executor = executor
        self._reactor = reactor
        #: Calls handed to the executor and not finished yet.
        self._running = 0
        self._idle: list[defer.Deferred] = []
        self._close_waiters: list[defer.Deferred] | None = None
        self._closed = False
        #: False from the first failure to reach the database until a call succeeds.
        self.reachable = True
        self._trigger = reactor.addSystemEventTrigger("during", "shutdown", self._close_at_shutdown)

    @classmethod
    def open(cls, url: str, reactor=None, *, executor: IExecutor | None = None) -> defer.Deferred:
        """Connect to ``url`` and migrate the schema (under an advisory lock).

        :param url: a ``postgresql://`` (or ``postgres://``) libpq URI.
        :param executor: runs every database call (``Executors.database``);
            by default a new one of :data:`DATABASE_THREADS` threads.  The
            store owns it: :meth:`close` stops it.
        :rtype: Deferred[PostgresStore]; fails with
            :class:`~twisted_spark.errors.StoreUnavailable` if the database
            cannot be reached, or :class:`~twisted_spark.store.schema.SchemaTooNew`.
        """
        if reactor is None:
            from twisted.internet import reactor
        if executor is None:
            executor = ThreadExecutor(reactor, "database", DATABASE_THREADS)
        connections = ThreadConnections(url)
        d = executor.run(_migrate, connections)

        def failed(failure):
            executor.stop()
            connections.close_all()
            return failure

        d.addCallbacks(lambda _: cls(connections, executor, reactor), failed)
        return d

    @property
    def url(self) -> str:
        """The database URL, without its password."""
        return redact_url(self._connections.url)

    # -- plumbing ------------------------------------------------------------

    def _run(self, write: bool, function, *args) -> defer.Deferred:
        if self._close_waiters is not None:
            return defer.fail(StoreClosed("the store is closed"))
        self._running += 1
        return self._executor.run(self._connections.run, function, args, write).addBoth(self._done)

    def _call(self, function, *args) -> defer.Deferred:
        """A read: ``function(cursor, *args)`` as a single statement."""
        return self._run(False, function, *args)

    def _write(self, function, *args) -> defer.Deferred:
        """A write: in one transaction, committed before the Deferred fires."""
        return self._run(True, function, *args)

    def _done(self, result):
        self._running -= 1
        if not self._running:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
        if isinstance(result, Failure) and result.check(StoreUnavailable):
            if self.reachable:
                self.reachable = False
                log.warn("{message}; answering 503 until it is back (reconnecting on each "
                         "request)", message=result.getErrorMessage())
        elif not self.reachable:
            self.reachable = True
            log.info("PostgreSQL at {url} is reachable again", url=self.url)
        return result

    def close(self) -> defer.Deferred:
        """Let running calls finish, close the connections and stop the threads.

        Safe to call more than once; calls made afterwards fail with
        :class:`~twisted_spark.store.StoreClosed`.
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
        idle: defer.Deferred[None] = defer.Deferred()
        if self._running:
            self._idle.append(idle)
        else:
            idle.callback(None)
        idle.addCallback(lambda _: self._executor.run(self._connections.close_all))
        idle.addBoth(self._stopped)
        return waiter

    def _stopped(self, result) -> None:
        if not self._closed:
            self._executor.stop()  # nothing is queued: the threads are idle
            self._closed = True
        waiters, self._close_waiters = self._close_waiters or [], []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    def _close_at_shutdown(self) -> None:
        """At reactor shutdown, if the owner did not close: finish queued work, close.

        As :meth:`SQLiteStore._close_at_shutdown
        <twisted_spark.store.sqlite.SQLiteStore._close_at_shutdown>`: the
        reactor loop has ended, so this blocks briefly instead of waiting.
        """
        self._trigger = None
        if self._closed:
            return
        self._executor.stop()  # runs what is queued, then joins the threads
        self._connections.close_all()
        self._closed = True

    # -- users ---------------------------------------------------------------

    def add_user(self, user: User) -> defer.Deferred:
        return self._write(ops.add_user, user)

    def get_user(self, username: str) -> defer.Deferred:
        return self._call(ops.get_one, ops.GET_USER, (username,), user_row)

    def list_users(self) -> defer.Deferred:
        return self._call(ops.get_all, ops.LIST_USERS, (), user_row)

    def count_users(self) -> defer.Deferred:
        return self._call(ops.get_one, ops.COUNT_USERS, (), lambda row: row[0])

    # -- tokens --------------------------------------------------------------

    def add_token(self, token: AccessToken) -> defer.Deferred:
        return self._write(ops.add_token, token)

    def get_token(self, token: str) -> defer.Deferred:
        return self._call(ops.get_one, ops.GET_TOKEN, (token,), token_row)

    def list_tokens(self, username: str) -> defer.Deferred:
        return self._call(ops.get_all, ops.LIST_TOKENS, (username,), token_row)

    def delete_token(self, token: str) -> defer.Deferred:
        return self._write(ops.change, ops.DELETE_TOKEN, (token,)).addCallback(bool)

    def delete_expired(self, now: float) -> defer.Deferred:
        """Remove tokens for which ``AccessToken.expired(now)`` is true."""
        return self._write(ops.change, ops.DELETE_EXPIRED_TOKENS, (now,))

    # -- devices -------------------------------------------------------------

    def get_device(self, device_id: str) -> defer.Deferred:
        return self._call(ops.get_one, ops.GET_DEVICE, (device_id,), device_row)

    def list_devices(self, owner: str | None = None) -> defer.Deferred:
        if owner is None:
            return self._call(ops.get_all, ops.LIST_DEVICES, (), device_row)
        return self._call(ops.get_all, ops.LIST_OWNED_DEVICES, (owner,), device_row)

    def list_devices_named(self, name: str, owner: str | None = None) -> defer.Deferred:
        if owner is None:
            return self._call(ops.get_all, ops.LIST_NAMED_DEVICES, (name,), device_row)
        return self._call(ops.get_all, ops.LIST_OWNED_NAMED_DEVICES, (owner, name), device_row)

    def put_device(self, record: DeviceRecord) -> defer.Deferred:
        return self._write(ops.put_device, normalize_device(record))

    def update_device(self, device_id: str, **changes) -> defer.Deferred:
        return self.update_device_if(device_id, {}, **changes)

    def update_device_if(self, device_id: str, expected: dict, **changes) -> defer.Deferred:
        """Lock the id, read, compare and write in one transaction (``postgres_ops``)."""
        try:
            check_device_changes(expected)
            check_device_changes(changes)
        except TypeError as e:
            return defer.fail(e)
        return self._write(ops.update_device, device_id, expected, changes)

    def delete_device(self, device_id: str) -> defer.Deferred:
        return self._write(ops.delete_device, device_id).addCallback(bool)

    # -- DTLS sessions ---------------------------------------------------------

    def save_dtls_session(self, record: DtlsSessionRecord) -> defer.Deferred:
        params = (bytes(record.cid).hex(), record.device_id, record.state,
                  record.updated_at, record.expires_at)
        d = self._write(ops.change, ops.UPSERT_DTLS_SESSION, params)
        return d.addCallback(lambda _: record)

    def get_dtls_session(self, cid: bytes, now: float) -> defer.Deferred:
        return self._call(
            ops.get_one, ops.GET_DTLS_SESSION, (bytes(cid).hex(), now), dtls_session_row)

    def delete_dtls_session(self, cid: bytes) -> defer.Deferred:
        d = self._write(ops.change, ops.DELETE_DTLS_SESSION, (bytes(cid).hex(),))
        return d.addCallback(bool)

    def delete_expired_dtls_sessions(self, now: float) -> defer.Deferred:
        return self._write(ops.change, ops.DELETE_EXPIRED_DTLS_SESSIONS, (now,))

    # -- webhooks --------------------------------------------------------------

    def add_webhook(self, hook: Webhook, limit: int | None = None) -> defer.Deferred:
        return self._write(ops.add_webhook, hook, limit)

    def get_webhook(self, hook_id: str) -> defer.Deferred:
        return self._call(ops.get_one, ops.GET_WEBHOOK, (hook_id,), webhook_row)

    def list_webhooks(self, owner: str | None = None) -> defer.Deferred:
        if owner is None:
            return self._call(ops.get_all, ops.LIST_WEBHOOKS, (), webhook_row)
        return self._call(ops.get_all, ops.LIST_OWNED_WEBHOOKS, (owner,), webhook_row)

    def delete_webhook(self, hook_id: str) -> defer.Deferred:
        return self._write(ops.change, ops.DELETE_WEBHOOK, (hook_id,)).addCallback(bool)
