"""A private PostgreSQL database per test, on the server the machine runs.

Tests that need PostgreSQL take the ``postgres_url`` fixture (conftest.py):
it creates ``ts_<random>`` on the server named by
``TWISTED_SPARK_TEST_POSTGRES`` (default: user ``postgres`` on
127.0.0.1:5432, as on the development and CI machines) and drops it
afterwards (``WITH (FORCE)``, so a connection left open cannot block the
drop), so parallel runs never see each other's data.  No server: the test
is skipped with the reason, or fails under ``TWISTED_SPARK_STRICT_TESTS=1``.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from strict import unavailable

VARIABLE = "TWISTED_SPARK_TEST_POSTGRES"
ADMIN_URL = os.environ.get(VARIABLE, "postgresql://postgres@127.0.0.1:5432/postgres")


def admin_connection():
    """An autocommit connection to the server's maintenance database (or skip)."""
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[test]')")
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreachable"
        unavailable(f"PostgreSQL at {ADMIN_URL} is unreachable ({first_line}); "
                    f"set {VARIABLE} to a server where CREATE DATABASE is allowed")


def database_url(name: str) -> str:
    """ADMIN_URL pointed at database ``name``."""
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


@contextmanager
def fresh_database():
    """Create an empty database; yield its URL; drop it."""
    name = f"ts_{secrets.token_hex(6)}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        with admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_connections(url: str) -> int:
    """``pg_terminate_backend`` every other connection to ``url``'s database; how many."""
    name = urlsplit(url).path.lstrip("/")
    with admin_connection() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall()
    return sum(1 for (done,) in rows if done)
