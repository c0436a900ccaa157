# -*- test-case-name: tests.test_udp_session -*-
"""Makes the CoAP session of each Gen3 device the UDP port admits.

:class:`Gen3SessionFactory` is the port's
:class:`~twisted_spark.udp.interfaces.IDatagramSessionFactory`: for each
device whose DTLS session is ready it builds a
:class:`~twisted_spark.udp.session.Gen3Session` on a
:class:`~twisted_spark.udp.transport.ReliableTransport`, loads the device's
record (its owner) and puts the session online in the registry.

A device that went quiet or said goodbye keeps its DTLS session and, on
waking, does not repeat what it told the server before (describe,
subscriptions) unless it changed: so a session keeps what it learnt with
the DTLS session (``channel.remember``, persisted with it), and the next
session of the same DTLS session starts from it (:class:`KeptState`), after
a server restart too.
"""

from __future__ import annotations

import os

from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.coap.reliability import MessageLayer
from twisted_spark.udp.interfaces import IDatagramSessionFactory
from twisted_spark.udp.kept import KeptState
from twisted_spark.udp.session import Gen3Session
from twisted_spark.udp.transport import ReliableTransport

__all__ = ["Gen3SessionFactory", "KeptState"]

log = Logger()


@implementer(IDatagramSessionFactory)
class Gen3SessionFactory:
    """Gen3 CoAP sessions, wired to the registry, bus and store.

    :param store: an :class:`~twisted_spark.interfaces.IDeviceStore` (owners).
    :param registry: the :class:`~twisted_spark.interfaces.ISessionSink` sessions report to.
    :param bus: the :class:`~twisted_spark.interfaces.IEventBus` device events go to.
    :param settings: :class:`~twisted_spark.config.Settings`.
    :param clock: ``IReactorTime``.
    :param random_bytes: CSPRNG for the first server message id.
    :param rng: ``() -> float`` in [0, 1) for retransmission jitter (fixed only to
        record transcripts).
    """

    def __init__(self, store, registry, bus, settings, *, clock, random_bytes=os.urandom,
                 rng=None) -> None:
        self.store = store
        self.registry = registry
        self.bus = bus
        self.settings = settings
        self.clock = clock
        self.random_bytes = random_bytes
        self.rng = rng
        self.started = 0
        self.live: dict[str, ReliableTransport] = {}  # device id -> its session's transport

    def session_started(self, channel, hello, first_message) -> ReliableTransport:
        device_id = channel.device_id
        kept = None
        if channel.resumed and channel.application is not None:
            kept = KeptState.from_json(channel.application)
        if hello is None and kept is not None and kept.hello is not None:
            hello = kept.hello  # resumed without a Hello: the one it started with still holds
            channel.hello_known(hello)
        layer = MessageLayer(rng=self.rng, max_outstanding=64)
        transport = ReliableTransport(channel, self.clock, layer, on_lost=self._lost)
        session = Gen3Session(
            transport, device_id, hello, clock=self.clock, sink=self.registry, bus=self.bus,
            settings=self.settings, server_mid=int.from_bytes(self.random_bytes(2), "big"),
            kept=kept,
        )
        transport.session = session
        older = self.live.get(device_id)
        if older is not None and older is not transport:
            older.shutdown("replaced by a newer session of the same device")
        self.live[device_id] = transport
        self.started += 1
        transport.message_received(first_message)
        d = self.store.get_device(device_id)
        d.addCallback(session.start)
        d.addErrback(self._load_failed, transport, device_id)
        return transport

    def _lost(self, transport: ReliableTransport) -> None:
        if self.live.get(transport.channel.device_id) is transport:
            del self.live[transport.channel.device_id]

    def close_all(self, reason: str) -> None:
        """End every CoAP session (the server stops; DTLS sessions stay saved for resuming)."""
        for transport in list(self.live.values()):
            transport.shutdown(reason)
        self.live.clear()

    def _load_failed(self, failure, transport: ReliableTransport, device_id: str) -> None:
        log.failure("Could not load the record of Gen3 device {device_id}", failure,
                    device_id=device_id)
        transport.close("internal error while loading its record", error=True)
