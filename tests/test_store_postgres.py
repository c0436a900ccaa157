"""What only the PostgreSQL store has: migrations with a lock, nodes racing, reconnection.

The contract suite (``test_store_contract.py``) runs on PostgreSQL too;
here are the properties that need a shared server: two stores (as two
nodes would have) on one database, each with its own threads and
connections, writing at the same moment; a schema migrated by two nodes at
once; connections killed under a running store.  Every test has its own
database (``postgres_url``), skipped with the reason where no server runs.
"""

from __future__ import annotations

import threading

import psycopg
import pytest
import pytest_twisted
from pg import terminate_connections
from twisted.internet import defer

from twisted_spark.errors import DuplicateUser, StoreUnavailable
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.store import ConstraintError, DeviceChanged, NameTaken
from twisted_spark.store.pg_connections import connect
from twisted_spark.store.postgres import PostgresStore
from twisted_spark.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SchemaTooNew,
    migrate_postgres,
    postgres_schema_version,
)

USERS = [User(f"user{n}", "hash", created_at=float(n)) for n in range(4)]


def device_id(n: int) -> str:
    return f"{n:024x}"


@pytest_twisted.async_yield_fixture
async def two_nodes(postgres_url, reactor):
    """Two stores on one database, as two nodes of a cluster have."""
    first = await PostgresStore.open(postgres_url, reactor)
    second = await PostgresStore.open(postgres_url, reactor)
    for user in USERS:
        await first.add_user(user)
    yield first, second
    await defer.gatherResults([first.close(), second.close()])


async def race(calls):
    """Run every call at once; ``(successes, failures)`` (failures as Failure objects)."""
    results = await defer.DeferredList([call() for call in calls], consumeErrors=True)
    return ([value for ok, value in results if ok], [value for ok, value in results if not ok])


# -- migrations ------------------------------------------------------------------


