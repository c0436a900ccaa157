"""Cluster nodes on loopback for the tests: real Redis, a shared store.

Each test gets its own Redis namespace (so tests running at the same time
never see each other's keys) and :func:`wipe` removes its keys at the end.
"""

from __future__ import annotations

import os
import socket

import treq
from device_fixtures import SERVER_KEY
from loopback import listen, until
from strict import unavailable
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool

from twisted_spark.cloud import build_cloud
from twisted_spark.config import Settings
from twisted_spark.executors import Executors
from twisted_spark.sim.device import VirtualDevice, connect_device
from twisted_spark.store.sqlite import SQLiteStore

REDIS = "redis://127.0.0.1:6379/0"


def require_redis() -> None:
    """Skip (or fail, in strict mode) when no Redis answers on 127.0.0.1:6379."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                raise OSError("not Redis")
    except OSError as e:
        unavailable(f"no Redis server on 127.0.0.1:6379 ({e})")


def namespace() -> str:
    return f"test-{os.urandom(6).hex()}"


async def wipe(space: str) -> None:
    """Delete every key of namespace ``space``."""
    import txredisapi

    redis = await txredisapi.Connection("127.0.0.1", 6379, reconnect=False)
    try:
        cursor = 0
        while True:
            cursor, keys = await redis.scan(cursor, f"{space}:*", 500)
            if keys:
                await redis.delete(keys)
            if int(cursor) == 0:
                break
    finally:
        await redis.disconnect()


class Node:
    """One node: build_cloud with ``--redis``, listening on ephemeral ports."""

    def __init__(self, space, database, node_id, **settings) -> None:
        settings.setdefault("login_failures_per_minute", 0)
        self.settings = Settings(redis_url=REDIS, redis_namespace=space, node_id=node_id,
                                 **settings)
        self.database = database
        self.node_id = node_id
        self.ports = []
        self.devices: list[VirtualDevice] = []
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    async def start(self):
        if str(self.database).startswith("postgresql:"):
            from twisted_spark.store.postgres import PostgresStore

            self.store = await PostgresStore.open(self.database, reactor=reactor)
        else:
            self.store = await SQLiteStore.open(self.database, reactor=reactor)
        self.cloud = build_cloud(self.settings, reactor=reactor, store=self.store,
                                 server_key=SERVER_KEY, executors=Executors.synchronous())
        self.registry = self.cloud.registry
        await self.cloud.cluster.start()
        self.ports = list(await listen(self.cloud))
        self.base = f"http://127.0.0.1:{self.ports[1].getHost().port}"
        return self

    @property
    def device_port(self) -> int:
        return self.ports[0].getHost().port

    async def attach(self, device: VirtualDevice):
        await connect_device(reactor, "127.0.0.1", self.device_port, device, 10)
        self.devices.append(device)
        await until(lambda: self.registry.local(device.device_id) is not None)
        session = self.registry.local(device.device_id)
        await until(lambda: session.functions or session.variables, what="Describe")
        return device

    async def request(self, method, path, token, **kwargs):
        response = await treq.request(method, self.base + path, pool=self.pool,
                                      headers={"Authorization": f"Bearer {token}"}, **kwargs)
        return response.code, await response.json()

    async def stop(self):
        """What the service does: stop accepting, then drain and close."""
        for port in self.ports:
            await port.stopListening()
        self.ports = []
        await self.cloud.stop()
        for device in self.devices:
            device.disconnect()
        await self.pool.closeCachedConnections()

    async def crash(self):
        """Die without a word to the cluster: no releases, no leaving."""
        cluster = self.cloud.cluster
        cluster._loop.stop()
        cluster.registry._publish_status = lambda session, status: None
        await cluster.link.close()
        for device in self.devices:
            device.disconnect()
        for port in self.ports:
            await port.stopListening()
        self.ports = []
        self.cloud.streams.close_all("crash")
        await self.store.close()
        await self.pool.closeCachedConnections()
