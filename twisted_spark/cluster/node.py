# -*- test-case-name: tests.test_cluster_e2e -*-
"""One node of a cluster: its Redis link, relay, presence, registry and call router.

:func:`~twisted_spark.cloud.build_cloud` makes a :class:`Cluster` when
``--redis`` is given and uses its registry; nothing of this package is
loaded otherwise.  :meth:`Cluster.start` connects (the service awaits it
before opening the ports) and then, every third of the presence TTL,
renews this node's heartbeat and device keys and looks for dead nodes: the
devices of a node whose heartbeat expired vanish from every node's table at
once, and the one node that wins ``sweep:<node>`` publishes their
``spark/status offline``.  A node that stops does the same to itself: it
closes its device connections without status events and its heartbeat ends
a third of the TTL later, so devices that reconnect elsewhere meanwhile
never show offline.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from twisted.internet import defer, task
from twisted.logger import Logger

from twisted_spark.cluster.cache import CacheRelay
from twisted_spark.cluster.calls import MARGIN, CallRouter
from twisted_spark.cluster.link import RedisAddress, RedisLink
from twisted_spark.cluster.presence import Presence
from twisted_spark.cluster.registry import ClusterRegistry
from twisted_spark.cluster.relay import EventRelay
from twisted_spark.models import Event

log = Logger()


def default_node_id() -> str:
    """``<host name>-<6 random hex digits>``: unique for every start of a node."""
    return f"{socket.gethostname()}-{os.urandom(3).hex()}"


class Cluster:
    """The cluster side of one node (see the module docstring).

    :param settings: :class:`~twisted_spark.config.Settings` (``redis_url``,
        ``redis_namespace``, ``node_id``, ``presence_ttl``, ``request_timeout``).
    :param reactor: connects to Redis.
    :param clock: ``IReactorTime`` for timers and timestamps.
    :param bus: the local event bus.
    :param store: the (shared) store.
    :param cache: the node's :class:`~twisted_spark.interfaces.IStoreCache`,
        whose invalidations other nodes then hear about.
    """

    def __init__(self, settings, *, reactor, clock, bus, store, cache=None) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.node_id = settings.node_id or default_node_id()
        self.link = RedisLink(RedisAddress.parse(settings.redis_url), settings.redis_namespace,
                              reactor)
        self.presence = Presence(self.link, self.node_id, settings.presence_ttl)
        self.relay = EventRelay(bus, self.link, self.node_id)
        self.registry = ClusterRegistry(clock, bus=bus, store=store, presence=self.presence,
                                        relay=self.relay)
        self.calls = CallRouter(self.link, self.node_id, self.registry, clock,
                                settings.request_timeout + MARGIN)
        self.registry.router = self.calls
        self.cache = CacheRelay(cache, self.link, self.node_id) if cache is not None else None
        self.interval = settings.presence_ttl / 3
        self.last_tick: float | None = None
        self.swept: list[str] = []
        self._loop: task.LoopingCall | None = None
        #: dead node -> its sweep, while it runs
        self._sweeps: dict[str, defer.Deferred] = {}
        self._listeners: dict[str, Callable[[str], None]] = {}

    def listen(self, channel: str, handler: Callable[[str], None]) -> None:
        """Also follow ``channel`` (before :meth:`start`): ``handler(message)``."""
        self._listeners[channel] = handler

    def export_metrics(self, metrics) -> None:
        """Gauges of this node's cluster side, on the node's ``/metrics``."""
        relay, registry, calls = self.relay.counts, self.registry, self.calls
        metrics.gauge("spark_cluster_events_sent", "Events sent to the other nodes",
                      lambda: relay.sent)
        metrics.gauge("spark_cluster_events_received", "Events received from other nodes",
                      lambda: relay.received)
        metrics.gauge("spark_cluster_remote_devices", "Devices online on other nodes",
                      lambda: len(registry.remote))
        metrics.gauge("spark_cluster_calls_served", "Calls run here for other nodes",
                      lambda: calls.served)
        metrics.gauge("spark_cluster_healthy", "1 when connected and renewing presence",
                      lambda: int(self.healthy()))

    async def start(self) -> None:
        """Connect, load the other nodes' devices, join, and keep presence fresh."""
        channels: dict[str, Callable[[str], None]] = {
            self.relay.channel: self.relay.received,
            self.presence.channel: self.registry.presence_message,
            self.calls.inbox: self.calls.received,
        }
        if self.cache is not None:
            channels[self.cache.channel] = self.cache.received
        channels.update(self._listeners)
        await self.link.connect(channels)
        self.relay.start()
        for event in await self.presence.release_all(self.node_id, self._offline_event):
            self.relay.publish_locally(event)  # left over from an earlier run with this id
        self.registry.load(await self.presence.snapshot())
        self.link.on_reconnect = self._resync
        await self.tick()
        self._loop = task.LoopingCall(self._tick_logged)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)
        log.info("Node {node} joined the cluster at {redis} (namespace {namespace}); "
                 "{count} device(s) online on other nodes", node=self.node_id,
                 redis=str(self.link.address), namespace=self.link.namespace,
                 count=len(self.registry.remote))

    def readiness(self) -> str:
        """The ``/readyz`` check: passes while :meth:`healthy`."""
        from twisted_spark.health import NotReady

        if not self.healthy():
            why = "no Redis connection" if not self.link.connected else "presence not renewed"
            raise NotReady(f"{why} (node {self.node_id})")
        return f"node {self.node_id}, {len(self.registry.remote)} devices on other nodes"

    def _resync(self) -> None:
        """Presence messages sent while the subscriber was away are lost: reload."""
        d = defer.ensureDeferred(self.presence.snapshot())
        d.addCallback(self.registry.load, replace=True)
        d.addErrback(lambda f: log.failure("Reloading the cluster's presence failed", f))

    def healthy(self) -> bool:
        """Connected to Redis, and presence renewed within the last two intervals."""
        return (self.link.connected and self.last_tick is not None
                and self.clock.seconds() - self.last_tick <= 2 * self.interval)

    def _tick_logged(self):
        d = defer.ensureDeferred(self.tick())
        d.addErrback(lambda f: log.failure("Renewing presence in Redis failed; retrying in "
                                           "{seconds:g} s", f, seconds=self.interval))
        return d

    async def tick(self) -> None:
        """Renew this node's keys, and sweep dead nodes."""
        alive = await self.presence.heartbeat()
        if not alive and self.last_tick is not None:
            log.warn("Node {node} was taken for dead (presence not renewed for {ttl:g} s); "
                     "claiming its devices again", node=self.node_id,
                     ttl=self.settings.presence_ttl)
        lost, missing = await self.presence.refresh(list(self.registry._sessions))
        for device_id in lost:
            entry = self.registry.remote.get(device_id)
            self.registry.evict(device_id, entry.node if entry else "another node")
        for device_id in missing:
            self.registry.reclaim(device_id, online=not alive)
        self.last_tick = self.clock.seconds()
        for node in await self.presence.dead_nodes():
            if node in self._sweeps:
                continue
            owners = self.registry.node_lost(node)
            sweep = self._sweeps[node] = defer.ensureDeferred(self._sweep(node, owners))
            if sweep.called:  # over before it was recorded
                del self._sweeps[node]

    async def _sweep(self, node: str, owners: dict) -> None:
        """Publish ``offline`` for dead ``node``'s devices, if this node wins
        the lock.  It runs beside the renewals, never delaying this node's
        own heartbeat however many devices it has to go through."""

        async def offline_event(device_id: str) -> Event:
            if device_id in owners:
                owner = owners[device_id]
            else:
                record = await self.store.get_device(device_id)
                owner = record.owner if record is not None else None
            return Event(name="spark/status", data="offline", ttl=60,
                         published_at=self.clock.seconds(), coreid=device_id, public=False,
                         owner=owner)

        try:
            released = await self.presence.sweep(node, offline_event)
        except Exception:
            log.failure("Sweeping dead node {node} failed; the next renewal retries", node=node)
            return
        finally:
            self._sweeps.pop(node, None)
        if released is None:
            return
        for event in released:
            self.relay.publish_locally(event)
        log.info("Node {node} stopped renewing its presence; {count} of its device(s) "
                 "marked offline ({known} were known here)", node=node,
                 count=len(released), known=len(owners))
        self.swept.append(node)

    async def _offline_event(self, device_id: str) -> Event:
        record = await self.store.get_device(device_id)
        return Event(name="spark/status", data="offline", ttl=60,
                     published_at=self.clock.seconds(), coreid=device_id, public=False,
                     owner=record.owner if record is not None else None)

    def once(self, name: str, seconds: float) -> defer.Deferred[bool]:
        """Whether this node runs the cluster-wide job ``name`` now: True for
        one node per ``seconds`` (a Redis lock nobody releases early)."""
        d = self.link.redis.set(self.link.key("once", name), self.node_id,
                                pexpire=int(seconds * 1000), only_if_not_exists=True)
        return d.addCallback(bool)

    def drain(self) -> None:
        """The node is about to close its device connections: no status events
        for them (their devices reconnect to other nodes, which take them over
        without an ``offline``; the sweep of this node covers the rest)."""
        self.registry.draining = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    async def stop(self) -> None:
        """Leave: wait for the last presence updates, end the heartbeat, disconnect."""
        self.drain()
        await defer.DeferredList(list(self._sweeps.values()), consumeErrors=True)
        await self.registry.settle()
        self.calls.close()
        self.relay.stop()
        try:
            await self.presence.leave()
        except Exception:
            log.failure("Could not remove this node's heartbeat from Redis")
        await self.link.close()
