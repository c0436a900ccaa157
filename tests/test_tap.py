"""Options parsing, plugin discovery and makeService wiring."""

from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.web.server import Site

from twisted_spark.config import Settings
from twisted_spark.executors import Executors
from twisted_spark.store.memory import MemoryStore
from twisted_spark.tap import Options, makeService

DEFAULT_OPTIONS = {
    "data-dir": "spark-data",
    "api": "tcp:8080",
    "device": "tcp:5683",
    "udp-device": "5684",
    "database": "sqlite:",
    "handshake-timeout": 30.0,
    "device-idle-timeout": 30.0,
    "device-ping-interval": 20.0,
    "udp-device-idle-timeout": 90.0,
    "max-frame-size": 4096,
    "rsa-threads": 2,
    "max-pending-handshakes": 200,
    "device-publish-rate": 0.0,
    "request-timeout": 30.0,
    "request-head-timeout": 30.0,
    "api-idle-timeout": 60.0,
    "max-body-size": 1048576,
    "max-firmware-size": 4194304,
    "max-function-argument": None,
    "max-event-data": 255,
    "token-lifetime": 7776000,
    "allowed-clients": None,
    "login-failures-per-minute": 10,
    "cors-origin": "*",
    "sse-queue-size": 1000,
    "webhook-timeout": 20.0,
    "webhook-max-errors": 10,
    "webhook-sleep": 60.0,
    "webhook-concurrency": 64,
    "webhook-max-per-user": 20,
    "webhook-allow": None,
    "webhook-deny": None,
    "compile-command": None,
    "compile-timeout": 300.0,
    "metrics-allow": None,
    "drain-timeout": 30.0,
    "log-format": "text",
    "firmware-dir": None,
    "redis": None,
    "redis-namespace": "spark",
    "node-id": None,
    "presence-ttl": 30.0,
    "accept-unknown-devices": False,
    "allow-signup": False,
    "no-metrics": False,
    "no-console": False,
}


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults_whole_dict():
    options = parse()
    assert {key: options[key] for key in DEFAULT_OPTIONS} == DEFAULT_OPTIONS
    assert set(options.keys()) == set(DEFAULT_OPTIONS)
    assert options.settings == Settings()


def test_every_option_reaches_settings():
    options = parse(
        "--data-dir", "/tmp/x", "--api", "ssl:8443:privateKey=k.pem", "--device", "tcp:15683",
        "--udp-device", "[::1]:15684", "--database", "postgres://spark@db.example:5433/spark",
        "--handshake-timeout", "5", "--device-idle-timeout", "12.5",
        "--device-ping-interval", "6", "--max-frame-size", "2048", "--rsa-threads", "4",
        "--max-pending-handshakes", "50",
        "--device-publish-rate", "1", "--request-timeout", "3", "--max-body-size", "100",
        "--request-head-timeout", "4", "--api-idle-timeout", "7",
        "--max-firmware-size", "200", "--max-function-argument", "622",
        "--max-event-data", "622", "--token-lifetime", "60", "--allowed-clients", "spark, cli",
        "--login-failures-per-minute", "0", "--cors-origin", "https://example.org",
        "--sse-queue-size", "10", "--compile-command", "make -C {src} OUT={out}",
        "--compile-timeout", "9", "--metrics-allow", "10.1.0.0/16, ::1",
        "--drain-timeout", "0", "--log-format", "json", "--accept-unknown-devices",
        "--allow-signup", "--no-metrics", "--no-console",
    )
    assert options.settings == Settings(
        data_dir=Path("/tmp/x"), api_endpoint="ssl:8443:privateKey=k.pem",
        device_endpoint="tcp:15683", udp_device="[::1]:15684",
        database="postgres://spark@db.example:5433/spark", handshake_timeout=5.0,
        device_idle_timeout=12.5,
        device_ping_interval=6.0, max_frame_size=2048, rsa_threads=4,
        max_pending_handshakes=50,
        device_publish_rate=1.0, request_timeout=3.0, max_body_size=100,
        request_head_timeout=4.0, api_idle_timeout=7.0,
        max_firmware_size=200, max_function_argument=622, max_event_data=622,
        token_lifetime=60, allowed_clients=("spark", "cli"), login_failures_per_minute=0,
        cors_origin="https://example.org", sse_queue_size=10,
        compile_command="make -C {src} OUT={out}", compile_timeout=9.0,
        metrics_allow=("10.1.0.0/16", "::1/128"), drain_timeout=0.0, log_format="json",
        accept_unknown_devices=True, allow_signup=True, metrics=False,
        console=False,
    )


