"""Webhooks in a cluster, on real Redis: the shared throttling
(:class:`~twisted_spark.cluster.hook_health.RedisHealth`) on its own, then two
nodes in one reactor sharing a SQLite store, a receiver on loopback."""

from __future__ import annotations

import pytest
import pytest_twisted
import txredisapi
from cluster_harness import REDIS, Node, namespace, require_redis, wipe
from loopback import until
from twisted.internet import defer, reactor, tcp
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.web.server import Site
from webhook_fixtures import Receiver
from zope.interface.verify import verifyObject

from twisted_spark import passwords
from twisted_spark.cluster.address import RedisAddress
from twisted_spark.cluster.hook_health import RedisHealth
from twisted_spark.cluster.hook_relay import HookRelay
from twisted_spark.cluster.link import RedisLink
from twisted_spark.interfaces.webhooks import IWebhookHealth
from twisted_spark.models import AccessToken, User
from twisted_spark.webhooks import outcome

pytestmark = pytest.mark.usefixtures("clean_reactor")

TOKEN = "c" * 40


@pytest.fixture
def space():
    require_redis()
    return namespace()


async def healths(space, count=2, max_errors=3, sleep=30.0):
    """``count`` RedisHealth on links of their own (one per node), one fake clock."""
    clock, made = Clock(), []
    for index in range(count):
        link = RedisLink(RedisAddress.parse(REDIS), space, reactor)
        health = RedisHealth(link, f"node-{index}", clock, max_errors, sleep)
        await link.connect({health.channel: health.received})
        made.append(health)
    return clock, made


async def close(space, made):
    for health in made:
        await health.link.close()
    await wipe(space)


async def redis_state(space, hook_id):
    redis = await txredisapi.Connection("127.0.0.1", 6379, reconnect=False)
    try:
        count = await redis.get(f"{space}:webhook:{hook_id}:failures")
        ttl = await redis.execute_command("PTTL", f"{space}:webhook:{hook_id}:sleep")
    finally:
        await redis.disconnect()
    return (int(count) if count is not None else 0), ttl


@pytest_twisted.ensureDeferred
async def test_failures_counted_on_one_node_put_the_hook_to_sleep_on_every_node(space):
    clock, (a, b) = await healths(space)
    try:
        assert verifyObject(IWebhookHealth, a)
        a.failed("h1")
        a.failed("h1")
        await until(lambda: b.failures("h1") == 2, what="B hears the count")
        assert not a.asleep("h1") and not b.asleep("h1")
        a.failed("h1")
        assert a.asleep("h1")  # at once, from A's own view
        await until(lambda: b.asleep("h1"), what="B hears the sleep")
        assert b.failures("h1") == 3 and not b.asleep("h2")
        count, ttl = await redis_state(space, "h1")
        assert count == 3 and 0 < ttl <= 30_000
        clock.advance(30.0)
        assert not a.asleep("h1") and not b.asleep("h1")
    finally:
        await close(space, [a, b])


@pytest_twisted.ensureDeferred
async def test_failures_on_different_nodes_add_up_and_a_success_anywhere_resets(space):
    clock, (a, b) = await healths(space)
    try:
        a.failed("h1")
        await until(lambda: b.failures("h1") == 1, what="B hears A")
        b.failed("h1")
        await until(lambda: a.failures("h1") == 2, what="A hears B")
        a.failed("h1")  # the third, wherever it happens, starts the sleep
        await until(lambda: b.asleep("h1"), what="B asleep")
        b.succeeded("h1")
        assert not b.asleep("h1") and b.failures("h1") == 0
        await until(lambda: a.failures("h1") == 0 and not a.asleep("h1"), what="A reset")
        assert await redis_state(space, "h1") == (0, -2)
    finally:
        await close(space, [a, b])


@pytest_twisted.ensureDeferred
async def test_concurrent_failures_all_count(space):
    clock, (a, b) = await healths(space, max_errors=100)
    try:
        for _ in range(20):
            a.failed("h1")
            b.failed("h1")
        await until(lambda: a.failures("h1") == 40 and b.failures("h1") == 40,
                    what="both see every failure")
        assert (await redis_state(space, "h1"))[0] == 40
        a.forget("h1")
        await until(lambda: b.failures("h1") == 0, what="B forgets the deleted hook")
    finally:
        await close(space, [a, b])


@pytest_twisted.ensureDeferred
async def test_malformed_and_own_announcements_are_ignored(space):
    clock, (a,) = await healths(space, count=1)
    try:
        a.received("not json")
        a.received('["node-0", "h1", 5, 1000, 1]')  # its own, already applied
        a.received('["node-9", "h1", "x", 0, 1]')
        a.received('["node-9", "h1", 1, 0]')
        assert a.failures("h1") == 0 and a.heard == 0
        a.received('["node-9", "h1", 4, 2000, 7]')
        assert a.failures("h1") == 4 and a.asleep("h1")
        a.received('["node-9", "h1", 3, 0, 6]')  # older than what A knows
        assert a.failures("h1") == 4 and a.asleep("h1")
        clock.advance(2.0)
        assert not a.asleep("h1")
    finally:
        await close(space, [a])


# -- two nodes ------------------------------------------------------------------------


