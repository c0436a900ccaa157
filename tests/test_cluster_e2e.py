"""Cluster end to end: two or three nodes in one reactor, real Redis, real sockets.

The nodes share a store (a PostgreSQL database, or one SQLite file: every
test runs on both) and a Redis namespace of their own; devices are virtual
devices over TCP and the API is called over HTTP.
"""

from __future__ import annotations

import io
import json

import pytest
import pytest_twisted
import treq
import txredisapi
from cluster_harness import Node, namespace, require_redis, wipe
from device_fixtures import DEVICE_KEYS, SERVER_PUBLIC
from loopback import until
from twisted.internet import reactor

from twisted_spark import passwords
from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.sim.device import VirtualDevice

CORE = "53ff73065067544816300187"
pytestmark = pytest.mark.usefixtures("clean_reactor")

TOKEN = "c" * 40
PASSWORD = "cluster password"


@pytest.fixture(autouse=True)
def fast_passwords(monkeypatch):
    monkeypatch.setattr(passwords, "ITERATIONS", 1000)


@pytest.fixture
def space():
    require_redis()
    return namespace()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """Where the nodes' shared store is: one SQLite file (WAL lets several
    connections share it) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "spark.sqlite"
    else:
        from pg import fresh_database

        with fresh_database() as url:
            yield url


async def nodes(space, database, count, **settings):
    started = []
    for index in range(count):
        started.append(await Node(space, database, f"node-{'abc'[index]}", **settings).start())
    store = started[0].store
    await store.add_user(User("alice", passwords.hash_password(PASSWORD)))
    await store.add_token(AccessToken(TOKEN, "alice", "spark", 0.0))
    await store.put_device(DeviceRecord(CORE, owner="alice",
                                        public_key=public_key_der(DEVICE_KEYS[0])))
    return started


def device():
    return VirtualDevice(CORE, DEVICE_KEYS[0], SERVER_PUBLIC, platform="core", clock=reactor)


async def stop_all(space, running):
    for node in running:
        if node.ports or node.cloud.cluster.link.redis is not None:
            await node.stop()
    await wipe(space)


class Stream:
    """An SSE client: the events it received, as (name, parsed data)."""

    def __init__(self):
        self.text = b""

    async def open(self, node, path):
        self.response = await treq.get(node.base + path, pool=node.pool, unbuffered=True,
                                       headers={"Authorization": f"Bearer {TOKEN}"})
        self.response.deliverBody(self)
        return self

    # IProtocol, the few methods deliverBody uses
    def makeConnection(self, transport):
        self.transport = transport

    def dataReceived(self, data):
        self.text += data

    def connectionLost(self, reason):
        pass

    def events(self):
        found = []
        for block in self.text.decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in lines:
                found.append((lines["event"], json.loads(lines["data"])))
        return found

    def close(self):
        self.transport.stopProducing()


@pytest_twisted.ensureDeferred
async def test_calls_list_and_offline_across_nodes(space, database):
    """Device on A, API on B: list, info, function, variable, ping, signal; then 404."""
    a, b = running = await nodes(space, database, 2)
    try:
        sim = await a.attach(device())
        await until(lambda: b.registry.get(CORE) is not None, what="presence on B")
        status, listed = await b.request("GET", "/v1/devices", TOKEN)
        assert status == 200 and listed[0]["connected"] is True
        status, body = await b.request("POST", f"/v1/devices/{CORE}/brew", TOKEN,
                                       data={"arg": "hello"})
        assert (status, body["return_value"]) == (200, 5)
        status, body = await b.request("GET", f"/v1/devices/{CORE}/temperature", TOKEN)
        assert (status, body["result"]) == (200, -98765)
        status, body = await b.request("PUT", f"/v1/devices/{CORE}/ping", TOKEN)
        assert body["online"] is True
        status, body = await b.request("PUT", f"/v1/devices/{CORE}", TOKEN,
                                       data={"signal": "1"})
        assert (status, body["signaling"]) == (200, True)
        status, body = await b.request("POST", f"/v1/devices/{CORE}/nosuch", TOKEN)
        assert status == 400
        assert b.cloud.cluster.calls.served == 0 and a.cloud.cluster.calls.served >= 4
        metrics = await (await treq.get(a.base + "/metrics", pool=a.pool)).text()
        assert "spark_cluster_calls_served " in metrics and "spark_cluster_healthy 1" in metrics

        status, _ = await b.request("DELETE", f"/v1/devices/{CORE}", TOKEN)  # release
        assert status == 200
        await until(lambda: a.registry.local(CORE).owner is None, what="owner on A")
        status, _ = await b.request("POST", f"/v1/devices/{CORE}/brew", TOKEN)
        assert status == 403
        status, _ = await b.request("POST", "/v1/devices", TOKEN, data={"id": CORE})  # claim
        assert status == 200
        await until(lambda: a.registry.local(CORE).owner == "alice", what="owner on A")

        sim.disconnect()
        await until(lambda: b.registry.get(CORE) is None, what="offline on B")
        status, body = await b.request("POST", f"/v1/devices/{CORE}/brew", TOKEN,
                                       data={"arg": "x"})
        assert status == 404
    finally:
        await stop_all(space, running)


@pytest_twisted.ensureDeferred
async def test_events_both_ways_once_in_order(space, database):
    """A device's events reach SSE on B, in order, once; API events on B reach
    the device subscribed on A; relayed events carry their node as origin."""
    a, b = running = await nodes(space, database, 2)
    seen_on_b = []
    b.cloud.bus.subscribe("", seen_on_b.append)
    try:
        sim = await a.attach(device())
        assert await sim.subscribe("cmd", my_devices=True)
        stream = await Stream().open(b, "/v1/devices/events/temp")
        await until(lambda: len(b.cloud.streams.streams()) == 1)
        for value in range(20):
            sim.publish("temp", str(value))
        await until(lambda: len(stream.events()) == 20, what="20 events on B")
        assert [data["data"] for _, data in stream.events()] == [str(v) for v in range(20)]
        relayed = [e for e in seen_on_b if e.name == "temp"]
        assert {e.origin for e in relayed} == {"node-a"}

        status, _ = await b.request("POST", "/v1/devices/events", TOKEN,
                                    data={"name": "cmd/go", "data": "now", "private": "true"})
        assert status == 200
        await until(lambda: any(name == "cmd/go" for name, *_ in sim.events),
                    what="event at the device on A")
        await until(lambda: len(stream.events()) == 20)  # nothing echoed or doubled
        assert len([e for e in seen_on_b if e.name == "cmd/go"]) == 1
        stream.close()
    finally:
        await stop_all(space, running)


@pytest_twisted.ensureDeferred
async def test_takeover_newest_wins_without_offline(space, database):
    """The device reconnects to B while A still holds it: A closes its session,
    and every node sees online, online: never offline in between."""
    a, b, c = running = await nodes(space, database, 3)
    statuses = []
    c.cloud.bus.subscribe("spark/status", lambda e: statuses.append(e.data))
    try:
        first = await a.attach(device())
        await until(lambda: statuses == ["online"])
        await b.attach(device())
        await until(lambda: a.registry.local(CORE) is None, what="A closed its session")
        await first.closed
        await until(lambda: c.registry.get(CORE) is not None
                    and c.registry.get(CORE).node == "node-b")
        status, body = await c.request("POST", f"/v1/devices/{CORE}/brew", TOKEN,
                                       data={"arg": "abc"})
        assert (status, body["return_value"]) == (200, 3)
        assert statuses == ["online", "online"]
        assert a.registry.get(CORE).node == "node-b"
    finally:
        await stop_all(space, running)


@pytest_twisted.ensureDeferred
async def test_node_loss_offline_once_then_reconnect(space, database):
    """A dies silently: its device shows offline on B and C within the presence
    TTL, ``offline`` is published once, and the device comes back on B."""
    a, b, c = running = await nodes(space, database, 3, presence_ttl=1.5)
    statuses = {"b": [], "c": []}
    b.cloud.bus.subscribe("spark/status", lambda e: statuses["b"].append(e.data))
    c.cloud.bus.subscribe("spark/status", lambda e: statuses["c"].append(e.data))
    try:
        await a.attach(device())
        await until(lambda: statuses["b"] == ["online"] and statuses["c"] == ["online"])
        await a.crash()
        started = reactor.seconds()
        await until(lambda: b.registry.get(CORE) is None and c.registry.get(CORE) is None,
                    timeout=15, what="offline everywhere")
        assert reactor.seconds() - started <= 1.5 * 4 / 3 + 2.5  # TTL + a renewal interval
        await until(lambda: statuses["b"] == statuses["c"] == ["online", "offline"])
        assert len(b.cloud.cluster.swept + c.cloud.cluster.swept) == 1
        await b.attach(device())
        await until(lambda: statuses["c"] == ["online", "offline", "online"])
    finally:
        await stop_all(space, running[1:])


@pytest_twisted.ensureDeferred
async def test_flash_at_the_holder_by_reference(space, database, tmp_path):
    """An upload on B flashes the device on A: the image goes through the shared
    firmware directory, never through Redis."""
    a, b = running = await nodes(space, database, 2, firmware_dir=tmp_path / "firmware")
    try:
        sim = await a.attach(device())
        await until(lambda: b.registry.get(CORE) is not None)
        image = bytes(range(256)) * 8
        files = {"file": ("app.bin", "application/octet-stream", io.BytesIO(image))}
        response = await treq.put(f"{b.base}/v1/devices/{CORE}", pool=b.pool,
                                  headers={"Authorization": f"Bearer {TOKEN}"},
                                  data={"file_type": "binary"}, files=files)
        body = await response.json()
        assert response.code == 200, body
        assert sim.firmware.startswith(image)
        assert a.cloud.firmware.last_summary["device_id"] == CORE
    finally:
        await stop_all(space, running)


@pytest_twisted.ensureDeferred
async def test_failed_logins_are_counted_across_nodes(space, database):
    """Three wrong passwords spread over two nodes use up the address's minute:
    the fourth attempt is 429 on either node, the right password too."""
    a, b = running = await nodes(space, database, 2, login_failures_per_minute=3)

    async def login(node, password):
        response = await treq.post(node.base + "/oauth/token", auth=("spark", "spark"),
                                   pool=node.pool, data={"grant_type": "password",
                                                         "username": "alice",
                                                         "password": password})
        await response.content()
        return response.code

    try:
        assert await login(a, PASSWORD) == 200  # refunded: costs nothing
        assert [await login(node, "wrong") for node in (a, b, a)] == [400, 400, 400]
        assert await login(b, PASSWORD) == 429
        assert await login(a, "wrong") == 429
    finally:
        await stop_all(space, running)


@pytest_twisted.ensureDeferred
async def test_cluster_wide_jobs_run_on_one_node(space, database):
    """``once`` (the token sweep's lock) says yes to one node per period."""
    running = await nodes(space, database, 3)
    try:
        answers = [await node.cloud.cluster.once("token-sweep", 30) for node in running]
        assert sorted(answers) == [False, False, True]
        assert all(node.cloud.cluster.healthy() for node in running)
    finally:
        await stop_all(space, running)


@pytest_twisted.ensureDeferred
async def test_a_node_taken_for_dead_claims_its_devices_again(space, database):
    """A stalls past the TTL and is swept (offline on B); when it renews again
    its live device is online again everywhere."""
    a, b = running = await nodes(space, database, 2, presence_ttl=1.0)
    statuses = []
    b.cloud.bus.subscribe("spark/status", lambda e: statuses.append(e.data))
    try:
        await a.attach(device())
        await until(lambda: statuses == ["online"])
        a.cloud.cluster._loop.stop()  # A stalls
        await until(lambda: statuses == ["online", "offline"], timeout=10)
        assert b.registry.get(CORE) is None and b.cloud.cluster.swept == ["node-a"]
        await a.cloud.cluster.tick()
        await until(lambda: statuses == ["online", "offline", "online"])
        await until(lambda: b.registry.get(CORE) is not None)
        status, body = await b.request("POST", f"/v1/devices/{CORE}/brew", TOKEN,
                                       data={"arg": "ab"})
        assert (status, body["return_value"]) == (200, 2)
    finally:
        await stop_all(space, running)


@pytest_twisted.ensureDeferred
async def test_presence_reloaded_after_the_subscriber_reconnects(space, database):
    """B's subscriber connection drops while A's device leaves: B misses the
    message, and reloads presence from Redis once it is back."""
    a, b = running = await nodes(space, database, 2)
    try:
        sim = await a.attach(device())
        await until(lambda: b.registry.get(CORE) is not None)
        link = b.cloud.cluster.link
        old = link._subscriber
        old.transport.abortConnection()
        await until(lambda: link._subscriber is None)
        sim.disconnect()
        await until(lambda: a.registry.get(CORE) is None)
        assert b.registry.get(CORE) is not None  # missed the news
        await until(lambda: link._subscriber not in (None, old), timeout=15)
        await until(lambda: b.registry.get(CORE) is None, what="reloaded presence")
        assert b.cloud.cluster.healthy()
    finally:
        await stop_all(space, running)


@pytest_twisted.ensureDeferred
async def test_a_stopping_node_hands_its_devices_over_without_offline(space, database):
    """A stops (a drain): its device reconnects to B at once and shows online,
    online; another device that does not come back gets one offline, from the
    sweep of A."""
    a, b, c = running = await nodes(space, database, 3, presence_ttl=6)
    other = "53ff73065067544816300188"
    await a.store.put_device(DeviceRecord(other, owner="alice",
                                          public_key=public_key_der(DEVICE_KEYS[1])))
    statuses = []
    c.cloud.bus.subscribe("spark/status", lambda e: statuses.append((e.coreid, e.data)))
    try:
        await a.attach(device())
        await a.attach(VirtualDevice(other, DEVICE_KEYS[1], SERVER_PUBLIC, clock=reactor))
        await until(lambda: len(statuses) == 2)
        await a.stop()
        await b.attach(device())
        await until(lambda: (other, "offline") in statuses, timeout=15)
        await until(lambda: c.registry.get(CORE) is not None)
        assert [s for d, s in statuses if d == CORE] == ["online", "online"]
        assert [s for d, s in statuses if d == other] == ["online", "offline"]
        assert c.registry.get(other) is None
    finally:
        await stop_all(space, running[1:])


@pytest_twisted.ensureDeferred
async def test_the_service_joins_before_serving_and_sweeps_tokens_once(space, data_dir):
    """SparkService with --redis: the node is in the cluster when the ports
    open; the token sweep runs only under the cluster's lock; stopping ends
    the heartbeat."""
    from cluster_harness import REDIS

    from twisted_spark.service import SparkService, _open_configured_store

    sweeps = []

    async def open_store(settings, reactor, executor):
        store = await _open_configured_store(settings, reactor, executor)
        delete_expired = store.delete_expired
        store.delete_expired = lambda now: sweeps.append(now) or delete_expired(now)
        return store

    settings = Settings(data_dir=data_dir, api_endpoint="tcp:0:interface=127.0.0.1",
                        device_endpoint="tcp:0:interface=127.0.0.1", udp_device="off",
                        redis_url=REDIS, redis_namespace=space, node_id="svc")
    service = SparkService(settings, reactor, open_store=open_store)
    service.startService()
    try:
        await service.ready
        cluster = service.cloud.cluster
        assert cluster.healthy()
        await until(lambda: len(sweeps) == 1, what="the sweep at start")
        await service._sweep_expired_tokens()  # the start's sweep holds the lock
        assert len(sweeps) == 1
        await cluster.link.redis.delete(cluster.link.key("once", "token-sweep"))
        await service._sweep_expired_tokens()
        assert len(sweeps) == 2
        redis = cluster.link.redis
        assert await redis.exists(cluster.link.key("node", "svc"))
        ttl_before = await redis.execute_command("PTTL", cluster.link.key("node", "svc"))
    finally:
        await service.stopService()
    probe = await txredisapi.Connection("127.0.0.1", 6379, reconnect=False)
    try:
        # The heartbeat ends a third of the TTL after the stop.
        left = await probe.execute_command("PTTL", f"{space}:node:svc")
        assert 0 < left <= 10_000 < ttl_before
    finally:
        await probe.disconnect()
        await wipe(space)


@pytest_twisted.ensureDeferred
async def test_a_token_revoked_on_one_node_leaves_every_cache_at_once(space, database):
    """A caches the token it checked; revoking it on B drops it from A's cache
    as soon as B's announcement arrives (not a second later), and A refuses it."""
    a, b = running = await nodes(space, database, 2)
    try:
        status, _ = await a.request("GET", "/v1/devices", TOKEN)
        assert status == 200
        cached = a.cloud.store._tables["token"].entries
        assert TOKEN in cached
        response = await treq.delete(f"{b.base}/v1/access_tokens/{TOKEN}", pool=b.pool,
                                     auth=("alice", PASSWORD))
        assert response.code == 200, await response.text()
        await until(lambda: TOKEN not in cached, timeout=0.5, what="A's cache entry dropped")
        status, _ = await a.request("GET", "/v1/devices", TOKEN)
        assert status == 401
    finally:
        await stop_all(space, running)
