"""The default :class:`~twisted_spark.interfaces.IStore`: one SQLite file.

All database work runs on one dedicated thread holding one connection, so
the reactor never waits on disk and writes are serialized the way SQLite
wants.  Each write is its own ``BEGIN IMMEDIATE`` transaction and its
Deferred fires only after ``COMMIT`` returned.

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

import json
import os
import sqlite3
from dataclasses import replace

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from twisted_spark.errors import DuplicateUser, SparkError
from twisted_spark.interfaces import IDtlsSessionStore, IStore
from twisted_spark.models import AccessToken, DeviceRecord, DtlsSessionRecord, User
from twisted_spark.store import (
    ConstraintError,
    NameTaken,
    check_device_changes,
    normalize_device,
    still_as_expected,
)
from twisted_spark.store.schema import SCHEMA_VERSION, SchemaTooNew, migrate, schema_version

#: Seconds SQLite waits for another connection's lock before failing.
BUSY_TIMEOUT = 5.0

#: Accepted values of ``PRAGMA synchronous`` (``OFF`` is never acceptable).
SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")

_DEVICE_COLUMNS = (
    "device_id",
    "owner",
    "name",
    "public_key",
    "product_id",
    "platform_id",
    "firmware_version",
    "last_heard",
    "last_ip",
    "last_app",
    "functions",
    "variables",
    "created_at",
)
_SELECT_DEVICE = f"SELECT {', '.join(_DEVICE_COLUMNS)} FROM devices"
_UPSERT_DEVICE = (
    f"INSERT INTO devices ({', '.join(_DEVICE_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _DEVICE_COLUMNS)})"
    " ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _DEVICE_COLUMNS[1:])
)
_DTLS_COLUMNS = "cid, state, expires_at, device_id, updated_at"
_UPSERT_DTLS_SESSION = (
    "INSERT INTO dtls_sessions (cid, device_id, state, updated_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (cid) DO UPDATE SET device_id = excluded.device_id,"
    " state = excluded.state, updated_at = excluded.updated_at,"
    " expires_at = excluded.expires_at"
)
_USER_COLUMNS = "username, password_hash, is_admin, created_at"
_TOKEN_COLUMNS = "token, username, client_id, created_at, expires_at"


class StoreClosed(SparkError, RuntimeError):
    """The store was used after :meth:`SQLiteStore.close`."""


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    """Create the file (0600) if needed, open it, set pragmas, migrate.

    Runs on the store thread.  The connection is in autocommit mode: the
    store issues BEGIN/COMMIT itself so each write is one transaction.
    """
    # Create the file ourselves so it is born private; SQLite gives the -wal
    # and -shm files the database file's permissions.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        # Refuse a newer database before changing anything in it (even its journal).
        found = schema_version(connection)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"could not enable WAL journal (got {mode!r})")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _user(row) -> User:
    username, password_hash, is_admin, created_at = row
    return User(username, password_hash, bool(is_admin), created_at)


def _token(row) -> AccessToken:
    return AccessToken(*row)


def _device(row) -> DeviceRecord:
    values = dict(zip(_DEVICE_COLUMNS, row, strict=True))
    if values["public_key"] is not None:
        values["public_key"] = bytes(values["public_key"])
    values["functions"] = tuple(json.loads(values["functions"]))
    values["variables"] = json.loads(values["variables"])
    return DeviceRecord(**values)


def _dtls_session(row) -> DtlsSessionRecord:
    cid, state, expires_at, device_id, updated_at = row
    return DtlsSessionRecord(bytes.fromhex(cid), state, expires_at, device_id, updated_at)


def _device_params(record: DeviceRecord) -> tuple:
    return (
        record.device_id,
        record.owner,
        record.name,
        record.public_key,
        record.product_id,
        record.platform_id,
        record.firmware_version,
        record.last_heard,
        record.last_ip,
        record.last_app,
        json.dumps(list(record.functions)),
        json.dumps(dict(record.variables)),
        record.created_at,
    )


@implementer(IStore, IDtlsSessionStore)
class SQLiteStore:
    """IStore over a SQLite file; create one with :meth:`open`, end with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, pool: ThreadPool, reactor) -> None:
        """Wrap an open, migrated connection used only from ``pool``'s one thread."""
        self._connection = connection
        self._pool = pool
        self._reactor = reactor
        # None until close() is first called; then the Deferreds it handed out.
        self._close_waiters: list[defer.Deferred] | None = None
        self._closed = False
        # A safety net for owners who never call close(); see _close_at_shutdown.
        self._trigger = reactor.addSystemEventTrigger("during", "shutdown", self._close_at_shutdown)

    @classmethod
    def open(cls, path, reactor=None, *, synchronous: str = "FULL") -> defer.Deferred:
        """Open (creating and migrating as needed) the database at ``path``.

        :param path: a file path (``str`` or ``os.PathLike``), not ``:memory:``.
        :param synchronous: ``PRAGMA synchronous``; see the module docstring.
        :rtype: Deferred[SQLiteStore]; fails with
            :class:`~twisted_spark.store.schema.SchemaTooNew` for a database
            from a newer release, or with the ``sqlite3``/``OSError`` error.
        """
        if reactor is None:
            from twisted.internet import reactor
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        pool = ThreadPool(minthreads=1, maxthreads=1, name="spark-store")
        pool.start()
        d = deferToThreadPool(reactor, pool, _connect, os.fspath(path), synchronous)

        def failed(failure):
            pool.stop()  # the one thread is idle: this join is immediate
            return failure

        d.addCallbacks(lambda connection: cls(connection, pool, reactor), failed)
        return d

    # -- plumbing ------------------------------------------------------------

    def _call(self, function, *args) -> defer.Deferred:
        """Run ``function(connection, *args)`` on the store thread."""
        if self._close_waiters is not None:
            return defer.fail(StoreClosed("the store is closed"))
        return deferToThreadPool(self._reactor, self._pool, function, self._connection, *args)

    def _write(self, function, *args) -> defer.Deferred:
        """Like :meth:`_call`, inside one transaction committed before the Deferred fires."""
        return self._call(_transaction, function, *args)

    def close(self) -> defer.Deferred:
        """Finish queued work, close the connection and stop the thread.

        Safe to call more than once: every call's Deferred fires when the
        connection is closed and the thread gone.  Calls made afterwards fail
        with :class:`StoreClosed`.
        """
        if self._closed:
            return defer.succeed(None)
        waiter = defer.Deferred()
        if self._close_waiters is None:
            self._close_waiters = []
            if self._trigger is not None:
                self._reactor.removeSystemEventTrigger(self._trigger)
                self._trigger = None
            d = deferToThreadPool(self._reactor, self._pool, self._connection.close)
            d.addBoth(self._stopped)
        self._close_waiters.append(waiter)
        return waiter

    def _stopped(self, result) -> None:
        if not self._closed:  # else _close_at_shutdown already stopped the pool
            self._pool.stop()  # the connection is closed and the one thread idle
            self._closed = True
        waiters, self._close_waiters = self._close_waiters, []
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
        self._pool.stop()
        if self._close_waiters is None:  # close() never started: connection still open
            self._close_waiters = []
            self._connection.close()
        self._closed = True

    # -- users ---------------------------------------------------------------

    def add_user(self, user: User) -> defer.Deferred:
        return self._write(_add_user, user)

    def get_user(self, username: str) -> defer.Deferred:
        return self._call(
            _get_one, f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,), _user
        )

    def list_users(self) -> defer.Deferred:
        return self._call(
            _get_all, f"SELECT {_USER_COLUMNS} FROM users ORDER BY username", (), _user
        )

    def count_users(self) -> defer.Deferred:
        return self._call(_get_one, "SELECT count(*) FROM users", (), lambda row: row[0])

    # -- tokens --------------------------------------------------------------

    def add_token(self, token: AccessToken) -> defer.Deferred:
        return self._write(_add_token, token)

    def get_token(self, token: str) -> defer.Deferred:
        return self._call(
            _get_one,
            f"SELECT {_TOKEN_COLUMNS} FROM access_tokens WHERE token = ?",
            (token,),
            _token,
        )

    def list_tokens(self, username: str) -> defer.Deferred:
        return self._call(
            _get_all,
            f"SELECT {_TOKEN_COLUMNS} FROM access_tokens WHERE username = ?"
            " ORDER BY created_at, rowid",
            (username,),
            _token,
        )

    def delete_token(self, token: str) -> defer.Deferred:
        d = self._write(_change, "DELETE FROM access_tokens WHERE token = ?", (token,))
        return d.addCallback(bool)

    def delete_expired(self, now: float) -> defer.Deferred:
        """Remove tokens for which ``AccessToken.expired(now)`` is true."""
        return self._write(
            _change,
            "DELETE FROM access_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (now,),
        )

    # -- devices -------------------------------------------------------------

    def get_device(self, device_id: str) -> defer.Deferred:
        return self._call(_get_one, f"{_SELECT_DEVICE} WHERE device_id = ?", (device_id,), _device)

    def list_devices(self, owner: str | None = None) -> defer.Deferred:
        if owner is None:
            return self._call(_get_all, f"{_SELECT_DEVICE} ORDER BY device_id", (), _device)
        return self._call(
            _get_all, f"{_SELECT_DEVICE} WHERE owner = ? ORDER BY device_id", (owner,), _device
        )

    def put_device(self, record: DeviceRecord) -> defer.Deferred:
        return self._write(_put_device, normalize_device(record))

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
        return self._write(_update_device, device_id, expected, changes)

    def delete_device(self, device_id: str) -> defer.Deferred:
        d = self._write(_change, "DELETE FROM devices WHERE device_id = ?", (device_id,))
        return d.addCallback(bool)

    # -- DTLS sessions ---------------------------------------------------------

    def save_dtls_session(self, record: DtlsSessionRecord) -> defer.Deferred:
        params = (bytes(record.cid).hex(), record.device_id, record.state,
                  record.updated_at, record.expires_at)
        d = self._write(_change, _UPSERT_DTLS_SESSION, params)
        return d.addCallback(lambda _: record)

    def get_dtls_session(self, cid: bytes, now: float) -> defer.Deferred:
        return self._call(
            _get_one,
            f"SELECT {_DTLS_COLUMNS} FROM dtls_sessions WHERE cid = ? AND expires_at > ?",
            (bytes(cid).hex(), now),
            _dtls_session,
        )

    def delete_dtls_session(self, cid: bytes) -> defer.Deferred:
        d = self._write(_change, "DELETE FROM dtls_sessions WHERE cid = ?", (bytes(cid).hex(),))
        return d.addCallback(bool)

    def delete_expired_dtls_sessions(self, now: float) -> defer.Deferred:
        return self._write(_change, "DELETE FROM dtls_sessions WHERE expires_at <= ?", (now,))


