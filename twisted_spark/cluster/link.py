# -*- test-case-name: tests.test_cluster_e2e -*-
"""The node's two Redis connections: commands, and the channels it listens to.

txredisapi reconnects both on its own (backing off up to 10 s).  The command
connection is a single connection, so everything this node sends reaches
Redis in the order it was sent: the event relay's per-publisher order rests
on that.  The subscriber connection subscribes again to every channel each
time it (re)connects.  Every key and channel name is under the cluster's
namespace (``--redis-namespace``), so several clusters, or tests, can share
one Redis server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger

from twisted_spark.cluster.address import RedisAddress

log = Logger()

#: Seconds :meth:`RedisLink.connect` waits for Redis before the node gives up.
CONNECT_TIMEOUT = 10.0


class _Subscriber(txredisapi.SubscriberProtocol):
    """Subscribes to its factory's channels on every (re)connection."""

    def connectionMade(self):
        d = super().connectionMade()
        d.addCallback(lambda _: self.subscribe(list(self.factory.channels)))
        d.addCallback(lambda _: self.factory.link._subscribed(self))
        d.addErrback(lambda f: log.failure("Subscribing to the cluster's channels failed", f))
        return d

    def messageReceived(self, pattern, channel, message):
        self.factory.link._received(channel, message)

    def connectionLost(self, why):
        self.factory.link._lost(self)
        super().connectionLost(why)


class RedisLink:
    """Commands to, and channel messages from, one Redis server.

    :param address: the :class:`RedisAddress`.
    :param namespace: the prefix of every key and channel.
    :param reactor: for the connect timeout.
    """

    def __init__(self, address: RedisAddress, namespace: str, reactor) -> None:
        self.address = address
        self.namespace = namespace
        self.reactor = reactor
        #: The txredisapi command connection (after :meth:`connect`).
        self.redis: Any = None
        self._factory = None
        self._handlers: dict[str, Callable[[str], None]] = {}
        self._subscriber = None
        self._first: defer.Deferred | None = None
        #: Called after the subscriber reconnected (messages in between are lost).
        self.on_reconnect: Callable[[], None] | None = None

    def key(self, *parts: str) -> str:
        """The namespaced name ``namespace:part:part``."""
        return ":".join((self.namespace, *parts))

    @property
    def connected(self) -> bool:
        """Both connections are up (the subscriber subscribed)."""
        commands = getattr(self.redis, "_factory", None)
        return self._subscriber is not None and bool(commands is not None and commands.size)

    def connect(self, handlers: dict[str, Callable[[str], None]]) -> defer.Deferred:
        """Connect, subscribe ``channel -> handler(message)``; fires once both are up.

        Fails with ConnectionError after :data:`CONNECT_TIMEOUT` seconds.
        """
        return defer.ensureDeferred(self._connect(handlers))

    async def _connect(self, handlers):
        address = self.address
        self._handlers = dict(handlers)
        self._first = defer.Deferred()
        self.redis = txredisapi.lazyConnection(
            address.host, address.port, dbid=address.db, reconnect=True,
            password=address.password, username=address.username,
        )
        factory = txredisapi.SubscriberFactory()
        factory.protocol = _Subscriber
        factory.password, factory.username = address.password, address.username
        factory.channels = list(self._handlers)
        factory.link = self
        factory.startConnecting(HostnameEndpoint(self.reactor, address.host, address.port))
        self._factory = factory
        both = defer.gatherResults([self.redis._connected, self._first], consumeErrors=True)
        both.addTimeout(CONNECT_TIMEOUT, self.reactor)
        try:
            await both
        except defer.TimeoutError:
            await self.close()
            raise ConnectionError(
                f"Redis at {address} did not answer within {CONNECT_TIMEOUT:g} s: start it, "
                "or check --redis"
            ) from None

    def publish(self, channel: str, message: str) -> defer.Deferred:
        """PUBLISH ``message`` on ``channel`` -> Deferred[number of receivers]."""
        return self.redis.publish(channel, message)

    def _subscribed(self, protocol) -> None:
        self._subscriber = protocol
        if self._first is not None and not self._first.called:
            self._first.callback(None)
        else:
            log.info("Reconnected to Redis at {address}", address=str(self.address))
            if self.on_reconnect is not None:
                self.on_reconnect()

    def _lost(self, protocol) -> None:
        if self._subscriber is protocol:
            self._subscriber = None
            if self._factory is not None and not self._factory.stopped:
                log.warn("Lost the Redis connection to {address}; reconnecting",
                         address=str(self.address))

    def _received(self, channel: str, message: str) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return
        try:
            handler(message)
        except Exception:
            log.failure("Handling a message on {channel} failed", channel=channel)

    async def close(self) -> None:
        """Disconnect both connections (no reconnecting)."""
        factory, self._factory = self._factory, None
        redis, self.redis = self.redis, None
        waits: list[defer.Deferred] = []
        if factory is not None:
            waits.append(factory.disconnect())
        if redis is not None:
            waits.append(redis.disconnect())
        await defer.gatherResults(waits, consumeErrors=True)
