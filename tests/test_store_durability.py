"""An acknowledged write survives SIGKILL of the process that made it.

A child process (``store_crash_child.py``) writes through SQLiteStore or
PostgresStore and prints an ACK once each write's Deferred has fired; the
test kills it with SIGKILL and reads every acknowledged write back from the
file or the database (each test has its own: ``postgres_url``).
"""

import os
import signal
import sys
from pathlib import Path

import pytest
import pytest_twisted
from store_crash_child import open_store
from twisted.internet import defer, protocol

from twisted_spark.models import AccessToken, DeviceRecord, User

CHILD = Path(__file__).with_name("store_crash_child.py")
DEADLINE = 60.0  # seconds; generous for slow CI, never waited on when all is well


class Child(protocol.ProcessProtocol):
    """Collects ACK lines; ``ready`` fires once ``wanted`` acks (or IDLE) arrived."""

    def __init__(self, wanted=None):
        self.wanted = wanted
        self.acks = []
        self.stderr = b""
        self._partial = b""
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            words = line.decode().split()
            if words[:1] == ["ACK"]:
                self.acks.append((words[2], words[3]))
                if self.wanted is not None and len(self.acks) >= self.wanted:
                    self._fire()
            elif words == ["IDLE"]:
                self._fire()

    def errReceived(self, data):
        self.stderr += data

    def _fire(self):
        if not self.ready.called:
            self.ready.callback(self.acks[:])

    def processEnded(self, reason):
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"child ended early: {self.stderr.decode()}"))
        self.ended.callback(reason.value)


async def run_and_kill(reactor, project_root, path, rounds, wanted=None):
    """Start the child, wait (bounded) for its acks, SIGKILL it; return the acks seen."""
    child = Child(wanted)
    env = dict(os.environ, PYTHONPATH=str(project_root))
    transport = reactor.spawnProcess(
        child, sys.executable, [sys.executable, str(CHILD), str(path), str(rounds)], env=env
    )
    try:
        acks = await child.ready.addTimeout(DEADLINE, reactor)
    finally:
        if not child.ended.called:
            transport.signalProcess("KILL")
        ended = await child.ended
    assert getattr(ended, "signal", None) == signal.SIGKILL, (ended, child.stderr)
    return acks


async def assert_all_acked_writes_present(reactor, path, acks):
    store = await open_store(reactor, path)
    try:
        for kind, key in acks:
            index = int(key[-5:]) if kind != "device" else int(key, 16)
            username = f"user{index:05d}"
            if kind == "user":
                expected = User(username, f"hash-{index}", created_at=float(index))
                assert await store.get_user(key) == expected
            elif kind == "token":
                expected = AccessToken(key, username, "cli", float(index))
                assert await store.get_token(key) == expected
            else:
                expected = DeviceRecord(
                    key,
                    owner=username,
                    name=f"dev{index}",
                    functions=("f",),
                    variables={"v": "int32"},
                )
                assert await store.get_device(key) == expected
    finally:
        await store.close()


def health(connection):
    """(integrity_check result, rows breaking a foreign key) -- run on the store thread."""
    return (
        connection.execute("PRAGMA integrity_check").fetchone()[0],
        connection.execute("PRAGMA foreign_key_check").fetchall(),
    )


DANGLING = """
    SELECT 'token', token FROM access_tokens t
      WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.username = t.username)
    UNION ALL
    SELECT 'device', device_id FROM devices d
      WHERE owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.username = d.owner)
"""


async def database_health(reactor, path):
    """What :func:`health` says, for either engine (PostgreSQL checks its own pages)."""
    if not str(path).startswith("postgresql://"):
        store = await open_store(reactor, path)
        try:
            return await store._call(health)
        finally:
            await store.close()
    import psycopg

    with psycopg.connect(path) as connection:
        return "ok", connection.execute(DANGLING).fetchall()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where the child writes: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "spark.sqlite"
    return request.getfixturevalue("postgres_url")


@pytest_twisted.ensureDeferred
async def test_acknowledged_writes_survive_sigkill(reactor, project_root, target):
    path = target
    acks = await run_and_kill(reactor, project_root, path, rounds=3)
    assert [kind for kind, _ in acks] == ["user", "token", "device"] * 3
    await assert_all_acked_writes_present(reactor, path, acks)


@pytest_twisted.ensureDeferred
async def test_sigkill_in_the_middle_of_writing(reactor, project_root, target):
    """Killed while writes are in flight: every acked one is there, the data is sound."""
    path = target
    acks = await run_and_kill(reactor, project_root, path, rounds=0, wanted=60)
    assert len(acks) >= 60
    await assert_all_acked_writes_present(reactor, path, acks)
    integrity, dangling = await database_health(reactor, path)
    assert integrity == "ok"
    assert dangling == []


@pytest_twisted.ensureDeferred
async def test_reactor_stop_without_close_commits_and_exits(reactor, project_root, target):
    """The store closes itself at reactor shutdown: queued writes land, no thread hangs on."""
    path = target
    child = Child()
    child.ready.addErrback(lambda _: None)  # no IDLE in this mode; only the exit matters
    env = dict(os.environ, PYTHONPATH=str(project_root))
    argv = [sys.executable, str(CHILD), str(path), "1", "stop"]
    transport = reactor.spawnProcess(child, sys.executable, argv, env=env)
    try:
        ended = await child.ended.addTimeout(DEADLINE, reactor)
    except defer.TimeoutError:
        transport.signalProcess("KILL")
        raise
    assert getattr(ended, "exitCode", None) == 0, (ended, child.stderr)
    await assert_all_acked_writes_present(reactor, path, child.acks)
    store = await open_store(reactor, path)
    try:
        assert await store.get_user("late") == User("late", "hash-late")
        assert await store.get_user("goodbye") == User("goodbye", "hash-goodbye")
    finally:
        await store.close()
