"""The composition root: one function builds the graph, and everything uses it."""

from __future__ import annotations

import re

import pytest_twisted
from conftest import PROJECT_ROOT
from device_fixtures import SERVER_KEY
from twisted.internet.task import Clock

from twisted_spark.cloud import build_cloud
from twisted_spark.config import Settings
from twisted_spark.executors import Executors
from twisted_spark.store import MemoryStore

#: The constructors only the composition root calls.
WIRED_BY_THE_ROOT = re.compile(
    r"\b(DeviceServerFactory|SparkAPI|DeviceRegistry|DeviceRouter|FirmwareUpdater|StreamRegistry"
    r"|build_gen3_protocol)\("
)
#: Unit tests of those classes, and their fixtures, may build one on fakes.
UNIT_TESTS = {
    "DeviceServerFactory": {"device_fixtures.py"},
    "SparkAPI": {"api_fakes.py", "test_api_site.py", "test_api_hostile.py",
                 "test_api_access_log.py", "test_api_races.py"},
    "DeviceRegistry": {"test_registry.py", "device_fixtures.py", "test_events_routing.py",
                       "test_events_devices.py", "test_interfaces.py", "test_device_channel.py",
                       "test_udp_session.py", "test_udp_transcripts.py",
                       "test_gen3_transcripts.py"},
    "DeviceRouter": {"test_events_routing.py", "test_events_devices.py", "test_interfaces.py",
                     "test_gen3_transcripts.py"},
    "FirmwareUpdater": {"test_firmware_updater.py", "test_gen3_transcripts.py"},
    "StreamRegistry": {"test_api_sse.py", "test_events_devices.py"},
    "build_gen3_protocol": {"udp_harness.py", "test_udp_transcripts.py",
                            "test_gen3_transcripts.py"},
}


def harness_sources():
    """Every test and benchmark module."""
    yield from sorted((PROJECT_ROOT / "tests").glob("*.py"))
    yield from sorted((PROJECT_ROOT / "bench").glob("*.py"))


def test_no_harness_wires_the_parts_by_hand():
    """End-to-end tests and benchmarks get their server from build_cloud."""
    by_hand = []
    for path in harness_sources():
        for match in WIRED_BY_THE_ROOT.finditer(path.read_text("utf-8")):
            if path.name not in UNIT_TESTS[match.group(1)]:
                by_hand.append(f"{path.parent.name}/{path.name}: {match.group(1)}")
    assert by_hand == []


def test_e2e_harnesses_and_benchmarks_call_the_root():
    callers = {path.name for path in harness_sources() if "build_cloud(" in path.read_text()}
    assert {"loopback.py", "bench_api.py", "bench_handshake.py", "bench_ota.py",
            "bench_hostile_http.py"} <= callers


def cloud(gen3_key=None, **settings):
    return build_cloud(Settings(**settings), reactor=Clock(), store=MemoryStore(),
                       server_key=SERVER_KEY, executors=Executors.synchronous(),
                       gen3_key=gen3_key)


def test_one_graph():
    """Each part gets the same collaborators (nothing builds a second bus or store)."""
    c = cloud()
    assert c.api.store is c.store is c.devices.store
    assert c.api.registry is c.registry is c.devices.registry is c.firmware.registry
    assert c.registry.bus is c.bus is c.devices.bus is c.api.bus is c.streams.bus
    assert c.api.firmware is c.firmware and c.api.streams is c.streams
    assert c.api.metrics is c.metrics is c.devices.metrics
    assert c.devices.rsa_pool is c.executors.rsa
    assert c.router in c.registry._observers and c.firmware in c.registry._observers
    assert c.site.resource is not None


def test_the_gen3_port_only_with_its_key_and_on_the_shared_parts():
    """Given the EC key, the UDP port's protocol uses the cloud's store, clock and crypto pool."""
    from twisted_spark.crypto.ec_keys import generate_server_ec_key

    assert cloud().gen3 is None
    c = cloud(gen3_key=generate_server_ec_key(), accept_unknown_devices=True)
    assert c.gen3 is not None
    assert c.gen3.executor is c.executors.rsa and c.gen3.clock is c.clock
    assert c.gen3.gate.devices is c.store and c.gen3.persistence.store is c.store
    assert c.gen3.gate.accept_unknown


def test_metrics_of_every_part_in_one_place():
    text = cloud().metrics.render()
    for name in ("spark_devices_online", "spark_sse_streams", "spark_ota_in_progress"):
        assert f"# TYPE {name} gauge" in text
    for name in ("spark_handshakes_completed", "spark_events_published", "spark_events_dropped"):
        assert f"# TYPE {name}_total counter" in text
    assert "# TYPE spark_store_operation_duration_seconds histogram" in text


@pytest_twisted.ensureDeferred
async def test_stop_closes_streams_devices_in_handshake_and_store():
    """One shutdown: a connection still in its handshake is closed too."""
    from twisted.internet import defer
    from twisted.internet.testing import StringTransportWithDisconnection
    from twisted.test.iosim import FakeAddress

    from twisted_spark.device.protocol import CLOSED

    c = cloud()
    proto = c.devices.buildProtocol(FakeAddress())
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    proto.makeConnection(transport)
    assert len(transport.value()) == 40  # the nonce: now waiting for the identity
    closed = []
    c.store.close = lambda: closed.append("store") or defer.succeed(None)
    await c.stop()
    assert proto.state == CLOSED and not transport.connected
    assert not c.devices.connections
    assert closed == ["store"]
