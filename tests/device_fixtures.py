"""Helpers for device-side tests: test keys, a fake bus, a server factory on a
Clock with a synchronous RSA pool, and in-memory device<->server connections."""

from __future__ import annotations

from pathlib import Path

from Crypto.PublicKey import RSA
from twisted.internet.task import Clock
from twisted.test import iosim

from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.device.factory import DeviceServerFactory
from twisted_spark.executors import SynchronousExecutor
from twisted_spark.models import DeviceRecord
from twisted_spark.registry import DeviceRegistry
from twisted_spark.sim.device import VirtualDevice
from twisted_spark.store.memory import MemoryStore

KEYS = Path(__file__).parent / "keys"
SERVER_KEY = RSA.import_key((KEYS / "server.pem").read_bytes())
SERVER_PUBLIC = SERVER_KEY.public_key()
DEVICE_KEYS = [RSA.import_key((KEYS / f"device-{i}.pem").read_bytes()) for i in (1, 2, 3)]
CORE_ID = "53ff73065067544816300187"
PHOTON_ID = "1a118ad1c886d54240ce4b17"


class ListBus:
    """An IEventBus that just collects what is published."""

    def __init__(self):
        self.events = []

    def publish(self, event):
        self.events.append(event)

    def subscribe(self, prefix, callback, accepts=None):
        raise NotImplementedError

    def named(self, name):
        return [e for e in self.events if e.name == name]


class Server:
    """A DeviceServerFactory on a Clock with its store, registry and bus."""

    def __init__(self, settings=None, random_bytes=None, describe_on_connect=False, **kw):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.bus = ListBus()
        self.registry = DeviceRegistry(self.clock, bus=self.bus, store=self.store)
        self.settings = settings or Settings()
        extra = {} if random_bytes is None else {"random_bytes": random_bytes}
        self.factory = DeviceServerFactory(
            SERVER_KEY,
            self.store,
            self.registry,
            self.bus,
            self.settings,
            clock=self.clock,
            rsa_pool=SynchronousExecutor("rsa"),
            describe_on_connect=describe_on_connect,
            **extra,
        )

    def register(self, device_id, key=DEVICE_KEYS[0], owner=None):
        self.store._devices[device_id] = DeviceRecord(
            device_id=device_id, owner=owner, public_key=public_key_der(key)
        )

    def device(self, device_id=CORE_ID, key=DEVICE_KEYS[0], platform="core", **kw):
        return VirtualDevice(
            device_id, key, SERVER_PUBLIC, platform=platform, clock=self.clock, **kw
        )

    def connect(self, device, host="10.1.2.3"):
        """Connect ``device`` in memory; returns (server protocol, pump)."""
        server = self.factory.buildProtocol(iosim.FakeAddress())
        server.remote_ip = host
        server_io = iosim.FakeTransport(server, isServer=True)
        client_io = iosim.FakeTransport(device, isServer=False)
        pump = iosim.connect(server, server_io, device, client_io, clock=self.clock)
        return server, pump


def result(d):
    """The result of an already-fired Deferred (raises its failure)."""
    out = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def failure_of(d):
    out = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    assert hasattr(out[0], "raiseException"), f"expected a failure, got {out[0]!r}"
    return out[0]
