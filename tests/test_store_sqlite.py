"""What only the SQLite store has: the file, its pragmas, migrations, threads."""

import sqlite3
import stat
import threading

import pytest
import pytest_twisted
from twisted.internet import defer

from twisted_spark.errors import DuplicateUser
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.store import schema
from twisted_spark.store.schema import SCHEMA_VERSION, SchemaTooNew, migrate
from twisted_spark.store.sqlite import SQLiteStore, StoreClosed

ALICE = User("alice", "hash", created_at=1.0)
CORE = "53ff6f065067544840311387"


def store_threads():
    return [t for t in threading.enumerate() if "spark-store" in t.name]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "spark.sqlite"


@pytest_twisted.async_yield_fixture
async def store(path, reactor):
    opened = await SQLiteStore.open(path, reactor=reactor)
    yield opened
    await opened.close()


def pragma(store, name):
    return store._call(lambda connection: connection.execute(f"PRAGMA {name}").fetchone()[0])


@pytest_twisted.ensureDeferred
async def test_pragmas(store):
    assert await pragma(store, "journal_mode") == "wal"
    assert await pragma(store, "synchronous") == 2  # FULL
    assert await pragma(store, "foreign_keys") == 1
    assert await pragma(store, "busy_timeout") == 5000


@pytest_twisted.ensureDeferred
async def test_synchronous_can_be_chosen(path, reactor):
    opened = await SQLiteStore.open(path, reactor=reactor, synchronous="normal")
    try:
        assert await pragma(opened, "synchronous") == 1
    finally:
        await opened.close()
    with pytest.raises(ValueError):
        SQLiteStore.open(path, reactor=reactor, synchronous="OFF")


@pytest_twisted.ensureDeferred
async def test_wal_is_persistent_in_the_file(store, path):
    await store.add_user(ALICE)
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


@pytest_twisted.ensureDeferred
async def test_files_are_private(store, path):
    await store.add_user(ALICE)  # makes SQLite create the -wal and -shm files
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        assert stat.S_IMODE(each.stat().st_mode) == 0o600, each


@pytest_twisted.ensureDeferred
async def test_private_even_with_permissive_umask(path, reactor):
    import os

    old = os.umask(0)
    try:
        opened = await SQLiteStore.open(path, reactor=reactor)
    finally:
        os.umask(old)
    await opened.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest_twisted.ensureDeferred
async def test_migrates_an_empty_file(path, reactor):
    path.touch()
    opened = await SQLiteStore.open(path, reactor=reactor)
    try:
        assert await pragma(opened, "user_version") == SCHEMA_VERSION
        await opened.add_user(ALICE)
        assert await opened.get_user("alice") == ALICE
    finally:
        await opened.close()
    check = sqlite3.connect(path)
    try:
        tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
    finally:
        check.close()
    assert {"users", "access_tokens", "devices"} <= tables
    # devices_by_owner (migration 1) gave way to the unique index of migration 2.
    assert {"access_tokens_by_user", "devices_owner_name"} <= tables
    assert "devices_by_owner" not in tables


@pytest_twisted.ensureDeferred
async def test_refuses_a_newer_schema(path, reactor):
    newer = SCHEMA_VERSION + 7
    create = sqlite3.connect(path)
    create.execute(f"PRAGMA user_version = {newer}")
    create.close()
    with pytest.raises(SchemaTooNew) as caught:
        await SQLiteStore.open(path, reactor=reactor)
    assert str(caught.value) == (
        f"database schema version {newer} is newer than this twisted-spark supports "
        f"({SCHEMA_VERSION}); upgrade twisted-spark"
    )
    assert store_threads() == []
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == newer  # untouched
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not even WAL
    finally:
        check.close()


@pytest_twisted.ensureDeferred
async def test_unopenable_path_fails_without_leaking_a_thread(tmp_path, reactor):
    with pytest.raises(OSError):
        await SQLiteStore.open(tmp_path / "missing-dir" / "spark.sqlite", reactor=reactor)
    assert store_threads() == []


