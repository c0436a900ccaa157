"""Group commit in the SQLite store: queued writes share a COMMIT, yet each stands alone."""

import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer

from twisted_spark.errors import DuplicateUser
from twisted_spark.models import DeviceRecord, User
from twisted_spark.store.group_commit import GroupCommit
from twisted_spark.store.sqlite import SQLiteStore
from twisted_spark.store.sqlite_ops import connect


class HeldExecutor:
    """An executor that runs its jobs only when the test says: a store thread kept busy."""

    name = "held"

    def __init__(self):
        self.jobs = []
        self.pending = 0

    def start(self):
        pass

    def stop(self):
        self.run_jobs()

    def run(self, function, *args, **kwargs):
        d = defer.Deferred()
        self.jobs.append((function, args, kwargs, d))
        return d

    def run_jobs(self):
        """Run what is queued, in order, as the one store thread would."""
        while self.jobs:
            function, args, kwargs, d = self.jobs.pop(0)
            defer.maybeDeferred(function, *args, **kwargs).chainDeferred(d)


@pytest.fixture
def connection(tmp_path):
    opened = connect(str(tmp_path / "spark.sqlite"), "FULL")
    yield opened
    opened.close()


def insert(cursor, device_id):
    cursor.execute("INSERT INTO devices (device_id) VALUES (?)", (device_id,))
    return device_id


def stored_ids(connection):
    return [row[0] for row in connection.execute("SELECT device_id FROM devices ORDER BY rowid")]


def outcome(d):
    results = []
    d.addBoth(results.append)
    return results


def test_writes_queued_behind_a_busy_thread_share_one_commit(connection):
    executor = HeldExecutor()
    commit = GroupCommit(executor, connection)
    results = [outcome(commit.write(insert, f"dev{i}")) for i in range(5)]
    assert len(executor.jobs) == 1  # one job, however many writes queue up
    assert results == [[]] * 5  # nothing acknowledged before its COMMIT
    executor.run_jobs()
    assert results == [[f"dev{i}"] for i in range(5)]
    assert (commit.commits, commit.writes) == (1, 5)
    assert stored_ids(connection) == [f"dev{i}" for i in range(5)]


def test_a_write_after_the_job_started_gets_a_job_of_its_own(connection):
    executor = HeldExecutor()
    commit = GroupCommit(executor, connection)
    first = outcome(commit.write(insert, "a"))
    executor.run_jobs()
    second = outcome(commit.write(insert, "b"))
    assert first == ["a"] and second == []
    assert len(executor.jobs) == 1
    executor.run_jobs()
    assert second == ["b"]
    assert (commit.commits, commit.writes) == (2, 2)


def test_a_failing_write_fails_alone(connection):
    executor = HeldExecutor()
    commit = GroupCommit(executor, connection)
    results = [outcome(commit.write(insert, device_id)) for device_id in ("a", "b", "a", "c")]
    executor.run_jobs()
    assert results[0] == ["a"] and results[1] == ["b"] and results[3] == ["c"]
    assert results[2][0].check(sqlite3.IntegrityError)
    # The batch was rolled back and each write then committed on its own.
    assert stored_ids(connection) == ["a", "b", "c"]
    assert (commit.commits, commit.writes) == (3, 4)
    assert not connection.in_transaction


@pytest_twisted.ensureDeferred
async def test_store_errors_and_order_survive_batching(tmp_path, reactor):
    executor = HeldExecutor()
    opening = SQLiteStore.open(tmp_path / "spark.sqlite", reactor=reactor, executor=executor)
    executor.run_jobs()
    store = await opening
    alice = User("alice", "hash", created_at=1.0)
    writes = [
        store.add_user(alice),
        store.add_user(alice),
        store.put_device(DeviceRecord("d1", name="one")),
        store.update_device("d1", name="renamed", last_heard=5.0),
    ]
    read = store.get_device("d1")  # made after the writes: sees them all
    executor.run_jobs()
    assert await writes[0] == alice
    with pytest.raises(DuplicateUser):
        await writes[1]
    assert (await writes[3]).name == "renamed"
    record = await read
    assert (record.name, record.last_heard) == ("renamed", 5.0)
    closing = store.close()
    executor.run_jobs()
    await closing


@pytest_twisted.ensureDeferred
async def test_a_burst_on_the_real_store_thread_commits_everything(tmp_path, reactor):
    store = await SQLiteStore.open(tmp_path / "spark.sqlite", reactor=reactor)
    try:
        ids = [f"dev{i:03d}" for i in range(200)]
        records = await defer.gatherResults(
            [store.update_device(device_id, last_heard=float(i)) for i, device_id in enumerate(ids)]
        )
        assert [r.device_id for r in records] == ids
        stored = await store.list_devices()
        assert {r.device_id: r.last_heard for r in stored} == {
            device_id: float(i) for i, device_id in enumerate(ids)
        }
        assert store._group_commit.writes == 200
    finally:
        await store.close()