# -- what runs on the store thread -------------------------------------------


def _transaction(connection: sqlite3.Connection, function, *args):
    """Run ``function(cursor, *args)`` in BEGIN IMMEDIATE ... COMMIT."""
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        result = function(cursor, *args)
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")
    return result


def _get_one(connection, query, params, convert):
    row = connection.execute(query, params).fetchone()
    return None if row is None else convert(row)


def _get_all(connection, query, params, convert):
    return [convert(row) for row in connection.execute(query, params)]


def _change(cursor, query, params) -> int:
    cursor.execute(query, params)
    return cursor.rowcount


def _add_user(cursor, user: User) -> User:
    try:
        cursor.execute(
            f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?)",
            (user.username, user.password_hash, int(bool(user.is_admin)), user.created_at),
        )
    except sqlite3.IntegrityError as e:
        raise DuplicateUser(user.username) from e
    return user


def _add_token(cursor, token: AccessToken) -> AccessToken:
    try:
        cursor.execute(
            f"INSERT INTO access_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (token.token, token.username, token.client_id, token.created_at, token.expires_at),
        )
    except sqlite3.IntegrityError as e:
        raise ConstraintError(f"cannot store access token: {e}") from e
    return token


def _put_device(cursor, record: DeviceRecord) -> DeviceRecord:
    # The unique index (owner, name) is the guarantee; asking first gives the
    # precise error (inside BEGIN IMMEDIATE nobody can write in between).
    if record.owner is not None and record.name is not None:
        clash = cursor.execute(
            "SELECT 1 FROM devices WHERE owner = ? AND name = ? AND device_id <> ?",
            (record.owner, record.name, record.device_id),
        ).fetchone()
        if clash is not None:
            raise NameTaken(record.owner, record.name)
    try:
        cursor.execute(_UPSERT_DEVICE, _device_params(record))
    except sqlite3.IntegrityError as e:
        raise ConstraintError(f"cannot store device {record.device_id}: {e}") from e
    return normalize_device(record)


def _update_device(cursor, device_id: str, expected: dict, changes: dict) -> DeviceRecord:
    row = cursor.execute(f"{_SELECT_DEVICE} WHERE device_id = ?", (device_id,)).fetchone()
    current = None if row is None else _device(row)
    still_as_expected(device_id, current, expected)
    if current is None:
        record = DeviceRecord(device_id=device_id, **changes)
    else:
        record = replace(current, **changes)
    return _put_device(cursor, normalize_device(record))
