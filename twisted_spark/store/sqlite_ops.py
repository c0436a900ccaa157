# -*- test-case-name: tests.test_store_sqlite,tests.test_store_contract -*-
"""What runs on the SQLite store's thread: opening, statements, row conversion.

Every function here takes the connection (or a cursor inside a transaction)
and is called only from the store's one thread by
:class:`~twisted_spark.store.sqlite.SQLiteStore`.
"""

from __future__ import annotations

import os
import sqlite3

from twisted_spark.errors import DuplicateUser
from twisted_spark.models import AccessToken, DeviceRecord, User, Webhook
from twisted_spark.store import (
    ConstraintError,
    NameTaken,
    TooManyWebhooks,
    normalize_device,
    still_as_expected,
)
from twisted_spark.store.rows import (  # noqa: F401  (sqlite.py imports them from here)
    DEVICE_COLUMNS,
    DTLS_COLUMNS,
    INSERT_WEBHOOK,
    SELECT_DEVICE,
    TOKEN_COLUMNS,
    USER_COLUMNS,
    WEBHOOK_COLUMNS,
    device_params,
    device_row,
    dtls_session_row,
    token_row,
    user_row,
    webhook_params,
    webhook_row,
)
from twisted_spark.store.schema import SCHEMA_VERSION, SchemaTooNew, migrate, schema_version

#: Seconds SQLite waits for another connection's lock before failing.
BUSY_TIMEOUT = 5.0

#: Accepted values of ``PRAGMA synchronous`` (``OFF`` is never acceptable).
SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")

UPSERT_DEVICE = (
    f"INSERT INTO devices ({', '.join(DEVICE_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in DEVICE_COLUMNS)})"
    " ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in DEVICE_COLUMNS[1:])
)
UPSERT_DTLS_SESSION = (
    "INSERT INTO dtls_sessions (cid, device_id, state, updated_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (cid) DO UPDATE SET device_id = excluded.device_id,"
    " state = excluded.state, updated_at = excluded.updated_at,"
    " expires_at = excluded.expires_at"
)


def connect(path: str, synchronous: str) -> sqlite3.Connection:
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


def add_webhook(cursor, hook: Webhook, limit: int | None) -> Webhook:
    if limit is not None:
        (count,) = cursor.execute(
            "SELECT count(*) FROM webhooks WHERE owner = ?", (hook.owner,)).fetchone()
        if count >= limit:
            raise TooManyWebhooks(hook.owner, limit)
    try:
        cursor.execute(INSERT_WEBHOOK, webhook_params(hook))
    except sqlite3.IntegrityError as error:
        raise ConstraintError(str(error)) from error
    return hook


def transaction(connection: sqlite3.Connection, function, *args):
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


def get_one(connection, query, params, convert):
    row = connection.execute(query, params).fetchone()
    return None if row is None else convert(row)


def get_all(connection, query, params, convert):
    return [convert(row) for row in connection.execute(query, params)]


def change(cursor, query, params) -> int:
    cursor.execute(query, params)
    return cursor.rowcount


def add_user(cursor, user: User) -> User:
    try:
        cursor.execute(
            f"INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?)",
            (user.username, user.password_hash, int(bool(user.is_admin)), user.created_at),
        )
    except sqlite3.IntegrityError as e:
        raise DuplicateUser(user.username) from e
    return user


def add_token(cursor, token: AccessToken) -> AccessToken:
    try:
        cursor.execute(
            f"INSERT INTO access_tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (token.token, token.username, token.client_id, token.created_at, token.expires_at),
        )
    except sqlite3.IntegrityError as e:
        raise ConstraintError(f"cannot store access token: {e}") from e
    return token


def put_device(cursor, record: DeviceRecord) -> DeviceRecord:
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
        cursor.execute(UPSERT_DEVICE, device_params(record))
    except sqlite3.IntegrityError as e:
        raise ConstraintError(f"cannot store device {record.device_id}: {e}") from e
    return normalize_device(record)


def update_device(cursor, device_id: str, expected: dict, changes: dict) -> DeviceRecord:
    row = cursor.execute(f"{SELECT_DEVICE} WHERE device_id = ?", (device_id,)).fetchone()
    current = None if row is None else device_row(row)
    still_as_expected(device_id, current, expected)
    if current is None:
        record = normalize_device(DeviceRecord(device_id=device_id, **changes))
    else:
        record = normalize_device(current, **changes)
    return put_device(cursor, record)
