# -*- test-case-name: tests.test_store_postgres,tests.test_store_contract -*-
"""What runs on the PostgreSQL store's threads: statements and integrity rules.

Every function takes a psycopg cursor and is called by
:class:`~twisted_spark.store.pg_connections.ThreadConnections` (writes
inside one transaction).  Rows convert as in SQLite
(:mod:`twisted_spark.store.rows`).

How conditional writes stay atomic when several nodes write at once:

* users, tokens: the primary keys; a duplicate fails with ``UniqueViolation``.
* every write to a device (put, compare-and-set, delete) first takes a
  transaction-scoped advisory lock on its id, so the read, the comparison
  and the write of :func:`update_device` see no other writer of that id in
  between -- including two writers creating the same new id, where there is
  no row yet to lock with ``SELECT ... FOR UPDATE``;
* one name per owner: the unique index ``devices_owner_name``.  A clash is
  looked up first for a precise error; of two devices renamed to one name
  at once, the index makes the second insert wait for the first commit and
  then fail, which becomes :class:`~twisted_spark.store.NameTaken` too.

Listings sort with ``COLLATE "C"`` (code point order), as SQLite and
Python do, whatever the database's own collation.
"""

from __future__ import annotations

from psycopg import errors as pg_errors

from twisted_spark.errors import DuplicateUser
from twisted_spark.models import AccessToken, DeviceRecord, User, Webhook
from twisted_spark.store import (
    ConstraintError,
    NameTaken,
    TooManyWebhooks,
    normalize_device,
    still_as_expected,
)
from twisted_spark.store.rows import (
    DEVICE_COLUMNS,
    DTLS_COLUMNS,
    INSERT_WEBHOOK,
    SELECT_DEVICE,
    TOKEN_COLUMNS,
    USER_COLUMNS,
    WEBHOOK_COLUMNS,
    device_params,
    device_row,
    webhook_params,
)

#: First key of the advisory locks taken on device ids (the second is hashtext(id)).
DEVICE_LOCK = 0x5350_4B01
#: First key of the advisory locks taken on a webhook owner while counting their hooks.
WEBHOOK_LOCK = 0x5350_4B02

UPSERT_DEVICE = (
    f"INSERT INTO devices ({', '.join(DEVICE_COLUMNS)})"
    f" VALUES ({', '.join('%s' for _ in DEVICE_COLUMNS)})"
    " ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in DEVICE_COLUMNS[1:])
)
UPSERT_DTLS_SESSION = (
    "INSERT INTO dtls_sessions (cid, device_id, state, updated_at, expires_at)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (cid) DO UPDATE SET device_id = excluded.device_id,"
    " state = excluded.state, updated_at = excluded.updated_at,"
    " expires_at = excluded.expires_at"
)

GET_USER = f"SELECT {USER_COLUMNS} FROM users WHERE username = %s"
LIST_USERS = f'SELECT {USER_COLUMNS} FROM users ORDER BY username COLLATE "C"'
COUNT_USERS = "SELECT count(*) FROM users"
GET_TOKEN = f"SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE token = %s"
LIST_TOKENS = (
    f"SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE username = %s ORDER BY created_at, seq"
)
DELETE_TOKEN = "DELETE FROM access_tokens WHERE token = %s"
DELETE_EXPIRED_TOKENS = (
    "DELETE FROM access_tokens WHERE expires_at IS NOT NULL AND expires_at <= %s"
)
GET_DEVICE = f"{SELECT_DEVICE} WHERE device_id = %s"
LIST_DEVICES = f'{SELECT_DEVICE} ORDER BY device_id COLLATE "C"'
LIST_OWNED_DEVICES = f'{SELECT_DEVICE} WHERE owner = %s ORDER BY device_id COLLATE "C"'
LIST_NAMED_DEVICES = f'{SELECT_DEVICE} WHERE name = %s ORDER BY device_id COLLATE "C"'
LIST_OWNED_NAMED_DEVICES = (
    f'{SELECT_DEVICE} WHERE owner = %s AND name = %s ORDER BY device_id COLLATE "C"'
)
GET_DTLS_SESSION = f"SELECT {DTLS_COLUMNS} FROM dtls_sessions WHERE cid = %s AND expires_at > %s"
DELETE_DTLS_SESSION = "DELETE FROM dtls_sessions WHERE cid = %s"
DELETE_EXPIRED_DTLS_SESSIONS = "DELETE FROM dtls_sessions WHERE expires_at <= %s"
GET_WEBHOOK = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE hook_id = %s"
LIST_WEBHOOKS = f'SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, hook_id COLLATE "C"'
LIST_OWNED_WEBHOOKS = (
    f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE owner = %s"
    ' ORDER BY created_at, hook_id COLLATE "C"'
)
DELETE_WEBHOOK = "DELETE FROM webhooks WHERE hook_id = %s"


