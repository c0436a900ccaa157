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
from typing import Any, cast

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
from twisted_spark.health import Readiness, store_check
from twisted_spark.interfaces import IStore
from twisted_spark.metrics import Metrics
from twisted_spark.registry import DeviceRegistry
from twisted_spark.store.cache import CachingStore
from twisted_spark.store.timed import timed_store
from twisted_spark.udp.port import build_gen3_protocol
from twisted_spark.udp.protocol import Gen3DeviceProtocol
from twisted_spark.udp.sessions import Gen3SessionFactory
from twisted_spark.webhooks.dispatcher import WebhookDispatcher
from twisted_spark.webhooks.policy import NetworkPolicy
from twisted_spark.webhooks.sender import HttpSender


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
    webhooks: WebhookDispatcher
    #: The checks of ``/readyz`` (the service adds ``ports`` and ``draining``).
    readiness: Readiness
    #: The UDP device port's protocol for Gen3 devices, if a Gen3 key was given.
    gen3: Gen3DeviceProtocol | None = None
    #: The :class:`~twisted_spark.cluster.node.Cluster` with ``--redis``
    #: (:meth:`start` joins it), else None.
    cluster: Any = None

    @defer.inlineCallbacks
    def start(self):
        """Join the cluster (with ``--redis``), then load what must be known
        before serving (the stored webhooks).

        :rtype: Deferred[None]
        """
        if self.cluster is not None:
            yield defer.ensureDeferred(self.cluster.start())
        yield self.webhooks.start()

    @defer.inlineCallbacks
    def stop(self):
        """Shut down, in this order, once the ports no longer accept connections
        (the UDP port too: its protocol then ignores crypto and store results
        still on their way, and its DTLS sessions are deliberately left open,
        saved, so Gen3 devices resume them after a restart):

        1. end the event streams (their clients see a finished response),
           stop delivering webhooks (requests in flight are cancelled);
        2. stop following firmware transfers and hardware events;
        3. close every device connection, the ones still in their handshake
           too (a pending RSA job finds its connection closed and stops), and end
           every Gen3 CoAP session (offline; their DTLS sessions stay saved);
        4. in a cluster, leave (the devices closed in 3 get no status events
           here: another node's sweep publishes ``offline`` for those that
           did not reconnect elsewhere);
        5. close the store (queued writes are committed first);
        6. stop the executors' threads.

        :rtype: Deferred[None]
        """
        self.streams.close_all("server stopping")
        yield self.webhooks.stop()
        self.firmware.close()
        if self.cluster is not None:
            self.cluster.drain()
        self.devices.close_all("server shutting down")
        if self.gen3 is not None:
            self.gen3.sessions.close_all("server shutting down")
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
    webhook_sender=None,
) -> Cloud:
    """Build every part of a server and connect them.

    :param settings: the :class:`~twisted_spark.config.Settings`.
    :param reactor: runs the compile command (``IReactorProcess``) and is the
        clock unless ``clock`` is given.
    :param store: an open :class:`~twisted_spark.interfaces.IStore`; the parts
        share it behind a :class:`~twisted_spark.store.cache.CachingStore`
        (``Cloud.store``).
    :param server_key: the server's RSA-2048 private key.
    :param executors: the :class:`~twisted_spark.executors.Executors`.
    :param clock: ``IReactorTime`` for every timer (default: ``reactor``).
    :param random_bytes: the CSPRNG of the device handshake (tests may fix it).
    :param describe_on_connect: ask each device's Describe after its Hello.
    :param flash_options: :class:`~twisted_spark.firmware.flasher.FlashOptions`.
    :param gen3_key: the server's EC P-256 private key; given, the cloud has
        a UDP device port protocol for Gen3 devices (``Cloud.gen3``), whose
        ECDH/ECDSA runs in the ``rsa`` executor.
    :param webhook_sender: the :class:`~twisted_spark.interfaces.webhooks.IWebhookSender`
        (default: :class:`~twisted_spark.webhooks.sender.HttpSender` on ``reactor``).
    :rtype: Cloud
    """
    clock = reactor if clock is None else clock
    metrics = Metrics()
    store = cast(IStore, timed_store(store, metrics))  # what reaches the database
    readiness = Readiness(clock)
    readiness.add("store", store_check(store))
    # Every part gets the cache, so every write in this process invalidates it.
    store = cache = CachingStore(store, clock)
    metrics.counter_reading(
        "spark_store_cache_reads_total", "Token, user and device reads, by cache answer",
        lambda: {("answer", "hit"): cache.hits, ("answer", "miss"): cache.misses},
    )
    bus = EventBus()
    cluster = None
    registry: DeviceRegistry
    if settings.redis_url:
        from twisted_spark.cluster.node import Cluster

        cluster = Cluster(settings, reactor=reactor, clock=clock, bus=bus, store=store,
                          cache=cache)
        cluster.export_metrics(metrics)
        readiness.add("cluster", cluster.readiness)
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
        files=executors.files, metrics=metrics,
    )
    api_firmware: Any = firmware
    if cluster is not None:
        from twisted_spark.cluster.firmware import ClusterFirmware

        api_firmware = ClusterFirmware(firmware, registry, cluster.calls, store)
    streams = StreamRegistry.from_settings(bus, clock, settings)
    if webhook_sender is None:
        policy = NetworkPolicy(settings.webhook_allow, settings.webhook_deny)
        webhook_sender = HttpSender(reactor, policy, settings.webhook_timeout)
    health = None
    if cluster is not None:
        from twisted_spark.cluster.hook_health import RedisHealth

        health = RedisHealth(cluster.link, cluster.node_id, clock, settings.webhook_max_errors,
                             settings.webhook_sleep)
        cluster.listen(health.channel, health.received)
    webhooks = WebhookDispatcher(
        bus, store, webhook_sender, clock, max_errors=settings.webhook_max_errors,
        sleep=settings.webhook_sleep, concurrency=settings.webhook_concurrency,
        health=health, metrics=metrics,
    )
    api_webhooks: Any = webhooks
    if cluster is not None:
        from twisted_spark.cluster.hook_relay import HookRelay

        api_webhooks = HookRelay(webhooks, cluster.link, cluster.node_id)
        cluster.listen(api_webhooks.channel, api_webhooks.received)
    api = SparkAPI(
        store, registry, settings, clock=clock, bus=bus, firmware=api_firmware,
        passwords=executors.passwords, metrics=metrics, streams=streams, webhooks=api_webhooks,
        readiness=readiness,
    )
    if cluster is not None:
        from twisted_spark.api.shared_throttle import SharedLoginThrottle

        api.throttle = SharedLoginThrottle(cluster.link, cluster.node_id, clock,
                                           settings.login_failures_per_minute)
    gen3 = None
    if gen3_key is not None:
        gen3 = build_gen3_protocol(
            gen3_key, store, clock=clock, executor=executors.rsa,
            accept_unknown_devices=settings.accept_unknown_devices, metrics=metrics,
            sessions=Gen3SessionFactory(
                store, registry, bus, settings, clock=clock, random_bytes=random_bytes,
            ),
        )
    return Cloud(
        settings=settings, clock=clock, executors=executors, store=store, metrics=metrics,
        bus=bus, registry=registry, router=router, devices=devices, firmware=firmware,
        streams=streams, api=api, site=api.site(), webhooks=webhooks, readiness=readiness,
        gen3=gen3, cluster=cluster,
    )
