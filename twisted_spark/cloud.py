# -*- test-case-name: tests.test_cloud -*-
"""The composition root: :func:`build_cloud` makes the whole object graph.

Everything a running server is made of is built here, from settings and
the few things that need I/O to obtain (the open store, the server key,
the executors), and returned as one :class:`Cloud`.  The service
(:class:`twisted_spark.service.SparkService`) calls it and binds the ports;
the end-to-end tests and the benchmarks call it too, so their wiring is
production's.  :meth:`Cloud.stop` is the one place the shutdown order is
written down.  Nothing here has behaviour of its own: it only connects parts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from twisted_spark.api.app import SparkAPI
from twisted_spark.api.site import SparkSite
from twisted_spark.api.streams import StreamRegistry
from twisted_spark.config import Settings
from twisted_spark.device.factory import DeviceServerFactory
from twisted_spark.events.bus import EventBus
from twisted_spark.events.device_routing import DeviceRouter
from twisted_spark.executors import Executors
from twisted_spark.firmware.flasher import FlashOptions
from twisted_spark.firmware.updater import FirmwareUpdater
from twisted_spark.interfaces import IStore
from twisted_spark.metrics import Metrics
from twisted_spark.registry import DeviceRegistry
from twisted_spark.udp.port import build_gen3_protocol
from twisted_spark.udp.protocol import Gen3DeviceProtocol


@dataclass
class Cloud:
    """One server's parts, wired (see :func:`build_cloud`).

    ``devices`` is the protocol factory for the device port and ``site`` the
    ``twisted.web`` site for the API port; whoever binds ports serves those.
    """

    settings: Settings
    clock: object
    executors: Executors
    store: IStore
    metrics: Metrics
    bus: EventBus
    registry: DeviceRegistry
    router: DeviceRouter
    devices: DeviceServerFactory
    firmware: FirmwareUpdater
    streams: StreamRegistry
    api: SparkAPI
    site: SparkSite
    #: The UDP device port's protocol for Gen3 devices, if a Gen3 key was given.
    gen3: Gen3DeviceProtocol | None = None
    #: The :class:`~twisted_spark.cluster.node.Cluster` with ``--redis``
    #: (``await cluster.start()`` before serving), else None.
    cluster: Any = None

    @defer.inlineCallbacks
    def stop(self):
        """Shut down, in this order, once the ports no longer accept connections
        (the UDP port too: its protocol then ignores crypto and store results
        still on their way, and its DTLS sessions are deliberately left open,
        saved, so Gen3 devices resume them after a restart):

        1. end the event streams (their clients see a finished response);
        2. stop following firmware transfers and hardware events;
        3. close every device connection, the ones still in their handshake
           too (a pending RSA job finds its connection closed and stops);
        4. in a cluster, leave (the devices closed in 3 get no status events
           here: another node's sweep publishes ``offline`` for those that
           did not reconnect elsewhere);
        5. close the store (queued writes are committed first);
        6. stop the executors' threads.

        :rtype: Deferred[None]
        """
        self.streams.close_all("server stopping")
        self.firmware.close()
        if self.cluster is not None:
            self.cluster.drain()
        self.devices.close_all("server shutting down")
        if self.cluster is not None:
            yield defer.ensureDeferred(self.cluster.stop())
        yield self.store.close()
        self.executors.stop()


def build_cloud(
    settings: Settings,
    *,
    reactor,
    store: IStore,
    server_key,
    executors: Executors,
    clock=None,
    random_bytes=os.urandom,
    describe_on_connect: bool = True,
    flash_options: FlashOptions | None = None,
    gen3_key=None,
) -> Cloud:
    """Build every part of a server and connect them.

    :param settings: the :class:`~twisted_spark.config.Settings`.
    :param reactor: runs the compile command (``IReactorProcess``) and is the
        clock unless ``clock`` is given.
    :param store: an open :class:`~twisted_spark.interfaces.IStore`.
    :param server_key: the server's RSA-2048 private key.
    :param executors: the :class:`~twisted_spark.executors.Executors`.
    :param clock: ``IReactorTime`` for every timer (default: ``reactor``).
    :param random_bytes: the CSPRNG of the device handshake (tests may fix it).
    :param describe_on_connect: ask each device's Describe after its Hello.
    :param flash_options: :class:`~twisted_spark.firmware.flasher.FlashOptions`.
    :param gen3_key: the server's EC P-256 private key; given, the cloud has
        a UDP device port protocol for Gen3 devices (``Cloud.gen3``), whose
        ECDH/ECDSA runs in the ``rsa`` executor.
    :rtype: Cloud
    """
    clock = reactor if clock is None else clock
    metrics = Metrics()
    bus = EventBus()
    cluster = None
    registry: DeviceRegistry
    if settings.redis_url:
        from twisted_spark.cluster.node import Cluster

        cluster = Cluster(settings, reactor=reactor, clock=clock, bus=bus, store=store)
        cluster.export_metrics(metrics)
        registry = cluster.registry
    else:
        registry = DeviceRegistry(clock, bus=bus, store=store)
    router = DeviceRouter(bus, registry)
    devices = DeviceServerFactory(
        server_key, store, registry, bus, settings,
        clock=clock, rsa_pool=executors.rsa, random_bytes=random_bytes,
        describe_on_connect=describe_on_connect, metrics=metrics,
    )
    firmware = FirmwareUpdater(
        settings, bus, registry, clock=clock, reactor=reactor, options=flash_options,
        files=executors.files,
    )
    api_firmware: Any = firmware
    if cluster is not None:
        from twisted_spark.cluster.firmware import ClusterFirmware

        api_firmware = ClusterFirmware(firmware, registry, cluster.calls, store)
    streams = StreamRegistry.from_settings(bus, clock, settings)
    api = SparkAPI(
        store, registry, settings, clock=clock, bus=bus, firmware=api_firmware,
        passwords=executors.passwords, metrics=metrics, streams=streams,
    )
    if cluster is not None:
        from twisted_spark.api.shared_throttle import SharedLoginThrottle

        api.throttle = SharedLoginThrottle(cluster.link, cluster.node_id, clock,
                                           settings.login_failures_per_minute)
    gen3 = None
    if gen3_key is not None:
        gen3 = build_gen3_protocol(
            gen3_key, store, clock=clock, executor=executors.rsa,
            accept_unknown_devices=settings.accept_unknown_devices,
        )
    return Cloud(
        settings=settings, clock=clock, executors=executors, store=store, metrics=metrics,
        bus=bus, registry=registry, router=router, devices=devices, firmware=firmware,
        streams=streams, api=api, site=api.site(), gen3=gen3, cluster=cluster,
    )