def get_one(cursor, query, params, convert):
    row = cursor.execute(query, params).fetchone()
    return None if row is None else convert(row)


def get_all(cursor, query, params, convert):
    return [convert(row) for row in cursor.execute(query, params).fetchall()]


def change(cursor, query, params) -> int:
    cursor.execute(query, params)
    return cursor.rowcount


def add_user(cursor, user: User) -> User:
    try:
        cursor.execute(
            f"INSERT INTO users ({USER_COLUMNS}) VALUES (%s, %s, %s, %s)",
            (user.username, user.password_hash, int(bool(user.is_admin)), user.created_at),
        )
    except pg_errors.UniqueViolation as e:
        raise DuplicateUser(user.username) from e
    return user


def add_token(cursor, token: AccessToken) -> AccessToken:
    try:
        cursor.execute(
            f"INSERT INTO access_tokens ({TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
            (token.token, token.username, token.client_id, token.created_at, token.expires_at),
        )
    except pg_errors.IntegrityError as e:
        raise ConstraintError(f"cannot store access token: {e.diag.message_primary}") from e
    return token


def add_webhook(cursor, hook: Webhook, limit: int | None) -> Webhook:
    """Insert ``hook``; with ``limit``, counted under a lock on its owner, so two
    nodes creating at once cannot both pass the count."""
    if limit is not None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                       (WEBHOOK_LOCK, hook.owner))
        (count,) = cursor.execute(
            "SELECT count(*) FROM webhooks WHERE owner = %s", (hook.owner,)).fetchone()
        if count >= limit:
            raise TooManyWebhooks(hook.owner, limit)
    try:
        cursor.execute(INSERT_WEBHOOK.replace("?", "%s"), webhook_params(hook))
    except pg_errors.IntegrityError as e:
        raise ConstraintError(f"cannot store webhook: {e.diag.message_primary}") from e
    return hook


def lock_device(cursor, device_id: str) -> None:
    """Hold ``device_id`` against every other device writer until this transaction ends."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (DEVICE_LOCK, device_id))


def put_device(cursor, record: DeviceRecord) -> DeviceRecord:
    lock_device(cursor, record.device_id)
    if record.owner is not None and record.name is not None:
        clash = cursor.execute(
            "SELECT 1 FROM devices WHERE owner = %s AND name = %s AND device_id <> %s",
            (record.owner, record.name, record.device_id),
        ).fetchone()
        if clash is not None:
            raise NameTaken(record.owner, record.name)
    try:
        cursor.execute(UPSERT_DEVICE, device_params(record))
    except pg_errors.IntegrityError as e:
        named = record.owner is not None and record.name is not None
        if e.diag.constraint_name == "devices_owner_name" and named:
            # Another transaction committed the name between our look and our write.
            raise NameTaken(str(record.owner), str(record.name)) from e
        raise ConstraintError(
            f"cannot store device {record.device_id}: {e.diag.message_primary}") from e
    return normalize_device(record)


def update_device(cursor, device_id: str, expected: dict, changes: dict) -> DeviceRecord:
    lock_device(cursor, device_id)
    current = get_one(cursor, GET_DEVICE, (device_id,), device_row)
    still_as_expected(device_id, current, expected)
    if current is None:
        record = normalize_device(DeviceRecord(device_id=device_id, **changes))
    else:
        record = normalize_device(current, **changes)
    return put_device(cursor, record)


def delete_device(cursor, device_id: str) -> int:
    lock_device(cursor, device_id)
    return change(cursor, "DELETE FROM devices WHERE device_id = %s", (device_id,))
