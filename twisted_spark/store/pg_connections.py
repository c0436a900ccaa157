# -*- test-case-name: tests.test_store_postgres -*-
"""One PostgreSQL connection per thread of the ``database`` executor, and reconnection.

:class:`ThreadConnections` hands each worker thread its own psycopg
connection (opened on first use, in autocommit mode) and runs one unit of
work on it: a read as a single statement, a write inside ``BEGIN ...
COMMIT``.  A connection that breaks (the server restarted, an administrator
terminated it, the network dropped) is thrown away and the next call opens
a new one, so the store heals by itself once PostgreSQL is back.

The work is tried a second time, on a fresh connection, only when that
cannot apply it twice: a read, or a write that failed before its COMMIT was
sent.  A write whose COMMIT was in flight when the connection died may or
may not have committed, so it is not repeated; like every other failure to
reach the database it becomes :class:`~twisted_spark.errors.StoreUnavailable`
(503 at the API), and the client decides.
"""

from __future__ import annotations

import threading

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from twisted_spark.errors import StoreUnavailable
from twisted_spark.store import ConstraintError
from twisted_spark.store.url import redact_url

#: libpq settings given unless the URL names them: 5 s to connect, and a
#: connection whose server went silent (a network partition, not a refusal)
#: is found dead within about 15-25 s, so its thread answers 503 instead of
#: waiting for the kernel's TCP timeout (minutes) with requests queued behind.
CONNECTION_DEFAULTS = {
    "connect_timeout": 5,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}


def connect(url: str) -> psycopg.Connection:
    """Open an autocommit connection to ``url`` (raises psycopg's error)."""
    given = conninfo_to_dict(url)
    defaults = {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in given}
    return psycopg.connect(make_conninfo(url, **defaults), autocommit=True)


def unavailable(url: str, error: BaseException) -> StoreUnavailable:
    """The :class:`StoreUnavailable` for ``error``, naming the database (no password)."""
    reason = " ".join(str(error).split()) or type(error).__name__
    return StoreUnavailable(f"PostgreSQL at {redact_url(url)} is unavailable: {reason}")


class ThreadConnections:
    """The connections of one store, one per executor thread.

    Every method but :meth:`close_all` runs on an executor thread.

    :param url: the libpq connection URI.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[psycopg.Connection] = []
        #: Connections opened so far (a reconnect opens one more).
        self.opened = 0

    def connection(self) -> psycopg.Connection:
        """This thread's connection, opened if it has none."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and not connection.closed:
            return connection
        try:
            connection = connect(self.url)
        except psycopg.OperationalError as error:
            raise unavailable(self.url, error) from error
        with self._lock:
            self._all.append(connection)
            self.opened += 1
        self._local.connection = connection
        return connection

    def discard(self, connection: psycopg.Connection) -> None:
        """Close ``connection`` and forget it (the next call reconnects)."""
        with self._lock:
            if connection in self._all:
                self._all.remove(connection)
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        try:
            connection.close()
        except psycopg.Error:
            pass  # already broken: there is nothing left to close cleanly

    def run(self, function, args: tuple, write: bool):
        """``function(cursor, *args)``; a write inside one transaction.

        :raises ConstraintError: for a value PostgreSQL cannot store (text
            with a NUL character), which changes nothing.
        :raises StoreUnavailable: the database could not be reached, or the
            connection broke where repeating the work would not be safe.
        """
        try:
            return self._attempt(function, args, write)
        except _Retry:
            return self._attempt(function, args, write, last=True)

    def _attempt(self, function, args: tuple, write: bool, last: bool = False):
        connection = self.connection()
        committing = False
        try:
            if not write:
                return function(connection.cursor(), *args)
            with connection.transaction():
                result = function(connection.cursor(), *args)
                committing = True  # leaving the block sends COMMIT
            return result
        except psycopg.DataError as error:
            # A value PostgreSQL cannot hold (the API refuses NULs before this).
            raise ConstraintError(f"PostgreSQL refused a value: {error}") from error
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            if connection.broken or connection.closed:
                self.discard(connection)
                if not last and not committing:
                    raise _Retry() from error
            raise unavailable(self.url, error) from error

    def close_all(self) -> None:
        """Close every connection (when no thread is using one)."""
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            try:
                connection.close()
            except psycopg.Error:
                pass


class _Retry(Exception):
    """The connection was lost before anything could have been applied: try once more."""
