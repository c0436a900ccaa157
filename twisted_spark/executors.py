# -*- test-case-name: tests.test_executors -*-
"""Where blocking work runs: a few named, fixed-size thread pools.

Five kinds of work leave the reactor thread, each in its own
:class:`~twisted_spark.interfaces.IExecutor` so that one kind cannot starve
another:

``rsa``
    public-key arithmetic: the TCP handshake's RSA private-key operations
    (about 3 ms a handshake; pycryptodome releases the GIL, so threads give
    real parallelism) and the Gen3 DTLS handshake's ECDH/ECDSA.  The device
    server refuses new handshakes while ``pending`` is at
    ``--max-pending-handshakes``.
``store``
    SQLite's one connection: exactly one thread, so writes are serialised
    the way SQLite wants.  The store owns it and stops it when it closes.
``database``
    PostgreSQL (``--database postgresql://...``): :data:`DATABASE_THREADS`
    threads, each holding its own connection, so at most that many
    statements run at once and a burst queues here rather than opening
    more connections.  The PostgreSQL store owns it; with SQLite it stays
    idle (its threads start on first use).
``passwords``
    PBKDF2 hashes (about 0.1 s each, on purpose).
``files``
    the server key and firmware images on disk.

:class:`Executors` holds the five; the composition root
(:func:`twisted_spark.cloud.build_cloud`) receives it, so the whole set is
visible in one place.  Tests use :meth:`Executors.synchronous`, which runs
every call inline.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from twisted_spark.interfaces import IExecutor

#: Threads for the work that is not sized by a setting.
PASSWORD_THREADS = 2
FILE_THREADS = 2
#: Threads (and so PostgreSQL connections) of the ``database`` executor.
DATABASE_THREADS = 4


@implementer(IExecutor)
class ThreadExecutor:
    """Run calls in ``threads`` worker threads of one ``ThreadPool``; results
    come back as Deferreds on the reactor thread.

    :param reactor: the reactor the results are delivered to.
    :param name: names the threads (``spark-<name>``) in debuggers and logs.
    :param threads: the fixed number of threads (at least 1).
    """

    def __init__(self, reactor, name: str, threads: int = 1) -> None:
        self.reactor = reactor
        self.name = name
        self.threads = max(1, int(threads))
        #: Calls submitted and not finished yet (queued or running).
        self.pending = 0
        self._pool: ThreadPool | None = None

    def __repr__(self) -> str:
        return f"<ThreadExecutor {self.name} threads={self.threads} pending={self.pending}>"

    @property
    def running(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPool(minthreads=self.threads, maxthreads=self.threads,
                                    name=f"spark-{self.name}")
            self._pool.start()

    def stop(self) -> None:
        """Run what is queued, then join the threads (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def run(self, function, *args, **kwargs) -> defer.Deferred:
        if self._pool is None:
            self.start()
        assert self._pool is not None
        self.pending += 1
        d = threads.deferToThreadPool(self.reactor, self._pool, function, *args, **kwargs)
        d.addBoth(self._finished)
        return d

    def _finished(self, result):
        self.pending -= 1
        return result


@implementer(IExecutor)
class SynchronousExecutor:
    """Runs every call inline, at once (tests; the result is already there)."""

    pending = 0

    def __init__(self, name: str = "inline") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<SynchronousExecutor {self.name}>"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def run(self, function, *args, **kwargs) -> defer.Deferred:
        return defer.maybeDeferred(function, *args, **kwargs)


@dataclass
class Executors:
    """The executors of one server, by the kind of work they run (module docstring)."""

    rsa: IExecutor
    store: IExecutor
    passwords: IExecutor
    files: IExecutor
    database: IExecutor

    @classmethod
    def threaded(cls, reactor, rsa_threads: int = 2) -> Executors:
        """Thread pools for a server: ``rsa_threads`` (``--rsa-threads``), one
        store thread, and small fixed pools for passwords and files."""
        return cls(
            rsa=ThreadExecutor(reactor, "rsa", rsa_threads),
            store=ThreadExecutor(reactor, "store", 1),
            passwords=ThreadExecutor(reactor, "passwords", PASSWORD_THREADS),
            files=ThreadExecutor(reactor, "files", FILE_THREADS),
            database=ThreadExecutor(reactor, "database", DATABASE_THREADS),
        )

    @classmethod
    def synchronous(cls) -> Executors:
        """Inline executors for tests: every call has run when ``run`` returns."""
        return cls(*(SynchronousExecutor(spec.name) for spec in fields(cls)))

    def all(self) -> list[IExecutor]:
        return [getattr(self, spec.name) for spec in fields(self)]

    def start(self) -> None:
        """Start the executors every server uses (``database`` starts on first use)."""
        for executor in self.all():
            if executor is not self.database:
                executor.start()

    def stop(self) -> None:
        """Stop every executor (each finishes what it was given first)."""
        for executor in self.all():
            executor.stop()