@pytest_twisted.ensureDeferred
async def test_data_survives_close_and_reopen(path, reactor):
    token = AccessToken("t" * 40, "alice", "cli", 2.0, 99.0)
    device = DeviceRecord(CORE, owner="alice", public_key=b"\x00\x01", functions=("f",))
    first = await SQLiteStore.open(path, reactor=reactor)
    await first.add_user(ALICE)
    await first.add_token(token)
    await first.put_device(device)
    await first.close()

    second = await SQLiteStore.open(path, reactor=reactor)
    try:
        assert await second.list_users() == [ALICE]
        assert await second.list_tokens("alice") == [token]
        assert await second.list_devices() == [device]
        with pytest.raises(DuplicateUser):
            await second.add_user(ALICE)
    finally:
        await second.close()


@pytest_twisted.ensureDeferred
async def test_close_stops_the_thread_and_later_calls_fail(path, reactor):
    opened = await SQLiteStore.open(path, reactor=reactor)
    assert len(store_threads()) == 1
    pending = opened.add_user(ALICE)  # queued before close: still completes
    closing = [opened.close(), opened.close()]
    assert await pending == ALICE
    await defer.gatherResults(closing)
    assert store_threads() == []
    with pytest.raises(StoreClosed):
        await opened.get_user("alice")
    await opened.close()  # and again, after the fact


@pytest_twisted.ensureDeferred
async def test_concurrent_writes_all_land_in_order(store):
    await store.add_user(ALICE)
    tokens = [AccessToken(f"tok{i:03d}", "alice", "cli", 5.0) for i in range(100)]
    await defer.gatherResults([store.add_token(t) for t in tokens])
    assert await store.list_tokens("alice") == tokens


@pytest_twisted.ensureDeferred
async def test_concurrent_updates_do_not_lose_each_other(store):
    changes = [{"name": "n"}, {"last_ip": "192.0.2.1"}, {"product_id": 6}, {"last_app": "a"}]
    await defer.gatherResults([store.update_device(CORE, **c) for c in changes] * 5)
    assert await store.get_device(CORE) == DeviceRecord(
        CORE, name="n", last_ip="192.0.2.1", product_id=6, last_app="a"
    )


@pytest_twisted.ensureDeferred
async def test_tokens_cascade_and_devices_are_released_when_a_user_goes(store):
    """The schema is ready for a later delete_user: FKs do the cleanup."""
    await store.add_user(ALICE)
    await store.add_token(AccessToken("t1", "alice", "cli", 1.0))
    await store.put_device(DeviceRecord(CORE, owner="alice", name="kitchen"))
    await store._write(lambda cursor: cursor.execute("DELETE FROM users"))
    assert await store.get_token("t1") is None
    assert await store.get_device(CORE) == DeviceRecord(CORE, owner=None, name="kitchen")


# -- the migration mechanism, on a plain connection ------------------------------


@pytest.fixture
def connection(path):
    opened = sqlite3.connect(path, isolation_level=None)
    yield opened
    opened.close()


def table_names(connection):
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}


def test_migrations_are_numbered_and_applied_in_order(connection):
    applied = []

    def first(cursor):
        applied.append(1)
        cursor.execute("CREATE TABLE one (x)")

    def second(cursor):
        applied.append(2)
        cursor.execute("CREATE TABLE two (x)")

    assert migrate(connection, (first,)) == 0
    assert schema.schema_version(connection) == 1
    # A later release appends a migration: only the new one runs.
    assert migrate(connection, (first, second)) == 1
    assert applied == [1, 2]
    assert schema.schema_version(connection) == 2
    assert migrate(connection, (first, second)) == 2  # nothing left to do
    assert applied == [1, 2]


def test_a_failing_migration_changes_nothing(connection):
    def good(cursor):
        cursor.execute("CREATE TABLE good (x)")

    def bad(cursor):
        cursor.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        migrate(connection, (good, bad))
    assert schema.schema_version(connection) == 0
    assert table_names(connection) == set()
    assert not connection.in_transaction


def test_shipped_migrations_build_the_schema(connection):
    migrate(connection)
    assert schema.schema_version(connection) == SCHEMA_VERSION == len(schema.MIGRATIONS)
    assert {"users", "access_tokens", "devices"} <= table_names(connection)


