"""Shared pytest fixtures.

pytest-twisted installs the global reactor; the ``reactor`` fixture hands it
to tests that need real sockets.  Most tests use an injected ``Clock``
instead and never touch it.
"""

from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
PROJECT_ROOT = TESTS_DIR.parent


@pytest.fixture
def reactor():
    from twisted.internet import reactor as global_reactor

    return global_reactor


@pytest.fixture
def project_root():
    return PROJECT_ROOT

KEYS_DIR = TESTS_DIR / "keys"


@pytest.fixture
def server_key_pem():
    """The shipped RSA-2048 test server key (generating one is slow)."""
    return (KEYS_DIR / "server.pem").read_bytes()


@pytest.fixture
def data_dir(tmp_path, server_key_pem):
    """A private data directory that already holds the shipped server key."""
    from twisted_spark.datadir import prepare_data_dir

    path = prepare_data_dir(tmp_path / "spark-data")
    (path / "server_key.pem").write_bytes(server_key_pem)
    (path / "server_key.pem").chmod(0o600)
    return path


@pytest.fixture
def clean_reactor():
    """Fail a test that leaves timers or sockets behind (pytest-twisted does not check)."""
    from twisted.internet import reactor as global_reactor

    def sockets():
        selectables = global_reactor.getReaders() + global_reactor.getWriters()
        return {s for s in selectables if hasattr(s, "getHost")}

    calls, before = set(global_reactor.getDelayedCalls()), sockets()
    yield
    leaked = [c for c in global_reactor.getDelayedCalls() if c not in calls and c.active()]
    for call in leaked:
        call.cancel()
    assert not leaked, leaked
    assert not (sockets() - before), "leaked ports/connections"


@pytest.fixture
def logged_failures():
    """The error events logged during the test (to assert there were none)."""
    from twisted.logger import globalLogPublisher

    failures = []

    def observer(event):
        if event.get("log_failure") is not None or event.get("isError"):
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    yield failures
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def postgres_url():
    """The URL of a fresh, empty PostgreSQL database, dropped after the test (tests/pg.py)."""
    from pg import fresh_database

    with fresh_database() as url:
        yield url
