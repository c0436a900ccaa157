# -*- test-case-name: tests.test_store_sqlite,tests.test_store_postgres -*-
"""The schema as ONE ordered list of forward migrations, for SQLite and PostgreSQL.

The number of migrations applied is the schema version: SQLite keeps it in
``PRAGMA user_version``, PostgreSQL in the one-row table ``schema_version``.
:func:`migrate` (SQLite) and :func:`migrate_postgres` apply the missing ones,
in order, in one transaction, when a store opens; a database written by a
newer twisted-spark (a version higher than ``len(MIGRATIONS)``) is refused
rather than misread.  On PostgreSQL the transaction first takes an advisory
lock, so two nodes starting at once migrate one after the other.

To change the schema, append a function ``_mN_what(db)`` to
:data:`MIGRATIONS`; never edit or reorder one that has shipped.  ``db`` is a
:class:`SchemaCursor`: write ``?`` placeholders and the portable SQL both
engines take, spell the two types that differ as ``{db.real}`` (a float) and
``{db.blob}`` (bytes), and branch on ``db.postgresql`` for anything else.
A migration runs inside the caller's transaction, so it must use
``db.execute`` (not ``executescript``, which would commit half-way).
``tests/test_store_postgres.py`` applies every migration to a fresh
PostgreSQL database, so a statement PostgreSQL refuses fails there, and
checks that both engines end with the same tables and columns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from twisted.logger import Logger

from twisted_spark.errors import SparkError

log = Logger()

#: The advisory lock (one 64-bit key) held while migrating a PostgreSQL database.
MIGRATION_LOCK = 0x7370_6172_6B00_0001

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


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines in the SQL a migration writes."""

    name: str
    #: A double-precision float column (SQLite's REAL is 8 bytes; PostgreSQL's is 4).
    real: str
    #: A bytes column.
    blob: str
    #: The DB-API parameter marker of the driver.
    marker: str


SQLITE = Dialect("sqlite", real="REAL", blob="BLOB", marker="?")
POSTGRESQL = Dialect("postgresql", real="DOUBLE PRECISION", blob="BYTEA", marker="%s")