# -- migration 2: device names unique per owner ------------------------------------


def v1_database(connection, devices):
    """A database as version 1 left it, holding ``devices`` (owner, name, id, created_at)."""
    migrate(connection, schema.MIGRATIONS[:1])
    connection.execute("INSERT INTO users (username, password_hash, created_at) VALUES "
                       "('alice', 'h', 0), ('bob', 'h', 0)")
    for owner, name, device_id, created_at in devices:
        connection.execute(
            "INSERT INTO devices (device_id, owner, name, created_at) VALUES (?, ?, ?, ?)",
            (device_id, owner, name, created_at),
        )


def names(connection):
    return dict(connection.execute("SELECT device_id, name FROM devices"))


def test_migration_2_renames_duplicate_names_deterministically(connection):
    from twisted.logger import globalLogPublisher

    a, b, c, d, e, f = (f"{n:024x}" for n in range(0xA, 0x10))
    long_name = "x" * 63
    v1_database(connection, [
        ("alice", "kitchen", b, 5.0),  # the oldest "kitchen" of alice keeps it
        ("alice", "kitchen", a, 7.0),
        ("alice", "kitchen", c, 7.0),  # same age as a: the smaller id comes first
        ("bob", "kitchen", d, 1.0),  # another owner: not a duplicate
        (None, "kitchen", e, 1.0),  # unowned: not a duplicate
        ("alice", long_name, f, 1.0),
        ("alice", long_name, "f" * 24, 2.0),
    ])
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        assert migrate(connection) == 1
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert schema.schema_version(connection) == SCHEMA_VERSION
    assert names(connection) == {
        b: "kitchen",
        a: f"kitchen-{a}",
        c: f"kitchen-{c}",
        d: "kitchen",
        e: "kitchen",
        f: long_name,
        "f" * 24: "x" * 38 + "-" + "f" * 24,
    }
    assert len("x" * 38 + "-" + "f" * 24) == 63
    renamed = sorted(event["device_id"] for event in events if event.get("new"))
    assert renamed == sorted([a, c, "f" * 24])
    assert all(event["log_level"].name == "warn" for event in events if event.get("new"))
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute(
            "INSERT INTO devices (device_id, owner, name) VALUES (?, 'bob', 'kitchen')", ("9" * 24,)
        )


def test_migration_2_drops_a_name_when_even_the_new_one_is_taken(connection):
    a, b = "a" * 24, "b" * 24
    v1_database(connection, [
        ("alice", "pump", a, 1.0),
        ("alice", "pump", b, 2.0),
        ("alice", f"pump-{b}", "c" * 24, 3.0),
    ])
    migrate(connection)
    assert names(connection) == {a: "pump", b: None, "c" * 24: f"pump-{b}"}


@pytest_twisted.ensureDeferred
async def test_a_version_1_file_with_duplicates_opens(path, reactor):
    connection = sqlite3.connect(path, isolation_level=None)
    v1_database(connection, [("alice", "kitchen", "a" * 24, 1.0), ("alice", "kitchen", CORE, 2.0)])
    connection.close()
    opened = await SQLiteStore.open(path, reactor=reactor)
    try:
        assert await pragma(opened, "user_version") == SCHEMA_VERSION
        assert (await opened.get_device(CORE)).name == f"kitchen-{CORE}"
    finally:
        await opened.close()


@pytest_twisted.ensureDeferred
async def test_dtls_sessions_survive_reopening(path, reactor):
    """A Gen3 device resumes after a server restart: its session is on disk."""
    from twisted_spark.models import DtlsSessionRecord

    record = DtlsSessionRecord(b"\x10" * 8, '{"role": "server"}', 5000.0,
                               "0123456789abcdef01234567", 4000.0)
    first = await SQLiteStore.open(path, reactor=reactor)
    await first.save_dtls_session(record)
    await first.close()
    second = await SQLiteStore.open(path, reactor=reactor)
    try:
        assert await second.get_dtls_session(b"\x10" * 8, 4500.0) == record
    finally:
        await second.close()
