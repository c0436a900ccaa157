"""The IWebhookStore contract, run against every store implementation (memory,
SQLite, PostgreSQL: skipped, saying why, where no PostgreSQL runs)."""

from __future__ import annotations

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from twisted_spark.interfaces.webhooks import IWebhookStore
from twisted_spark.models import User, Webhook
from twisted_spark.store import ConstraintError, MemoryStore, TooManyWebhooks
from twisted_spark.store.sqlite import SQLiteStore

ALICE = User("alice", "x", created_at=1.0)
BOB = User("bob", "x", created_at=2.0)


def a_hook(hook_id="a" * 24, owner="alice", created_at=10.0, **definition):
    return Webhook(hook_id, owner, "temp", "https://example.com/{{a}}", "PUT", created_at,
                   device_id="53ff73065067544816300187", no_defaults=True,
                   reject_unauthorized=False, definition=definition)


@pytest_twisted.async_yield_fixture(params=["memory", "sqlite", "postgresql"])
async def store(request, tmp_path, reactor):
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "sqlite":
        opened = await SQLiteStore.open(tmp_path / "spark.sqlite", reactor=reactor)
    else:
        from twisted_spark.store.postgres import PostgresStore

        opened = await PostgresStore.open(request.getfixturevalue("postgres_url"), reactor)
    await opened.add_user(ALICE)
    await opened.add_user(BOB)
    yield opened
    await opened.close()


def test_implements_the_interface(store):
    assert verifyObject(IWebhookStore, store)


@pytest_twisted.ensureDeferred
async def test_add_get_list_delete_round_trip_every_field(store):
    full = a_hook(json={"k": "{{v}}", "n": [1, True, None]}, headers={"X": "1"},
                  auth={"username": "u", "password": "p"}, responseTemplate={"t": "{{x}}"},
                  responseTopic="r", errorResponseTopic="e", name="label")
    assert await store.add_webhook(full) == full
    assert await store.get_webhook(full.hook_id) == full
    second = a_hook("b" * 24, created_at=5.0)
    third = a_hook("c" * 24, owner="bob", created_at=7.0)
    await store.add_webhook(second)
    await store.add_webhook(third)
    assert [h.hook_id for h in await store.list_webhooks("alice")] == ["b" * 24, "a" * 24]
    assert [h.hook_id for h in await store.list_webhooks()] == ["b" * 24, "c" * 24, "a" * 24]
    assert await store.delete_webhook(full.hook_id) is True
    assert await store.delete_webhook(full.hook_id) is False
    assert await store.get_webhook(full.hook_id) is None


@pytest_twisted.ensureDeferred
async def test_limit_per_owner_and_integrity(store):
    for n in range(3):
        await store.add_webhook(a_hook(f"{n:024x}"), limit=3)
    with pytest.raises(TooManyWebhooks):
        await store.add_webhook(a_hook("f" * 24), limit=3)
    await store.add_webhook(a_hook("e" * 24, owner="bob"), limit=3)  # per owner
    with pytest.raises(ConstraintError):
        await store.add_webhook(a_hook(f"{0:024x}"))  # duplicate id
    with pytest.raises(ConstraintError):
        await store.add_webhook(a_hook("d" * 24, owner="nobody"))
    assert len(await store.list_webhooks("alice")) == 3


@pytest_twisted.ensureDeferred
async def test_hooks_survive_reopening_the_database(tmp_path, reactor):
    path = tmp_path / "spark.sqlite"
    store = await SQLiteStore.open(path, reactor=reactor)
    await store.add_user(ALICE)
    await store.add_webhook(a_hook(form={"a": "b"}))
    await store.close()
    store = await SQLiteStore.open(path, reactor=reactor)
    try:
        assert await store.list_webhooks() == [a_hook(form={"a": "b"})]
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_deleting_a_user_deletes_their_hooks_in_the_sql_stores(tmp_path, reactor):
    store = await SQLiteStore.open(tmp_path / "spark.sqlite", reactor=reactor)
    try:
        await store.add_user(ALICE)
        await store.add_webhook(a_hook())
        await store._write(lambda cursor: cursor.execute("DELETE FROM users"))
        assert await store.list_webhooks() == []
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_two_postgresql_stores_racing_stay_within_the_limit(reactor, postgres_url):
    """Two nodes (two stores, two connection pools) create at once: the count
    and the insert are atomic per owner, so the limit holds."""
    from twisted.internet import defer

    from twisted_spark.store.postgres import PostgresStore

    first = await PostgresStore.open(postgres_url, reactor)
    second = await PostgresStore.open(postgres_url, reactor)
    try:
        await first.add_user(ALICE)
        attempts = [store.add_webhook(a_hook(f"{n:024x}"), limit=5)
                    for n in range(12) for store in [(first, second)[n % 2]]]
        results = await defer.DeferredList(attempts, consumeErrors=True)
        assert sum(ok for ok, _ in results) == 5
        assert all(r.check(TooManyWebhooks) for ok, r in results if not ok)
        assert len(await first.list_webhooks("alice")) == 5
    finally:
        await first.close()
        await second.close()
