"""SparkService: wires the store, device server, registry, bus and API together.

Startup is asynchronous (the database opens in a thread; the first start
generates the server key off the reactor), so the service starts its
listeners once everything they need exists.  ``ready`` fires then, with the
listening ports, which tests and embedders use to find ephemeral ports.
"""

from __future__ import annotations

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import defer, endpoints, threads
from twisted.logger import Logger

from twisted_spark.config import Settings
from twisted_spark.crypto import keys
from twisted_spark.datadir import load_or_create_server_key, prepare_data_dir

log = Logger()

#: Seconds between sweeps of expired access tokens from the database.
TOKEN_SWEEP_INTERVAL = 3600.0


def _open_sqlite_store(settings: Settings, reactor):
    from twisted_spark.store.sqlite import SQLiteStore

    return SQLiteStore.open(settings.database_path, reactor=reactor)


def _run_in_thread(reactor, function, *args):
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)


class SparkService(MultiService):
    """The whole server as one service: start it, and devices and clients can connect.

    :param open_store: ``(settings, reactor) -> Deferred[IStore]``; SQLite by default.
    :param run_in_thread: ``(reactor, f, *args) -> Deferred``; the reactor pool by default.
    :param rsa_pool: the thread pool for handshake RSA work; built from settings by default.
    """

    def __init__(self, settings: Settings, reactor, open_store=None, run_in_thread=None,
                 rsa_pool=None) -> None:
        super().__init__()
        self.settings = settings
        self.reactor = reactor
        self._open_store = open_store or _open_sqlite_store
        self._run_in_thread = run_in_thread or _run_in_thread
        self._rsa_pool = rsa_pool
        self.store = None
        self.registry = None
        self.router = None
        self.api = None
        self.firmware = None
        self.bus = None
        self.server_key = None
        self.data_dir = None
        self.device_port = None
        self.api_port = None
        self.udp_port = None
        self.udp_protocol = None
        self.ready: defer.Deferred = defer.Deferred()
        self._starting = None

    def startService(self) -> None:
        super().startService()
        self._starting = defer.ensureDeferred(self._start())
        self._starting.addCallbacks(self._started, self._failed)

    async def _start(self):
        settings, reactor = self.settings, self.reactor
        self.data_dir = prepare_data_dir(settings.data_dir)
        self.server_key = await self._run_in_thread(
            reactor, load_or_create_server_key, self.data_dir)
        self.store = await self._open_store(settings, reactor)
        sweeper = TimerService(TOKEN_SWEEP_INTERVAL, self._sweep_expired_tokens)
        sweeper.clock = reactor
        sweeper.setName("token-sweeper")
        sweeper.setServiceParent(self)

        from twisted_spark.api.app import SparkAPI
        from twisted_spark.device.factory import REFUSED_METRIC, DeviceServerFactory
        from twisted_spark.device.rsa_pool import RsaPool
        from twisted_spark.events.bus import EventBus
        from twisted_spark.events.device_routing import DeviceRouter
        from twisted_spark.firmware import FirmwareHook
        from twisted_spark.registry import DeviceRegistry

        self.bus = EventBus()
        self.registry = DeviceRegistry(clock=reactor, bus=self.bus, store=self.store)
        self.router = DeviceRouter(self.bus, self.registry, reactor)
        if self._rsa_pool is None:
            self._rsa_pool = RsaPool(reactor, settings.rsa_threads)
        self._rsa_pool.start()
        self.firmware = FirmwareHook(settings, self.bus, self.registry, clock=reactor,
                                     reactor=reactor)
        self.api = SparkAPI(self.store, self.registry, settings, clock=reactor, bus=self.bus,
                            firmware=self.firmware, reactor=reactor)
        metrics = self.api.metrics
        device_factory = DeviceServerFactory(
            self.server_key, self.store, self.registry, self.bus, settings,
            clock=reactor, rsa_pool=self._rsa_pool, metrics=metrics)
        metrics.describe(REFUSED_METRIC, "Device connections refused for load, by reason")
        metrics.gauge("spark_handshakes_completed", "Device handshakes completed since start",
                      lambda: device_factory.handshakes_completed)
        metrics.gauge("spark_handshakes_failed", "Device handshakes refused since start",
                      lambda: device_factory.handshakes_failed)
        site = self.api.site()

        self.device_port = await endpoints.serverFromString(
            reactor, settings.device_endpoint).listen(device_factory)
        self.udp_port = await self._listen_udp()
        self.api_port = await endpoints.serverFromString(
            reactor, settings.api_endpoint).listen(site)
        log.info(
            "twisted-spark ready: data dir {data_dir}; API on {api} ({api_host}); devices on "
            "{device} ({device_host}); server key fingerprint {fingerprint}",
            data_dir=str(self.data_dir),
            api=settings.api_endpoint,
            api_host=_describe_port(self.api_port),
            device=settings.device_endpoint,
            device_host=_describe_port(self.device_port),
            fingerprint=keys.fingerprint(self.server_key.publickey()),
        )
        return self

    async def _listen_udp(self):
        """The Gen3 (UDP/DTLS) device port, unless ``--udp-device off``."""
        from twisted_spark.datadir import load_or_create_server_ec_key
        from twisted_spark.udp.address import parse_udp_device
        from twisted_spark.udp.port import build_gen3_protocol

        address = parse_udp_device(self.settings.udp_device)
        if address is None:
            return None
        key = await self._run_in_thread(self.reactor, load_or_create_server_ec_key,
                                        self.data_dir)
        self.udp_protocol = build_gen3_protocol(
            key, self.store, clock=self.reactor, executor=self._rsa_pool,
            accept_unknown_devices=self.settings.accept_unknown_devices)
        port = address.listen(self.reactor, self.udp_protocol)
        log.info("Gen3 devices on UDP {address} ({host}); their CoAP session is a probe that "
                 "acknowledges and logs until the full session lands",
                 address=str(address), host=_describe_port(port))
        return port

    def _sweep_expired_tokens(self):
        """Delete expired tokens so the table does not grow forever (errors logged)."""
        d = self.store.delete_expired(self.reactor.seconds())
        d.addCallback(lambda count: count and log.info(
            "Deleted {count} expired access token(s)", count=count))
        d.addErrback(lambda f: log.failure("Could not delete expired access tokens", f))
        return d

    def _started(self, _):
        self.ready.callback(self)

    def _failed(self, failure):
        log.failure("twisted-spark could not start: {message}", failure,
                    message=failure.getErrorMessage())
        self.ready.errback(failure)
        stop = getattr(self.reactor, "stop", None)
        if stop is not None and getattr(self.reactor, "running", False):
            stop()

    @defer.inlineCallbacks
    def stopService(self):
        yield defer.maybeDeferred(super().stopService)
        if self._starting is not None and not self._starting.called:
            yield self.ready.addErrback(lambda _: None)
        for port in (self.api_port, self.device_port, self.udp_port):
            if port is not None:
                yield defer.maybeDeferred(port.stopListening)
        if self.api is not None:
            self.api.streams.close_all()
        if self.firmware is not None:
            self.firmware.close()
        if self.registry is not None:
            for session in list(self.registry.sessions()):
                session.disconnect("server shutting down")
        if self._rsa_pool is not None:
            self._rsa_pool.stop()
        if self.store is not None:
            yield self.store.close()


def _describe_port(port) -> str:
    host = port.getHost()
    address = getattr(host, "host", None)
    number = getattr(host, "port", None)
    return f"{address}:{number}" if number is not None else str(host)