class SchemaCursor:
    """The cursor a migration gets: ``execute`` with ``?`` markers on either engine.

    :ivar real: :ivar blob: the dialect's type names (see :class:`Dialect`).
    :ivar postgresql: whether the database is PostgreSQL.
    """

    def __init__(self, cursor, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.real = dialect.real
        self.blob = dialect.blob
        self.postgresql = dialect is POSTGRESQL

    def execute(self, sql: str, params: tuple = ()):
        """Run ``sql``; return the driver's cursor (``fetchone``/``fetchall``)."""
        if not params:
            return self.cursor.execute(sql)
        return self.cursor.execute(sql.replace("?", self.dialect.marker), params)


def _m1_initial(db: SchemaCursor) -> None:
    """Users, their access tokens, and the devices they own.

    PostgreSQL has no ``rowid``: its tokens get a ``seq`` column instead, so
    tokens created in one second still list in the order they were made.
    """
    db.execute(
        f"""
        CREATE TABLE users (
            username TEXT PRIMARY KEY NOT NULL,
            password_hash TEXT NOT NULL,
            is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
            created_at {db.real} NOT NULL
        )
        """
    )
    seq = ",\n            seq BIGINT GENERATED ALWAYS AS IDENTITY" if db.postgresql else ""
    db.execute(
        f"""
        CREATE TABLE access_tokens (
            token TEXT PRIMARY KEY NOT NULL,
            username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
            client_id TEXT NOT NULL,
            created_at {db.real} NOT NULL,
            expires_at {db.real}{seq}
        )
        """
    )
    db.execute("CREATE INDEX access_tokens_by_user ON access_tokens (username, created_at)")
    db.execute(
        "CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at)"
        " WHERE expires_at IS NOT NULL"
    )
    db.execute(
        f"""
        CREATE TABLE devices (
            device_id TEXT PRIMARY KEY NOT NULL,
            owner TEXT REFERENCES users (username) ON DELETE SET NULL,
            name TEXT,
            public_key {db.blob},
            product_id INTEGER,
            platform_id INTEGER,
            firmware_version INTEGER,
            last_heard {db.real},
            last_ip TEXT,
            last_app TEXT,
            functions TEXT NOT NULL DEFAULT '[]',
            variables TEXT NOT NULL DEFAULT '{{}}',
            created_at {db.real} NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX devices_by_owner ON devices (owner, name)")


def _m2_unique_device_names(db: SchemaCursor) -> None:
    """UNIQUE (owner, name): one owner never has two devices of one name.

    Earlier versions did not enforce it, so a database may hold duplicates.
    Of each group the oldest device (``created_at``, then id) keeps the name;
    each other one is renamed ``<name>-<device id>`` (cut to fit 63
    characters; unique because ids are), or loses its name if even that is
    taken, and every rename is logged.  NULL owners and names are never
    duplicates (SQL's UNIQUE treats NULLs as distinct), so unowned devices
    may share a name.
    """
    rows = db.execute(
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
        taken = db.execute(
            "SELECT 1 FROM devices WHERE owner = ? AND name = ?", (owner, new)
        ).fetchone()
        if taken is not None:
            new = None
        db.execute("UPDATE devices SET name = ? WHERE device_id = ?", (new, device_id))
        log.warn(
            "Device {device_id} of {owner} was called {name!r} like an older device of the "
            "same owner; renamed it to {new!r} (device names are now unique per owner)",
            device_id=device_id, owner=owner, name=name, new=new,
        )
    db.execute("DROP INDEX devices_by_owner")  # the unique index serves its lookups
    db.execute("CREATE UNIQUE INDEX devices_owner_name ON devices (owner, name)")


def _m3_dtls_sessions(db: SchemaCursor) -> None:
    """Gen3 DTLS sessions by connection ID (hex), so devices resume across restarts."""
    db.execute(
        f"""
        CREATE TABLE dtls_sessions (
            cid TEXT PRIMARY KEY NOT NULL,
            device_id TEXT,
            state TEXT NOT NULL,
            updated_at {db.real} NOT NULL,
            expires_at {db.real} NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX dtls_sessions_by_expiry ON dtls_sessions (expires_at)")


def _m4_webhooks(db: SchemaCursor) -> None:
    """Webhooks (API.md §6): the searchable fields as columns, the rest as JSON text."""
    db.execute(
        f"""
        CREATE TABLE webhooks (
            hook_id TEXT PRIMARY KEY NOT NULL,
            owner TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
            event TEXT NOT NULL,
            url TEXT NOT NULL,
            request_type TEXT NOT NULL,
            device_id TEXT,
            no_defaults INTEGER NOT NULL DEFAULT 0,
            reject_unauthorized INTEGER NOT NULL DEFAULT 1,
            definition TEXT NOT NULL DEFAULT '{{}}',
            created_at {db.real} NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX webhooks_by_owner ON webhooks (owner, created_at)")


#: A migration: it receives a :class:`SchemaCursor` inside the migrating transaction.
Migration = Callable[[SchemaCursor], None]

#: Every migration ever shipped, oldest first; index + 1 is the version it yields.
MIGRATIONS: tuple[Migration, ...] = (
    _m1_initial,
    _m2_unique_device_names,
    _m3_dtls_sessions,
    _m4_webhooks,
)

#: The schema version this code reads and writes.
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(connection: sqlite3.Connection) -> int:
    """The number of migrations applied to the SQLite database (0 for a new file)."""
    return connection.execute("PRAGMA user_version").fetchone()[0]


def _apply(db: SchemaCursor, found: int, migrations: tuple[Migration, ...], bump) -> None:
    """Run migrations ``found + 1`` .. ``len(migrations)``, calling ``bump(version)`` after each."""
    supported = len(migrations)
    if found > supported:
        raise SchemaTooNew(found, supported)
    for version in range(found + 1, supported + 1):
        migrations[version - 1](db)
        bump(version)


def migrate(connection: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the SQLite database up to ``len(migrations)``; return the version it had.

    ``connection`` must be in autocommit mode (``isolation_level=None``).
    All pending migrations and the version bump commit together or not at
    all, and ``BEGIN IMMEDIATE`` keeps a second process from migrating at
    the same time.  Raises :class:`SchemaTooNew` for a newer database.
    """
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(connection)
        # PRAGMA takes no parameters; version is an int we computed.
        _apply(SchemaCursor(cursor, SQLITE), found, migrations,
               lambda version: cursor.execute(f"PRAGMA user_version = {int(version)}"))
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")
    return found


def postgres_schema_version(connection) -> int:
    """The number of migrations applied to a PostgreSQL database (0 for a new one).

    :param connection: a ``psycopg.Connection``.
    """
    exists = connection.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else row[0]


def migrate_postgres(connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the PostgreSQL database up to ``len(migrations)``; return the version it had.

    :param connection: a ``psycopg.Connection`` in autocommit mode.
    One transaction holds the advisory lock :data:`MIGRATION_LOCK` (so of
    two nodes starting at once, the second waits and then finds nothing to
    do), every pending migration and the new version, or nothing at all.
    Raises :class:`SchemaTooNew` for a newer database.
    """
    with connection.transaction():
        cursor = connection.cursor()
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = postgres_schema_version(connection)

        def bump(version: int) -> None:
            cursor.execute("DELETE FROM schema_version")
            cursor.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

        _apply(SchemaCursor(cursor, POSTGRESQL), found, migrations, bump)
    return found