@pytest.mark.parametrize("argv", [
    ["--request-timeout", "0"],
    ["--request-timeout", "soon"],
    ["--rsa-threads", "-1"],
    ["--max-body-size", "1.5"],
    ["--login-failures-per-minute", "-3"],
    ["--no-such-option"],
    ["--udp-device", "udp:5684"],
    ["--udp-device", "::1:5684"],
    ["--udp-device", "localhost:5684"],
    ["--metrics-allow", "10.0.0.0/33"],
    ["--metrics-allow", "everyone"],
    ["--drain-timeout", "-1"],
    ["--log-format", "xml"],
    ["--database", "mysql://root@localhost/spark"],
    ["--database", "postgresql://localhost:port/spark"],
    ["--database", "postgresql://localhost:5432"],
    ["--database", "sqlite:/tmp/other.sqlite"],
])
def test_bad_values_are_usage_errors(argv):
    with pytest.raises(usage.UsageError):
        parse(*argv)


def test_a_bad_database_url_says_what_is_accepted_and_hides_the_password():
    with pytest.raises(usage.UsageError) as info:
        parse("--database", "mysql://root:hunter2@localhost/spark")
    message = str(info.value)
    assert "hunter2" not in message and "root:***@localhost" in message
    assert "'sqlite:'" in message and "postgresql://USER@HOST:PORT/DBNAME" in message


def test_plugin_is_discovered():
    makers = [maker for maker in getPlugins(IServiceMaker) if maker.tapname == "spark"]
    assert len(makers) == 1
    assert makers[0].options is Options
    assert makers[0].makeService is makeService


class UdpMemoryReactor(MemoryReactorClock):
    """MemoryReactorClock does not listen on UDP; this one records it."""

    def __init__(self):
        super().__init__()
        self.udpServers = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udpServers.append((port, protocol, interface))
        return _FakeUdpPort(port, interface)