def columns(url, table):
    with psycopg.connect(url) as connection:
        return dict(connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = %s", (table,)).fetchall())


@pytest_twisted.ensureDeferred
async def test_a_new_database_is_migrated_with_the_shared_migrations(postgres_url, reactor):
    store = await PostgresStore.open(postgres_url, reactor)
    await store.close()
    with psycopg.connect(postgres_url) as connection:
        assert postgres_schema_version(connection) == SCHEMA_VERSION == len(MIGRATIONS)
    # The two types that differ between the engines: 8-byte floats, bytes.
    assert columns(postgres_url, "devices")["last_heard"] == "double precision"
    assert columns(postgres_url, "devices")["public_key"] == "bytea"
    assert columns(postgres_url, "access_tokens")["expires_at"] == "double precision"
    again = await PostgresStore.open(postgres_url, reactor)  # nothing left to do
    await again.close()


def test_both_engines_get_the_same_tables_and_columns(postgres_url, tmp_path):
    """One migration list: a migration that forgets one engine fails here."""
    import sqlite3

    from twisted_spark.store.schema import migrate

    lite = sqlite3.connect(tmp_path / "spark.sqlite", isolation_level=None)
    try:
        migrate(lite)
        tables = [name for (name,) in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        in_sqlite = {t: sorted(row[1] for row in lite.execute(f"PRAGMA table_info({t})"))
                     for t in tables}
    finally:
        lite.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        migrate_postgres(connection)
        rows = connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name <> 'schema_version'").fetchall()
    in_postgres: dict[str, list[str]] = {}
    for table, column in sorted(rows):
        if (table, column) != ("access_tokens", "seq"):  # PostgreSQL's stand-in for rowid
            in_postgres.setdefault(table, []).append(column)
    assert in_postgres == in_sqlite


def test_two_nodes_migrating_at_once_take_turns(postgres_url):
    """The advisory lock: one migrates, the other waits and finds nothing to do."""
    barrier = threading.Barrier(2)
    found, errors = [], []

    def node():
        try:
            with psycopg.connect(postgres_url, autocommit=True) as connection:
                barrier.wait(timeout=10)
                found.append(migrate_postgres(connection))
        except Exception as error:  # reported below, with the thread's traceback lost
            errors.append(error)

    threads = [threading.Thread(target=node) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(found) == [0, SCHEMA_VERSION]


def test_a_failing_migration_changes_nothing(postgres_url):
    def good(db):
        db.execute("CREATE TABLE good (x INTEGER)")

    def bad(db):
        db.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("boom")

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        with pytest.raises(RuntimeError):
            migrate_postgres(connection, (good, bad))
        assert postgres_schema_version(connection) == 0
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
        assert tables == 0
        # A later release appends a migration: only the new one runs.
        assert migrate_postgres(connection, (good,)) == 0
        assert migrate_postgres(connection, (good, lambda db: db.execute(
            "INSERT INTO good (x) VALUES (?)", (7,)))) == 1
        assert connection.execute("SELECT x FROM good").fetchall() == [(7,)]


@pytest_twisted.ensureDeferred
async def test_a_newer_database_is_refused(postgres_url, reactor):
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        migrate_postgres(connection)
        connection.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match="upgrade twisted-spark"):
        await PostgresStore.open(postgres_url, reactor)
    with psycopg.connect(postgres_url) as connection:
        assert postgres_schema_version(connection) == SCHEMA_VERSION + 1


# -- two nodes writing at once ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_racing_claims_across_nodes_exactly_one_wins_each(two_nodes):
    first, second = two_nodes
    ids = [device_id(n) for n in range(12)]
    for each in ids:
        await first.put_device(DeviceRecord(each, public_key=b"k"))
    calls = [
        (lambda store=store, each=each, user=user:
         store.update_device_if(each, {"owner": None}, owner=user.username))
        for each in ids
        for store, user in ((first, USERS[0]), (second, USERS[1]), (first, USERS[2]))
    ]
    won, lost = await race(calls)
    assert len(won) == len(ids) and len(lost) == 2 * len(ids)
    assert all(failure.check(DeviceChanged) for failure in lost)
    owners = {record.device_id: record.owner for record in won}
    for record in await second.list_devices():
        assert record.owner == owners[record.device_id]


@pytest_twisted.ensureDeferred
async def test_racing_registrations_of_new_ids_across_nodes(two_nodes):
    """No row exists to lock yet: the id's advisory lock still lets only one create it."""
    first, second = two_nodes
    calls = [
        (lambda store=store, n=n, key=key:
         store.update_device_if(device_id(n), {"owner": None, "public_key": None},
                                public_key=key))
        for n in range(12)
        for store, key in ((first, b"first"), (second, b"second"))
    ]
    won, lost = await race(calls)
    assert len(won) == 12 and len(lost) == 12
    assert all(failure.check(DeviceChanged) for failure in lost)
    stored = {record.device_id: record.public_key for record in await first.list_devices()}
    assert stored == {record.device_id: record.public_key for record in won}


@pytest_twisted.ensureDeferred
async def test_racing_renames_to_one_name_across_nodes(two_nodes):
    first, second = two_nodes
    for n in range(8):
        await first.put_device(DeviceRecord(device_id(n), owner="user0", name=f"d{n}"))
    for attempt in range(5):
        calls = [
            (lambda store=store, n=n, name=f"same{attempt}":
             store.update_device(device_id(n), name=name))
            for n in range(8)
            for store in (first, second)
        ]
        won, lost = await race(calls)
        assert len({record.device_id for record in won}) == 1, attempt
        assert all(failure.check(NameTaken) for failure in lost)
        names = [record.name for record in await second.list_devices("user0")]
        assert names.count(f"same{attempt}") == 1


@pytest_twisted.ensureDeferred
async def test_racing_users_and_tokens_across_nodes(two_nodes):
    first, second = two_nodes
    won, lost = await race([
        lambda store=store: store.add_user(User("carol", f"from {id(store)}"))
        for store in (first, second, first, second)
    ])
    assert len(won) == 1 and len(lost) == 3
    assert all(failure.check(DuplicateUser) for failure in lost)
    won, lost = await race([
        lambda store=store, user=user: store.add_token(
            AccessToken("t" * 40, user.username, "cli", 1.0))
        for store, user in ((first, USERS[0]), (second, USERS[1]), (second, USERS[2]))
    ])
    assert len(won) == 1 and len(lost) == 2
    assert all(failure.check(ConstraintError) for failure in lost)
    assert await second.get_token("t" * 40) == won[0]


@pytest_twisted.ensureDeferred
async def test_text_postgresql_cannot_hold_is_a_constraint_error(postgres_url, reactor):
    """The API refuses NULs first (test_api_store_errors.py); the store stays sound anyway."""
    store = await PostgresStore.open(postgres_url, reactor)
    try:
        await store.add_user(USERS[0])
        with pytest.raises(ConstraintError, match="NUL"):
            await store.add_token(AccessToken("t1", "user0", "cli\x00ent", 1.0))
        with pytest.raises(ConstraintError, match="NUL"):
            await store.get_user("user\x000")
        assert await store.list_tokens("user0") == []
        assert await store.get_user("user0") == USERS[0]  # the same connection still works
    finally:
        await store.close()


# -- connections lost and found ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_reconnects_after_the_server_terminated_its_connections(postgres_url, reactor):
    store = await PostgresStore.open(postgres_url, reactor)
    try:
        await store.add_user(USERS[0])
        opened = store._connections.opened
        for round_ in range(3):
            assert terminate_connections(postgres_url) >= 1
            # The next read and the next write succeed: a dead idle connection
            # fails at its first statement, before anything could be applied.
            assert await store.get_user("user0") == USERS[0]
            assert terminate_connections(postgres_url) >= 1
            await store.add_token(AccessToken(f"t{round_}", "user0", "cli", 1.0))
        assert len(await store.list_tokens("user0")) == 3
        assert store._connections.opened > opened
        assert store.reachable
    finally:
        await store.close()


def test_connections_find_a_silent_server_dead_but_the_url_wins(postgres_url):
    """Keepalives and a TCP user timeout unless the URL sets them (then its values)."""
    with connect(postgres_url + "?connect_timeout=3") as connection:
        parameters = connection.info.get_parameters()
    assert parameters["connect_timeout"] == "3"
    assert parameters["tcp_user_timeout"] == "15000" and parameters["keepalives_idle"] == "10"


@pytest_twisted.ensureDeferred
async def test_an_unreachable_server_is_store_unavailable(reactor):
    url = "postgresql://spark:s3cret@127.0.0.1:1/spark"
    with pytest.raises(StoreUnavailable) as info:
        await PostgresStore.open(url, reactor)
    assert "127.0.0.1:1" in str(info.value) and "s3cret" not in str(info.value)


@pytest_twisted.ensureDeferred
async def test_a_database_gone_is_store_unavailable_then_back(postgres_url, reactor):
    """Requests fail with StoreUnavailable while it is gone, and work once it is back."""
    store = await PostgresStore.open(postgres_url, reactor)
    name = postgres_url.rsplit("/", 1)[1]
    try:
        await store.add_user(USERS[0])
        with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres",
                             autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            terminate_connections(postgres_url)
            with pytest.raises(StoreUnavailable):
                await store.get_user("user0")
            with pytest.raises(StoreUnavailable):
                await store.add_user(USERS[1])
            assert not store.reachable
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        assert await store.get_user("user0") == USERS[0]
        assert store.reachable
    finally:
        await store.close()
