# -*- test-case-name: tests.test_tap,tests.test_e2e_service -*-
"""SparkService: prepares what the server needs, builds it, and binds its ports.

Startup is asynchronous (the first start generates the server key off the
reactor; the database opens in its thread), so the service first prepares
the data directory, the key and the store, then calls the composition root
(:func:`twisted_spark.cloud.build_cloud`) and only then adds one
:class:`~twisted.application.internet.StreamServerEndpointService` per port.
The UDP port for Gen3 devices (``--udp-device``, on by default) gets the
server's EC key first and is bound the same way.  ``ready`` fires once all
listen, with the service, whose ``api_port``, ``device_port`` and
``udp_port`` (None when off) are then the listening ports (tests and
embedders use them to find ephemeral ports).
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.config import Settings
from twisted_spark.crypto import keys
from twisted_spark.datadir import (
    DataDirBusy,
    hold_data_dir,
    load_or_create_server_ec_key,
    load_or_create_server_key,
    prepare_data_dir,
)
from twisted_spark.drain import Drain
from twisted_spark.executors import Executors
from twisted_spark.health import NotReady
from twisted_spark.store.url import POSTGRESQL, parse_database_url
from twisted_spark.udp.address import parse_udp_device

log = Logger()

#: Seconds between sweeps of expired access tokens from the database.
TOKEN_SWEEP_INTERVAL = 3600.0


def _open_configured_store(settings: Settings, reactor, executor):
    """The store ``--database`` names: SQLite in the data dir, or PostgreSQL."""
    database = parse_database_url(settings.database)
    if database.kind == POSTGRESQL:
        from twisted_spark.store.postgres import PostgresStore

        return PostgresStore.open(database.url, reactor=reactor, executor=executor)
    from twisted_spark.store.sqlite import SQLiteStore

    return SQLiteStore.open(settings.database_path, reactor=reactor, executor=executor)


@implementer(IStreamServerEndpoint)
class _Announcing:
    """An endpoint that also reports, through ``listening``, how its ``listen`` went."""

    def __init__(self, endpoint) -> None:
        self.endpoint = endpoint
        self.listening: defer.Deferred = defer.Deferred()

    def listen(self, factory) -> defer.Deferred:
        d = self.endpoint.listen(factory)

        def listened(port):
            self.listening.callback(port)
            return port

        def failed(failure):
            self.listening.errback(failure)
            return failure

        return d.addCallbacks(listened, failed)


class _DatagramPortService(Service):
    """Listens on a :class:`~twisted_spark.udp.address.UdpDeviceAddress` while running."""

    def __init__(self, reactor, address, protocol) -> None:
        self.reactor = reactor
        self.address = address
        self.protocol = protocol
        self.port = None

    def startService(self) -> None:
        super().startService()
        self.port = self.address.listen(self.reactor, self.protocol)

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return None if port is None else port.stopListening()


class SparkService(MultiService):
    """The whole server as one service: start it, and devices and clients can connect.

    :param open_store: ``(settings, reactor, executor) -> Deferred[IStore]``;
        by default the store ``settings.database`` names, given
        ``executors.database`` for PostgreSQL and ``executors.store`` for SQLite.
    :param executors: the :class:`~twisted_spark.executors.Executors`; thread
        pools sized from settings by default (tests pass synchronous ones).
    :param settle_heap: once started, tune the process's garbage collector
        for a long-running server (:func:`twisted_spark.heap.settle`): for
        a process that is this server's own, not for an embedding one.

    :ivar cloud: the :class:`~twisted_spark.cloud.Cloud` once started.
    """

    def __init__(self, settings: Settings, reactor, open_store=None, executors=None,
                 settle_heap: bool = False) -> None:
        super().__init__()
        self._settle_heap = settle_heap
        self.settings = settings
        self.reactor = reactor
        self._open_store = open_store or _open_configured_store
        self.executors = executors or Executors.threaded(reactor, settings.rsa_threads)
        self.store = None
        self.cloud = None
        self.server_key = None
        self.data_dir = None
        self.device_port = None
        self.api_port = None
        self.udp_port = None
        self.udp_protocol = None
        self.ready: defer.Deferred = defer.Deferred()
        self._starting: defer.Deferred | None = None
        self._data_dir_lock = None
        self._listening = False
        self.drain: Drain | None = None

    def startService(self) -> None:
        super().startService()
        self._starting = defer.ensureDeferred(self._start())
        self._starting.addCallbacks(self._started, self._failed)

    async def _start(self):
        settings, reactor = self.settings, self.reactor
        self.executors.start()
        self.data_dir = prepare_data_dir(settings.data_dir)
        try:
            self._data_dir_lock = hold_data_dir(self.data_dir)
        except DataDirBusy as error:
            raise RuntimeError(
                f"data directory {self.data_dir} is being restored (the restore holds "
                f"{error}); start the server when the restore has finished") from None
        self.server_key = await self.executors.files.run(load_or_create_server_key, self.data_dir)
        database = parse_database_url(settings.database)
        executor = (self.executors.database if database.kind == POSTGRESQL
                    else self.executors.store)
        self.store = await self._open_store(settings, reactor, executor)
        udp_address = parse_udp_device(settings.udp_device)
        gen3_key = None
        if udp_address is not None:
            gen3_key = await self.executors.files.run(load_or_create_server_ec_key, self.data_dir)

        from twisted_spark.cloud import build_cloud

        self.cloud = cloud = build_cloud(
            settings, reactor=reactor, store=self.store, server_key=self.server_key,
            executors=self.executors, gen3_key=gen3_key,
        )
        await cloud.start()
        sweeper = TimerService(TOKEN_SWEEP_INTERVAL, self._sweep_expired_tokens)
        sweeper.clock = reactor
        sweeper.setName("token-sweeper")
        sweeper.setServiceParent(self)
        device_port = self._serve("device-port", settings.device_endpoint, cloud.devices)
        api_port = self._serve("api-port", settings.api_endpoint, cloud.site)
        if udp_address is not None and cloud.gen3 is not None:
            self.udp_protocol = cloud.gen3
            self.udp_port = self._serve_udp(udp_address, cloud.gen3)
        self.device_port = await device_port
        self.api_port = await api_port
        self.drain = Drain(cloud, reactor, settings.drain_timeout)
        cloud.readiness.add("ports", self._ports_check)
        cloud.readiness.add("draining", self.drain.check)
        self._listening = True
        log.info(
            "twisted-spark ready: data dir {data_dir}; database {database}; API on {api} "
            "({api_host}); devices on {device} ({device_host}); server key fingerprint "
            "{fingerprint}",
            data_dir=str(self.data_dir),
            database=database.redacted,
            api=settings.api_endpoint,
            api_host=_describe_port(self.api_port),
            device=settings.device_endpoint,
            device_host=_describe_port(self.device_port),
            fingerprint=keys.fingerprint(self.server_key.publickey()),
        )
        return self

    def _serve(self, name, description, factory) -> defer.Deferred:
        """Listen on ``description`` as a child service; fires with the port."""
        endpoint = _Announcing(endpoints.serverFromString(self.reactor, description))
        child = StreamServerEndpointService(endpoint, factory)
        child.setName(name)
        child.setServiceParent(self)
        return endpoint.listening

    def _serve_udp(self, address, protocol):
        """Listen for Gen3 devices on UDP ``address`` as a child service; the port.

        Stopping it stops the protocol, which then ignores crypto and store
        results still on their way; DTLS sessions stay resumable.
        """
        child = _DatagramPortService(self.reactor, address, protocol)
        child.setName("udp-device-port")
        child.setServiceParent(self)  # listens now: this service is running
        port = child.port
        log.info("Gen3 devices on UDP {address} ({host})",
                 address=str(address), host=_describe_port(port))
        return port

    def _stop_accepting(self) -> defer.Deferred:
        """Stop the child services: the ports close, the token sweeper stops."""
        self._listening = False
        return defer.maybeDeferred(MultiService.stopService, self)

    def _sweep_expired_tokens(self):
        """Delete expired tokens so the table does not grow forever (errors
        logged); in a cluster, one node per interval does it."""
        cluster = self.cloud.cluster if self.cloud is not None else None
        if cluster is None:
            return self._delete_expired_tokens()
        d = cluster.once("token-sweep", TOKEN_SWEEP_INTERVAL * 0.9)
        d.addCallback(lambda mine: self._delete_expired_tokens() if mine else None)
        d.addErrback(lambda f: log.failure("Could not take the token sweep lock", f))
        return d

    def _delete_expired_tokens(self):
        d = self.store.delete_expired(self.reactor.seconds())
        d.addCallback(lambda count: count and log.info(
            "Deleted {count} expired access token(s)", count=count))
        d.addErrback(lambda f: log.failure("Could not delete expired access tokens", f))
        return d

    def _started(self, _):
        if self._settle_heap:
            from twisted_spark import heap

            heap.settle()
        self.ready.callback(self)

    def _failed(self, failure):
        log.failure("twisted-spark could not start: {message}", failure,
                    message=failure.getErrorMessage())
        self.ready.errback(failure)
        stop = getattr(self.reactor, "stop", None)
        if stop is not None and getattr(self.reactor, "running", False):
            stop()

    def _ports_check(self) -> str:
        if not self._listening:
            raise NotReady("the ports are closed")
        ports = [("api", self.api_port), ("devices", self.device_port), ("udp", self.udp_port)]
        return ", ".join(f"{name} {_describe_port(port)}" for name, port in ports if port)

    @defer.inlineCallbacks
    def stopService(self):
        """Drain (:mod:`twisted_spark.drain`): stop accepting (the port services),
        let work in flight finish, then shut the parts down in order."""
        if self._starting is not None and not self._starting.called:
            yield self.ready.addErrback(lambda _: None)
        if self.drain is not None:
            yield defer.ensureDeferred(self.drain.run(self._stop_accepting))
        else:
            yield self._stop_accepting()
        if self.cloud is not None:
            yield self.cloud.stop()
        else:
            if self.store is not None:
                yield self.store.close()
            self.executors.stop()
        lock, self._data_dir_lock = self._data_dir_lock, None
        if lock is not None:
            lock.close()  # a restore may run now


def _describe_port(port) -> str:
    """``host:port`` of a listening port."""
    host = port.getHost()
    address = getattr(host, "host", None)
    number = getattr(host, "port", None)
    return f"{address}:{number}" if number is not None else str(host)