class World:
    """Two nodes (A, B) sharing a SQLite store and a namespace, and a receiver."""

    def __init__(self, space, tmp_path):
        settings = dict(webhook_allow=("loopback",), webhook_max_errors=2, webhook_sleep=60)
        self.space = space
        self.nodes = [Node(space, tmp_path / "spark.sqlite", name, **settings)
                      for name in ("node-a", "node-b")]
        self.receiver = Receiver()

    async def start(self):
        for node in self.nodes:
            await node.start()
            await node.cloud.webhooks.start()
        store = self.nodes[0].store
        await store.add_user(User("alice", passwords.hash_password("pw")))
        await store.add_token(AccessToken(TOKEN, "alice", "spark", 0.0))
        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(self.receiver))
        self.target = f"http://127.0.0.1:{self.port.getHost().port}"
        return self.nodes

    async def create(self, node, **definition):
        code, body = await node.request("POST", "/v1/webhooks", TOKEN, json=definition)
        assert code == 200, body
        return body["id"]

    async def publish(self, node, name, data="x"):
        code, body = await node.request("POST", "/v1/devices/events", TOKEN,
                                        data={"name": name, "data": data})
        assert code == 200, body

    async def stop(self):
        for node in self.nodes:
            if node.ports:
                await node.stop()
        self.receiver.cancel_pending()
        await self.port.stopListening()
        await wipe(self.space)
        await until(lambda: not [s for s in reactor.getReaders() + reactor.getWriters()
                                 if isinstance(s, (tcp.Client, tcp.Server))],
                    what="connections closed")


@pytest_twisted.ensureDeferred
async def test_an_event_fires_each_hook_once_in_the_cluster(space, tmp_path):
    world = World(space, tmp_path)
    a, b = await world.start()
    try:
        hook_id = await world.create(a, event="temp", url=world.target + "/in")
        await until(lambda: b.cloud.webhooks.hook(hook_id) is not None, timeout=1.0,
                    what="B knows the hook A created (without its 10 s reload)")
        await world.publish(a, "temp", "on-a")
        await until(lambda: world.receiver.at("/in"), what="the delivery from A")
        # B received the event too (its streams get it), and a later event B
        # received is delivered after it: had B fired for A's, it would be here.
        await until(lambda: b.cloud.cluster.relay.counts.received >= 1, what="relayed to B")
        await world.publish(b, "temp", "on-b")
        await until(lambda: len(world.receiver.at("/in")) >= 2, what="the delivery from B")
        assert sorted(r.args["data"][0] for r in world.receiver.at("/in")) == ["on-a", "on-b"]
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_failures_on_a_put_the_hook_to_sleep_on_b(space, tmp_path):
    world = World(space, tmp_path)
    a, b = await world.start()
    errors = []
    b.cloud.bus.subscribe("hook-error", errors.append, lambda e: e.origin is None)
    try:
        world.receiver.on("/bad", 400)
        hook_id = await world.create(a, event="temp", url=world.target + "/bad")
        await until(lambda: b.cloud.webhooks.hook(hook_id) is not None, timeout=1.0,
                    what="B knows the hook")
        for _ in range(2):
            await world.publish(a, "temp")
        await until(lambda: len(world.receiver.at("/bad")) == 2, what="two failed deliveries")
        await until(lambda: b.cloud.webhooks.health.asleep(hook_id), what="asleep on B")
        assert b.cloud.webhooks.failures(hook_id) == 2
        await world.publish(b, "temp")
        await until(lambda: errors, what="B refuses the delivery")
        assert errors[0].data == outcome.SLEEPING
        assert len(world.receiver.at("/bad")) == 2
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_a_hook_deleted_on_a_stops_firing_on_b_within_a_second(space, tmp_path):
    world = World(space, tmp_path)
    a, b = await world.start()
    try:
        gone = await world.create(a, event="temp", url=world.target + "/gone")
        await world.create(a, event="temp", url=world.target + "/kept")
        await until(lambda: b.cloud.webhooks.hook(gone) is not None, timeout=1.0,
                    what="B knows the hook")
        code, _ = await a.request("DELETE", f"/v1/webhooks/{gone}", TOKEN)
        assert code == 200
        await until(lambda: b.cloud.webhooks.hook(gone) is None, timeout=1.0,
                    what="B drops the deleted hook")
        await world.publish(b, "temp")
        await until(lambda: world.receiver.at("/kept"), what="the hook kept fires")
        assert world.receiver.at("/gone") == []
    finally:
        await world.stop()


class FakeDispatcher:
    """Records what the relay passes on (the unit test of HookRelay's messages)."""

    def __init__(self):
        self.removed, self.reloads = [], 0

    def hook(self, hook_id):
        return None

    def hook_removed(self, hook_id):
        self.removed.append(hook_id)

    def reload(self):
        self.reloads += 1
        return defer.succeed(None)


def test_the_hook_relay_follows_other_nodes_and_ignores_its_own_and_bad_messages():
    link = RedisLink(RedisAddress.parse(REDIS), "ns", reactor)  # never connected
    dispatcher = FakeDispatcher()
    relay = HookRelay(dispatcher, link, "node-a")
    assert relay.channel == "ns:webhooks"
    relay.hook_removed("h0")  # not connected: applied here, announced to nobody
    for message in ("{", '["node-b", "added"]', '["node-a", "removed", "alice", "h1"]',
                    '["node-b", "renamed", "alice", "h1"]'):
        relay.received(message)
    assert (dispatcher.removed, dispatcher.reloads, relay.sent) == (["h0"], 0, 0)
    relay.received('["node-b", "removed", "alice", "h1"]')
    relay.received('["node-b", "added", "alice", "h2"]')
    assert (dispatcher.removed, dispatcher.reloads, relay.heard) == (["h0", "h1"], 1, 3)
