"""Loopback end to end: the real device server on 127.0.0.1, 50 virtual devices."""

from __future__ import annotations

import pytest
import pytest_twisted
from device_fixtures import DEVICE_KEYS, SERVER_PUBLIC
from loopback import loopback_cloud, until
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.executors import Executors, ThreadExecutor
from twisted_spark.models import DeviceRecord
from twisted_spark.sim.device import VirtualDevice, connect_device

CORE = "53ff73065067544816300187"


def threaded_rsa(reactor, threads):
    """Inline executors but for RSA, which gets ``threads`` real threads."""
    executors = Executors.synchronous()
    executors.rsa = ThreadExecutor(reactor, "rsa", threads)
    executors.rsa.start()
    return executors


class LoopbackServer:
    """The composition root's device server on an ephemeral 127.0.0.1 port."""

    async def start(self, reactor):
        self.cloud = loopback_cloud(Settings(), executors=threaded_rsa(reactor, 2))
        self.status = []  # spark/status events, in order
        self.cloud.bus.subscribe("spark/status", self.status.append)
        self.factory = self.cloud.devices
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = await endpoint.listen(self.factory)
        self.reactor = reactor
        return self.factory, self.port.getHost().port

    async def stop(self):
        await self.port.stopListening()
        await self.cloud.stop()
        await until(lambda: not self.factory.connections)


@pytest_twisted.ensureDeferred
async def test_fifty_devices_concurrently(reactor):
    server = LoopbackServer()
    factory, port = await server.start(reactor)
    try:
        await fifty_devices(reactor, factory, port, server.status)
    finally:
        await server.stop()


async def fifty_devices(reactor, factory, port, status):
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
    offline = [e.coreid for e in status if e.data == "offline"]
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


class _Peer(Protocol):
    """A raw TCP client: what it received and whether the server closed it."""

    def __init__(self):
        self.received = b""
        self.closed = False

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason=None):
        self.closed = True


@pytest.mark.usefixtures("clean_reactor")
@pytest_twisted.ensureDeferred
async def test_full_rsa_queue_refuses_new_connections_at_once(reactor):
    """With the RSA pool at --max-pending-handshakes, a new connection is closed
    before the nonce; once the queue drains, devices connect again."""
    import os
    import threading

    from twisted_spark.device.factory import QUEUE_FULL, REFUSED_METRIC

    executors = threaded_rsa(reactor, 1)
    pool = executors.rsa
    gate = threading.Event()
    blocker = pool.run(gate.wait, 30)  # the one worker is busy: jobs now queue
    cloud = loopback_cloud(Settings(max_pending_handshakes=2), executors=executors)
    store, metrics, factory = cloud.store, cloud.metrics, cloud.devices
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    address = port.getHost().port
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", address)
    peers = []
    try:
        queued = await connectProtocol(endpoint, _Peer())
        peers.append(queued)
        await until(lambda: len(queued.received) == 40, what="nonce")
        queued.transport.write(os.urandom(256))
        await until(lambda: pool.pending == 2, what="identity job queued")

        refused = await connectProtocol(endpoint, _Peer())
        peers.append(refused)
        await until(lambda: refused.closed, what="refused connection closed")
        assert refused.received == b""
        assert factory.refused == {QUEUE_FULL: 1}
        assert metrics.value(REFUSED_METRIC, reason=QUEUE_FULL) == 1
        assert not queued.closed

        gate.set()
        await blocker
        await until(lambda: queued.closed, what="junk identity refused")
        assert pool.pending == 0
        store._devices[CORE] = DeviceRecord(CORE, public_key=public_key_der(DEVICE_KEYS[0]))
        device = VirtualDevice(CORE, DEVICE_KEYS[0], SERVER_PUBLIC, clock=reactor)
        await connect_device(reactor, "127.0.0.1", address, device, timeout=10)
        assert factory.registry.online_ids() == {CORE}
        device.disconnect()
        await until(lambda: not factory.connections, what="device gone")
    finally:
        gate.set()
        for peer in peers:
            if not peer.closed:
                peer.transport.abortConnection()
        await until(lambda: all(peer.closed for peer in peers), what="peers closed")
        await port.stopListening()
        await cloud.stop()
