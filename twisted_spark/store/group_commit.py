# -*- test-case-name: tests.test_store_group_commit,tests.test_store_sqlite -*-
"""Group commit: the writes that arrive while the store thread is busy share one COMMIT.

With ``synchronous=FULL`` every SQLite commit waits for an fsync of the WAL
(0.2-10 ms, depending on the disk).  One transaction per write makes the
store thread the bottleneck of a burst -- a fleet of devices handshaking
after a restart writes two rows each -- and every read queued behind those
writes waits for their fsyncs.

:class:`GroupCommit` queues writes and keeps at most one commit job in the
store executor's queue: when the job runs it takes every write queued so
far, runs them in order in one ``BEGIN IMMEDIATE`` ... ``COMMIT``, and each
write's Deferred fires after that ``COMMIT`` returned, as before.  Under a
light load a batch holds one write and nothing changes; under a burst one
fsync covers many.  A write that raises (a constraint, a failed
compare-and-set) rolls the batch back, and the batch is then run again one
transaction per write, so each write succeeds or fails on its own.

Order: writes commit in the order they were made, and a read made after a
write runs after that write (the job is queued before the read).  A write
made after a read may commit before that read runs; the two were
concurrent (neither had answered), so either order is correct.
"""

from __future__ import annotations

import threading

from twisted.internet import defer
from twisted.python.failure import Failure

from twisted_spark.interfaces import IExecutor
from twisted_spark.store.sqlite_ops import transaction


class GroupCommit:
    """Queue writes for ``connection``; commit each queue in one transaction on ``executor``.

    :param executor: the store's one-thread executor (it alone uses ``connection``).
    """

    def __init__(self, executor: IExecutor, connection) -> None:
        self._executor = executor
        self._connection = connection
        self._lock = threading.Lock()
        self._queued: list[tuple] = []
        self._job_queued = False
        #: Commits made and writes they held (for tests and benchmarks).
        self.commits = 0
        self.writes = 0

    def write(self, function, *args) -> defer.Deferred:
        """``function(cursor, *args)`` inside a transaction; fires after its COMMIT."""
        d: defer.Deferred = defer.Deferred()
        with self._lock:
            self._queued.append((function, args, d))
            start_job = not self._job_queued
            self._job_queued = True
        if start_job:
            self._executor.run(self._commit_queued).addCallback(_fire)
        return d

    def _commit_queued(self) -> list[tuple]:
        """On the store thread: take what is queued, commit it, say how each write went."""
        with self._lock:
            batch, self._queued = self._queued, []
            self._job_queued = False
        outcomes = None
        if len(batch) > 1:
            try:
                values = transaction(self._connection, _run_in_order, batch)
            except Exception:
                outcomes = None  # someone's write failed: each on its own below
            else:
                outcomes = [(d, value) for (_, _, d), value in zip(batch, values, strict=True)]
                self.commits += 1
        if outcomes is None:
            outcomes = [(d, self._commit_one(function, args)) for function, args, d in batch]
        self.writes += len(batch)
        return outcomes

    def _commit_one(self, function, args):
        try:
            value = transaction(self._connection, function, *args)
        except BaseException:
            return Failure()
        self.commits += 1
        return value


def _run_in_order(cursor, batch) -> list:
    return [function(cursor, *args) for function, args, _ in batch]


def _fire(outcomes) -> None:
    """On the reactor thread: each write's Deferred gets its value or its Failure."""
    for d, outcome in outcomes:
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            d.callback(outcome)
