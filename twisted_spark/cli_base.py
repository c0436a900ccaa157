# -*- test-case-name: tests.test_cli -*-
"""What every administrative subcommand shares: its error, options and store.

A command opens the same database the server uses (``--database``, SQLite
in the data dir by default; safe while the server runs: SQLite in WAL mode
serialises writers, PostgreSQL is shared anyway) with :func:`with_store`,
runs its one blocking call with :func:`in_thread`, and reports a user
mistake by raising :class:`CommandError`.
"""

from __future__ import annotations

import getopt
import sys
from pathlib import Path

from twisted.python import usage

from twisted_spark.config import Settings
from twisted_spark.datadir import prepare_data_dir
from twisted_spark.executors import ThreadExecutor


class CommandError(Exception):
    """A user mistake: printed as one line, exit status 1."""


class DataDirOptions(usage.Options):
    """Every subcommand takes ``--data-dir``; it falls back to the global one.

    Options may follow the positional arguments (``keys add ID FILE --owner
    alice``), as people type them; plain ``usage.Options`` stops at the
    first positional argument.
    """

    optParameters = [
        ["data-dir", "d", None, "The server's data directory (default ./spark-data)."],
        ["database", None, "sqlite:",
         "The server's --database: 'sqlite:' (in the data dir) or postgresql://..."],
    ]

    def postOptions(self) -> None:
        from twisted_spark.store.url import parse_database_url

        try:
            parse_database_url(self["database"])
        except ValueError as error:
            raise usage.UsageError(str(error)) from error

    def parseOptions(self, options=None):
        if options is None:
            options = sys.argv[1:]
        try:
            pairs, positional = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
        except getopt.error as error:
            raise usage.UsageError(str(error)) from error
        with_values = {name[:-1] for name in self.longOpt if name.endswith("=")}
        ordered = []
        for option, value in pairs:
            if option.startswith("--") and option[2:] in with_values:
                ordered.append(f"{option}={value}")
            else:
                ordered.append(option + value)
        super().parseOptions(ordered + ["--"] + positional)


async def open_store(reactor, data_dir: Path, database: str = "sqlite:"):
    """The server's store: PostgreSQL if ``database`` says so, else SQLite in ``data_dir``."""
    from twisted_spark.store.url import POSTGRESQL, parse_database_url

    url = parse_database_url(database)
    if url.kind == POSTGRESQL:
        from twisted_spark.errors import StoreUnavailable
        from twisted_spark.store.postgres import PostgresStore

        try:
            return await PostgresStore.open(url.url, reactor=reactor)
        except StoreUnavailable as error:
            raise CommandError(f"{error}; is the server running, and the URL right?") from error
    from twisted_spark.store.sqlite import SQLiteStore

    settings = Settings(data_dir=prepare_data_dir(data_dir))
    return await SQLiteStore.open(settings.database_path, reactor=reactor)


async def in_thread(reactor, function, *args):
    """``function(*args)`` in a thread of its own (a command runs one such call)."""
    executor = ThreadExecutor(reactor, "cli", 1)
    try:
        return await executor.run(function, *args)
    finally:
        executor.stop()


async def with_store(reactor, data_dir, action, database: str = "sqlite:"):
    """Run ``action(store)`` on the server's store (``--database``), closing it afterwards."""
    store = await open_store(reactor, data_dir, database)
    try:
        return await action(store)
    finally:
        await store.close()


async def require_user(store, username: str | None) -> None:
    """CommandError unless ``username`` (if given) is a user."""
    if username is not None and await store.get_user(username) is None:
        raise CommandError(
            f"no user named {username!r}; create it first with "
            f"'python -m twisted_spark users add {username}'")
