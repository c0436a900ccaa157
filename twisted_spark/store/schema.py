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

from twisted_spark.errors import SparkError


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


#: Every migration ever shipped, oldest first; index + 1 is the version it yields.
MIGRATIONS: tuple[Callable[[sqlite3.Cursor], None], ...] = (_m1_initial,)

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
