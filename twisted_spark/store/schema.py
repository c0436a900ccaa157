# -*- test-case-name: tests.test_store_sqlite -*-
"""The SQLite schema as an ordered list of forward migrations.

The database's ``PRAGMA user_version`` is the number of migrations applied.
:func:`migrate` applies the missing ones, in order, in one transaction, when
a store opens; a database written by a newer twisted-spark (a version higher
than ``len(MIGRATIONS)``) is refused rather than misread.

To change the schema, append a function ``_mN_what(cursor)`` to
:data:`MIGRATIONS`; never edit or reorder one that has shipped.  A migration
runs inside the caller's transaction, so it must use ``cursor.execute`` (not
``executescript``, which would commit half-way).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from twisted.logger import Logger

from twisted_spark.errors import SparkError

log = Logger()

#: Longest device name (API.md §4); a renamed duplicate stays within it.
_NAME_LIMIT = 63


class SchemaTooNew(SparkError):
    """The database was written by a newer twisted-spark than this one."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than this twisted-spark "
            f"supports ({supported}); upgrade twisted-spark"
        )
        self.found = found
        self.supported = supported


def _m1_initial(cursor: sqlite3.Cursor) -> None:
    """Users, their access tokens, and the devices they own."""
    cursor.execute(
        """
        CREATE TABLE users (
            username TEXT PRIMARY KEY NOT NULL,
            password_hash TEXT NOT NULL,
            is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
            created_at REAL NOT NULL
        )
        """
    )
    cursor.execute(
        """
        CREATE TABLE access_tokens (
            token TEXT PRIMARY KEY NOT NULL,
            username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
            client_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL
        )
        """
    )
    cursor.execute("CREATE INDEX access_tokens_by_user ON access_tokens (username, created_at)")
    cursor.execute(
        "CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at)"
        " WHERE expires_at IS NOT NULL"
    )
    cursor.execute(
        """
        CREATE TABLE devices (
            device_id TEXT PRIMARY KEY NOT NULL,
            owner TEXT REFERENCES users (username) ON DELETE SET NULL,
            name TEXT,
            public_key BLOB,
            product_id INTEGER,
            platform_id INTEGER,
            firmware_version INTEGER,
            last_heard REAL,
            last_ip TEXT,
            last_app TEXT,
            functions TEXT NOT NULL DEFAULT '[]',
            variables TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL DEFAULT 0
        )
        """
    )
    cursor.execute("CREATE INDEX devices_by_owner ON devices (owner, name)")


def _m2_unique_device_names(cursor: sqlite3.Cursor) -> None:
    """UNIQUE (owner, name): one owner never has two devices of one name.

    Earlier versions did not enforce it, so a database may hold duplicates.
    Of each group the oldest device (``created_at``, then id) keeps the name;
    each other one is renamed ``<name>-<device id>`` (cut to fit 63
    characters; unique because ids are), or loses its name if even that is
    taken, and every rename is logged.  NULL owners and names are never
    duplicates (SQL's UNIQUE treats NULLs as distinct), so unowned devices
    may share a name.
    """
    rows = cursor.execute(
        """
        SELECT device_id, owner, name FROM devices d
        WHERE owner IS NOT NULL AND name IS NOT NULL AND EXISTS (
            SELECT 1 FROM devices older
            WHERE older.owner = d.owner AND older.name = d.name
              AND (older.created_at < d.created_at
                   OR (older.created_at = d.created_at AND older.device_id < d.device_id)))
        ORDER BY owner, name, created_at, device_id
        """
    ).fetchall()
    for device_id, owner, name in rows:
        new: str | None = f"{name[: _NAME_LIMIT - len(device_id) - 1]}-{device_id}"
        taken = cursor.execute(
            "SELECT 1 FROM devices WHERE owner = ? AND name = ?", (owner, new)
        ).fetchone()
        if taken is not None:
            new = None
        cursor.execute("UPDATE devices SET name = ? WHERE device_id = ?", (new, device_id))
        log.warn(
            "Device {device_id} of {owner} was called {name!r} like an older device of the "
            "same owner; renamed it to {new!r} (device names are now unique per owner)",
            device_id=device_id, owner=owner, name=name, new=new,
        )
    cursor.execute("DROP INDEX devices_by_owner")  # the unique index serves its lookups
    cursor.execute("CREATE UNIQUE INDEX devices_owner_name ON devices (owner, name)")


def _m3_dtls_sessions(cursor: sqlite3.Cursor) -> None:
    """Gen3 DTLS sessions by connection ID (hex), so devices resume across restarts."""
    cursor.execute(
        """
        CREATE TABLE dtls_sessions (
            cid TEXT PRIMARY KEY NOT NULL,
            device_id TEXT,
            state TEXT NOT NULL,
            updated_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )
        """
    )
    cursor.execute("CREATE INDEX dtls_sessions_by_expiry ON dtls_sessions (expires_at)")


def _m4_webhooks(cursor: sqlite3.Cursor) -> None:
    """Webhooks (API.md §6): the searchable fields as columns, the rest as JSON."""
    cursor.execute(
        """
        CREATE TABLE webhooks (
            hook_id TEXT PRIMARY KEY NOT NULL,
            owner TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
            event TEXT NOT NULL,
            url TEXT NOT NULL,
            request_type TEXT NOT NULL,
            device_id TEXT,
            no_defaults INTEGER NOT NULL DEFAULT 0,
            reject_unauthorized INTEGER NOT NULL DEFAULT 1,
            definition TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        )
        """
    )
    cursor.execute("CREATE INDEX webhooks_by_owner ON webhooks (owner, created_at)")


#: Every migration ever shipped, oldest first; index + 1 is the version it yields.
MIGRATIONS: tuple[Callable[[sqlite3.Cursor], None], ...] = (
    _m1_initial,
    _m2_unique_device_names,
    _m3_dtls_sessions,
    _m4_webhooks,
)

#: The schema version this code reads and writes.
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(connection: sqlite3.Connection) -> int:
    """The number of migrations applied to the database (0 for a new file)."""
    return connection.execute("PRAGMA user_version").fetchone()[0]


def migrate(
    connection: sqlite3.Connection,
    migrations: tuple[Callable[[sqlite3.Cursor], None], ...] = MIGRATIONS,
) -> int:
    """Bring the database up to ``len(migrations)``; return the version it had.

    ``connection`` must be in autocommit mode (``isolation_level=None``).
    All pending migrations and the version bump commit together or not at
    all, and ``BEGIN IMMEDIATE`` keeps a second process from migrating at
    the same time.  Raises :class:`SchemaTooNew` for a newer database.
    """
    supported = len(migrations)
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(connection)
        if found > supported:
            raise SchemaTooNew(found, supported)
        for version in range(found + 1, supported + 1):
            migrations[version - 1](cursor)
            # PRAGMA takes no parameters; version is an int we computed.
            cursor.execute(f"PRAGMA user_version = {int(version)}")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")
    return found
