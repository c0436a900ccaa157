"""DeviceServerFactory: the collaborators every device connection shares."""

from __future__ import annotations

import os

from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.config import Settings
from twisted_spark.crypto.keys import load_device_public_key
from twisted_spark.device.protocol import DeviceProtocol
from twisted_spark.device.rsa_pool import RsaPool


@implementer(IProtocolFactory)
class DeviceServerFactory:
    """Builds a :class:`DeviceProtocol` per accepted device connection.

    :param server_key: the server's RSA-2048 private ``RsaKey``.
    :param store: an ``IDeviceStore`` (device keys and attributes).
    :param registry: a :class:`~twisted_spark.registry.DeviceRegistry`; if it
        has no bus/store of its own it adopts these.
    :param bus: an ``IEventBus`` receiving device events.
    :param settings: :class:`~twisted_spark.config.Settings`.
    :param clock: ``IReactorTime`` for every timer.
    :param rsa_pool: where private-key work runs (``RsaPool`` or a
        synchronous one in tests); default ``RsaPool(reactor, settings.rsa_threads)``.
    :param random_bytes: CSPRNG ``n -> bytes`` (injectable for tests).
    :param describe_on_connect: ask each device's Describe right after its Hello.
    """

    log = Logger()
    protocol = DeviceProtocol

    def __init__(
        self,
        server_key,
        store,
        registry,
        bus,
        settings=None,
        clock=None,
        rsa_pool=None,
        random_bytes=os.urandom,
        describe_on_connect=True,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.server_key = server_key
        #: Counters for /metrics: handshakes that reached the Hello, and refusals.
        self.handshakes_completed = 0
        self.handshakes_failed = 0
        self.store = store
        self.registry = registry
        self.bus = bus
        self.settings = settings if settings is not None else Settings()
        self.clock = clock
        self.rsa_pool = (
            rsa_pool if rsa_pool is not None else RsaPool(clock, self.settings.rsa_threads)
        )
        self.random_bytes = random_bytes
        self.describe_on_connect = describe_on_connect
        self.connections = set()
        self._keys = {}
        if getattr(registry, "bus", False) is None:
            registry.bus = bus
        if getattr(registry, "store", False) is None:
            registry.store = store

    # -- IProtocolFactory ----------------------------------------------------------

    def doStart(self):
        pass

    def doStop(self):
        pass

    def buildProtocol(self, addr):
        proto = self.protocol(self, addr)
        self.connections.add(proto)
        return proto

    def logPrefix(self):
        return "DeviceServerFactory"

    # -- used by the protocol --------------------------------------------------------

    def connection_closed(self, proto):
        self.connections.discard(proto)

    def device_key(self, der):
        """The ``RsaKey`` for a stored DER public key (parsed once, cached)."""
        key = self._keys.get(der)
        if key is None:
            if len(self._keys) > 10000:
                self._keys.clear()
            key = self._keys[der] = load_device_public_key(der)
        return key

    def close_all(self, reason="server shutting down"):
        """Close every device connection (service shutdown)."""
        for proto in list(self.connections):
            proto.close(reason)
