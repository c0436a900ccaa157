"""Loopback end to end: the real device server on 127.0.0.1, 50 virtual devices."""

from __future__ import annotations

import pytest
import pytest_twisted
from device_fixtures import DEVICE_KEYS, SERVER_KEY, SERVER_PUBLIC, ListBus
from loopback import until
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint

from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.device.factory import DeviceServerFactory
from twisted_spark.device.rsa_pool import RsaPool
from twisted_spark.models import DeviceRecord
from twisted_spark.registry import DeviceRegistry
from twisted_spark.sim.device import VirtualDevice, connect_device
from twisted_spark.store.memory import MemoryStore


class LoopbackServer:
    """The real device server on an ephemeral 127.0.0.1 port."""

    async def start(self, reactor):
        store = MemoryStore()
        bus = ListBus()
        registry = DeviceRegistry(reactor, bus=bus, store=store)
        self.pool = RsaPool(reactor, 2)
        self.pool.start()
        self.factory = DeviceServerFactory(
            SERVER_KEY, store, registry, bus, Settings(), clock=reactor, rsa_pool=self.pool
        )
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = await endpoint.listen(self.factory)
        self.reactor = reactor
        return self.factory, self.port.getHost().port

    async def stop(self):
        for proto in list(self.factory.connections):
            proto.close("test over")
        await self.port.stopListening()
        await until(lambda: not self.factory.connections)
        self.pool.stop()


@pytest_twisted.ensureDeferred
async def test_fifty_devices_concurrently(reactor):
    server = LoopbackServer()
    factory, port = await server.start(reactor)
    try:
        await fifty_devices(reactor, factory, port)
    finally:
        await server.stop()


async def fifty_devices(reactor, factory, port):
    devices = []
    for i in range(50):
        platform = "core" if i % 2 else "photon"
        device_id = f"{i:024x}"
        key = DEVICE_KEYS[i % 3]
        factory.store._devices[device_id] = DeviceRecord(device_id, public_key=public_key_der(key))
        devices.append(
            VirtualDevice(device_id, key, SERVER_PUBLIC, platform=platform, clock=reactor)
        )
    await defer.gatherResults(
        [defer.ensureDeferred(connect_device(reactor, "127.0.0.1", port, d)) for d in devices],
        consumeErrors=True,
    )
    registry = factory.registry
    assert registry.online_ids() == {d.device_id for d in devices}

    async def exercise(device):
        session = registry.get(device.device_id)
        assert await session.call_function("brew", b"abc") == 3
        values = [
            await session.read_variable(name)
            for name in ("ready", "temperature", "message", "ratio")
        ]
        assert values == [True, -98765, "woot", pytest.approx(-104.858)]

    await defer.gatherResults(
        [defer.ensureDeferred(exercise(d)) for d in devices], consumeErrors=True
    )
    for device in devices[:10]:
        device.disconnect()
    await until(lambda: len(registry) == 40)
    offline = [e.coreid for e in factory.bus.named("spark/status") if e.data == "offline"]
    assert sorted(offline) == sorted(d.device_id for d in devices[:10])
    for device in devices[10:]:
        device.disconnect()
    await until(lambda: len(registry) == 0)


@pytest_twisted.ensureDeferred
async def test_unknown_device_refused_over_tcp(reactor):
    server = LoopbackServer()
    factory, port = await server.start(reactor)
    try:
        device = VirtualDevice("ab" * 12, DEVICE_KEYS[0], SERVER_PUBLIC, clock=reactor)
        with pytest.raises(ConnectionError):
            await connect_device(reactor, "127.0.0.1", port, device, timeout=10)
        assert len(factory.registry) == 0
    finally:
        await server.stop()