class _FakeUdpPort:
    def __init__(self, port, interface):
        self.port, self.interface = port, interface

    def getHost(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", self.interface or "0.0.0.0", self.port)

    def stopListening(self):
        return None


def test_make_service_listens_on_both_endpoints(data_dir):
    reactor = UdpMemoryReactor()
    store = MemoryStore()
    options = parse("--data-dir", str(data_dir), "--api", "tcp:18080",
                    "--device", "tcp:15683:interface=127.0.0.1",
                    "--request-head-timeout", "7", "--api-idle-timeout", "11")
    service = makeService(
        options, reactor=reactor,
        open_store=lambda settings, reactor, executor: defer.succeed(store),
        executors=Executors.synchronous())
    assert isinstance(service, MultiService)
    service.startService()
    assert service.ready.called
    ports = {(port, interface) for port, _factory, _backlog, interface in reactor.tcpServers}
    assert ports == {(15683, "127.0.0.1"), (18080, "")}
    device_factory = next(f for p, f, _, _ in reactor.tcpServers if p == 15683)
    api_factory = next(f for p, f, _, _ in reactor.tcpServers if p == 18080)
    assert type(device_factory).__name__ == "DeviceServerFactory"
    assert isinstance(api_factory, Site)
    assert (api_factory.head_timeout, api_factory.timeOut) == (7.0, 11.0)
    assert service.store is store
    assert (data_dir / "server_key.pub.der").exists()
    [(udp_port, protocol, interface)] = reactor.udpServers
    assert (udp_port, interface) == (5684, "")  # Gen3 devices, on by default
    assert type(protocol).__name__ == "Gen3DeviceProtocol"
    assert (data_dir / "server_key_ec.pem").exists()
    service.stopService()


def test_make_service_reports_failed_start(data_dir):
    reactor = MemoryReactorClock()
    options = parse("--data-dir", str(data_dir))

    def broken_store(settings, reactor, executor):
        return defer.fail(RuntimeError("database is broken"))

    service = makeService(options, reactor=reactor, open_store=broken_store,
                          executors=Executors.synchronous())
    service.startService()
    failures = []
    service.ready.addErrback(failures.append)
    assert failures and failures[0].check(RuntimeError)
    assert reactor.tcpServers == []


def test_expired_tokens_are_swept_every_hour(data_dir):
    from twisted_spark.models import AccessToken, User
    from twisted_spark.service import TOKEN_SWEEP_INTERVAL

    reactor = UdpMemoryReactor()
    store = MemoryStore()
    store.add_user(User("alice", "hash"))
    store.add_token(AccessToken("a" * 40, "alice", "spark", created_at=0, expires_at=10))
    store.add_token(AccessToken("b" * 40, "alice", "spark", created_at=0,
                                expires_at=TOKEN_SWEEP_INTERVAL))
    store.add_token(AccessToken("c" * 40, "alice", "spark", created_at=0, expires_at=None))
    reactor.advance(20)
    service = makeService(
        parse("--data-dir", str(data_dir)), reactor=reactor,
        open_store=lambda settings, reactor, executor: defer.succeed(store),
        executors=Executors.synchronous())
    service.startService()

    def remaining():
        tokens = []
        store.list_tokens("alice").addCallback(tokens.extend)
        return sorted(token.token[0] for token in tokens)

    assert remaining() == ["b", "c"]  # swept at start
    reactor.advance(TOKEN_SWEEP_INTERVAL)
    assert remaining() == ["c"]
    service.stopService()


def test_stopping_the_service_closes_connections_still_in_their_handshake(data_dir):
    from twisted.internet.testing import StringTransportWithDisconnection
    from twisted.test.iosim import FakeAddress

    from twisted_spark.device.protocol import CLOSED

    reactor = UdpMemoryReactor()
    service = makeService(
        parse("--data-dir", str(data_dir)), reactor=reactor,
        open_store=lambda settings, reactor, executor: defer.succeed(MemoryStore()),
        executors=Executors.synchronous())
    service.startService()
    device_factory = next(f for p, f, _, _ in reactor.tcpServers if p == 5683)
    proto = device_factory.buildProtocol(FakeAddress())
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    proto.makeConnection(transport)
    assert len(transport.value()) == 40 and proto.state != CLOSED  # nonce sent, waiting
    done = service.stopService()
    assert done.called
    assert proto.state == CLOSED and not transport.connected
    assert not device_factory.connections


def test_cluster_options():
    options = parse("--redis", "redis://10.0.0.5:6380/1", "--node-id", "n1",
                    "--presence-ttl", "12", "--firmware-dir", "/srv/fw")
    settings = options.settings
    assert (settings.redis_url, settings.node_id, settings.presence_ttl) == (
        "redis://10.0.0.5:6380/1", "n1", 12.0)
    assert str(settings.firmware_dir) == "/srv/fw"
    with pytest.raises(usage.UsageError):
        parse("--redis", "10.0.0.5:6379")


def test_webhook_networks_are_checked_when_parsed():
    options = parse("--webhook-allow", "loopback, 192.168.1.10/32", "--webhook-deny", "private")
    assert options.settings.webhook_allow == ("loopback", "192.168.1.10/32")
    assert options.settings.webhook_deny == ("private",)
    with pytest.raises(usage.UsageError, match="'intranet' is neither"):
        parse("--webhook-deny", "intranet")
