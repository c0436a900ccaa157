"""``python -m twisted_spark webhooks list`` against a real SQLite database."""

import subprocess
import sys

import pytest_twisted
from conftest import PROJECT_ROOT

from twisted_spark.models import User, Webhook
from twisted_spark.store.sqlite import SQLiteStore


def list_hooks(data_dir, *options):
    return subprocess.run(
        [sys.executable, "-m", "twisted_spark", "webhooks", "list", "--data-dir", str(data_dir),
         *options],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True).stdout


@pytest_twisted.ensureDeferred
async def test_lists_every_users_hooks(reactor, data_dir):
    assert "No webhooks" in list_hooks(data_dir)
    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    try:
        for user in ("alice", "bob"):
            await store.add_user(User(user, "x"))
        await store.add_webhook(Webhook("a" * 24, "alice", "temp", "http://10.0.0.5/t",
                                        created_at=1.0))
        await store.add_webhook(Webhook("b" * 24, "bob", "door", "https://h/d", "GET", 2.0,
                                        device_id="53ff73065067544816300187"))
    finally:
        await store.close()
    lines = list_hooks(data_dir).splitlines()
    assert lines[0].split() == ["id", "owner", "method", "event", "device", "created", "url"]
    assert lines[1].split() == ["a" * 24, "alice", "POST", "temp", "-",
                                "1970-01-01T00:00:01.000Z", "http://10.0.0.5/t"]
    assert lines[2].split()[:5] == ["b" * 24, "bob", "GET", "door", "53ff73065067544816300187"]


@pytest_twisted.ensureDeferred
async def test_lists_the_hooks_of_a_postgresql_database(reactor, data_dir, postgres_url):
    from twisted_spark.store.postgres import PostgresStore

    store = await PostgresStore.open(postgres_url, reactor)
    try:
        await store.add_user(User("carol", "x"))
        await store.add_webhook(Webhook("c" * 24, "carol", "pg", "http://10.0.0.9/"))
    finally:
        await store.close()
    lines = list_hooks(data_dir, "--database", postgres_url).splitlines()
    assert lines[1].split()[:4] == ["c" * 24, "carol", "POST", "pg"]
