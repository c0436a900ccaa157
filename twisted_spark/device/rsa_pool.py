"""A bounded thread pool for RSA private-key work.

A handshake costs about 3 ms of RSA-2048 private-key arithmetic; done on the
reactor thread, a burst of reconnecting devices would freeze every other
connection, stream and timer.  :class:`RsaPool` runs those calls in a
dedicated :class:`~twisted.python.threadpool.ThreadPool` of a fixed size
(pycryptodome's big-number code releases the GIL, so threads give real
parallelism).  :class:`SynchronousRsaPool` has the same API and runs inline,
for deterministic protocol tests.

``pending`` counts the jobs queued or running, so that the device server can
refuse new handshakes instead of queueing thousands of them
(``--max-pending-handshakes``).
"""

from __future__ import annotations

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool


class RsaPool:
    """Run callables in ``size`` worker threads; results come back as Deferreds.

    Call :meth:`start` before use and :meth:`stop` on shutdown (the service
    does both in ``startService``/``stopService``); calls made while stopped
    start the pool lazily so a forgotten ``start`` is not fatal.
    """

    def __init__(self, reactor, size=2):
        self.reactor = reactor
        self.size = max(1, int(size))
        #: Jobs submitted and not finished yet (queued or running).
        self.pending = 0
        self._pool = None

    @property
    def running(self):
        return self._pool is not None

    def start(self):
        """Start the worker threads (idempotent)."""
        if self._pool is None:
            self._pool = ThreadPool(minthreads=self.size, maxthreads=self.size, name="spark-rsa")
            self._pool.start()

    def stop(self):
        """Stop the worker threads, waiting for the running job (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def run(self, func, *args, **kwargs):
        """Call ``func(*args, **kwargs)`` in a worker. :rtype: Deferred"""
        if self._pool is None:
            self.start()
        self.pending += 1
        d = threads.deferToThreadPool(self.reactor, self._pool, func, *args, **kwargs)
        d.addBoth(self._finished)
        return d

    def _finished(self, result):
        self.pending -= 1
        return result


class SynchronousRsaPool:
    """Same API as :class:`RsaPool`, but calls run inline (tests)."""

    running = True
    pending = 0

    def start(self):
        pass

    def stop(self):
        pass

    def run(self, func, *args, **kwargs):
        return defer.maybeDeferred(func, *args, **kwargs)
