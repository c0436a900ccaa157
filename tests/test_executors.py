"""Named executors: thread pools that deliver results on the reactor, and inline ones."""

from __future__ import annotations

import threading

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface.verify import verifyObject

from twisted_spark.executors import (
    DATABASE_THREADS,
    Executors,
    SynchronousExecutor,
    ThreadExecutor,
)
from twisted_spark.interfaces import IExecutor


def test_both_kinds_provide_the_interface(reactor):
    verifyObject(IExecutor, ThreadExecutor(reactor, "x"))
    verifyObject(IExecutor, SynchronousExecutor())


@pytest_twisted.ensureDeferred
async def test_thread_executor_runs_off_the_reactor_and_counts_pending(reactor):
    executor = ThreadExecutor(reactor, "work", 2)
    gate = threading.Event()
    seen = []

    def job(value):
        seen.append(threading.current_thread().name)
        gate.wait(10)
        return value * 2

    try:
        first, second = executor.run(job, 1), executor.run(job, 2)
        assert executor.pending == 2
        gate.set()
        assert await defer.gatherResults([first, second]) == [2, 4]
        assert executor.pending == 0
        assert all(name.startswith("PoolThread-spark-work") for name in seen)
        with pytest.raises(ZeroDivisionError):
            await executor.run(lambda: 1 / 0)
        assert executor.pending == 0
    finally:
        gate.set()
        executor.stop()
    assert not executor.running
    executor.stop()  # idempotent


def test_synchronous_executor_has_run_the_call_when_run_returns():
    executor = SynchronousExecutor("rsa")
    done = []
    executor.run(lambda: 7).addCallback(done.append)
    failed = []
    executor.run(lambda: 1 / 0).addErrback(failed.append)
    assert done == [7] and failed[0].check(ZeroDivisionError)


def test_executors_by_kind(reactor):
    threaded = Executors.threaded(reactor, rsa_threads=3)
    assert [e.name for e in threaded.all()] == ["rsa", "store", "passwords", "files", "database"]
    assert threaded.rsa.threads == 3 and threaded.store.threads == 1
    assert threaded.database.threads == DATABASE_THREADS
    threaded.stop()  # never started: nothing to join
    inline = Executors.synchronous()
    assert all(isinstance(e, SynchronousExecutor) for e in inline.all())
    assert inline.files.name == "files"


def test_the_database_executor_starts_on_first_use(reactor):
    """With SQLite (the default) the PostgreSQL threads are never started."""
    threaded = Executors.threaded(reactor)
    threaded.start()
    try:
        assert threaded.store.running and not threaded.database.running
    finally:
        threaded.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_store_on_an_inline_executor_opens_and_closes(tmp_path, reactor):
    """The store's close works however fast its executor answers."""
    from twisted_spark.models import User
    from twisted_spark.store.sqlite import SQLiteStore

    store = await SQLiteStore.open(tmp_path / "db.sqlite", reactor, executor=SynchronousExecutor())
    await store.add_user(User("alice", "h"))
    assert (await store.get_user("alice")).username == "alice"
    await defer.gatherResults([store.close(), store.close()])
