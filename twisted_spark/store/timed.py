# -*- test-case-name: tests.test_metrics -*-
"""A store wrapper that times every operation into the metrics.

:func:`timed_store` returns an object providing the same interfaces as the
store it wraps (``IStore``, and ``IDtlsSessionStore`` when the store does);
each interface method's Deferred is timed into
``spark_store_operation_duration_seconds{operation, outcome}``.  It works
for any implementation (SQLite, memory, PostgreSQL) without touching it.
"""

from __future__ import annotations

from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from twisted_spark.interfaces import IDtlsSessionStore, IStore


def _operations(store) -> frozenset[str]:
    names = set(IStore.names(all=True))
    if IDtlsSessionStore.providedBy(store):
        names |= set(IDtlsSessionStore.names(all=True))
    return frozenset(names - {"close"})


class _TimedStore:
    """Forwards everything to ``inner``; times the interface methods (see the module)."""

    def __init__(self, inner, histogram, timer) -> None:
        self._inner = inner
        self._histogram = histogram
        self._timer = timer
        self._timed = _operations(inner)
        directlyProvides(self, providedBy(inner))

    def __getattr__(self, name):
        attribute = getattr(self._inner, name)
        if name not in self._timed:
            return attribute
        ok = self._histogram.labels(name, "ok")
        error = self._histogram.labels(name, "error")
        timer = self._timer

        def timed(*args, **kwargs):
            started = timer()

            def done(result):
                (error if isinstance(result, Failure) else ok).observe(timer() - started)
                return result

            return attribute(*args, **kwargs).addBoth(done)

        timed.__name__ = name
        setattr(self, name, timed)  # built once per method, not per call
        return timed

    def __repr__(self) -> str:
        return f"<timed {self._inner!r}>"


def timed_store(store, metrics):
    """``store``, its operations timed into ``metrics.store_ops``."""
    return _TimedStore(store, metrics.store_ops, metrics.timer)
