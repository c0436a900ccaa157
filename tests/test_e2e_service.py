"""The whole SparkService on loopback: SQLite, device port, API, event streams.

This is the wiring the three launchers share; virtual devices connect over
TCP and clients use real HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_twisted
import treq
from Crypto.PublicKey import RSA
from loopback import until
from twisted.internet import defer
from twisted.web.client import HTTPConnectionPool

from twisted_spark import passwords
from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.models import DeviceRecord, User
from twisted_spark.service import SparkService
from twisted_spark.sim.device import VirtualDevice, connect_device

KEYS = Path(__file__).parent / "keys"
DEVICE_KEY = RSA.import_key((KEYS / "device-1.pem").read_bytes())
SERVER_PUBLIC = RSA.import_key((KEYS / "server.pem").read_bytes()).public_key()
CORE = "53ff73065067544816300187"
PHOTON = "1a118ad1c886d54240ce4b17"
PASSWORD = "loopback password"

pytestmark = pytest.mark.usefixtures("clean_reactor")


class Cloud:
    def __init__(self, reactor, service):
        self.reactor = reactor
        self.service = service
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.base = f"http://127.0.0.1:{service.api_port.getHost().port}"
        self.devices = []
        self.streams = []

    async def token(self, username):
        response = await treq.post(
            self.base + "/oauth/token", auth=("spark", "spark"), pool=self.pool,
            data={"grant_type": "password", "username": username, "password": PASSWORD})
        assert response.code == 200
        return (await response.json())["access_token"]

    async def request(self, method, path, token, **kwargs):
        response = await treq.request(method, self.base + path, pool=self.pool,
                                      headers={"Authorization": f"Bearer {token}"}, **kwargs)
        return response.code, await response.json()

    async def stream(self, path, token):
        """Open an SSE stream; returns (response, list of received chunks)."""
        response = await treq.get(self.base + path, pool=self.pool, unbuffered=True,
                                  headers={"Authorization": f"Bearer {token}"})
        chunks = []
        done = treq.collect(response, chunks.append)
        done.addErrback(lambda _: None)
        self.streams.append(done)
        return response, chunks

    async def attach(self, device_id, platform="core"):
        device = VirtualDevice(device_id, DEVICE_KEY, SERVER_PUBLIC, platform=platform)
        port = self.service.device_port.getHost().port
        await connect_device(self.reactor, "127.0.0.1", port, device, 10)
        self.devices.append(device)
        await until(lambda: self.service.cloud.registry.get(device_id) is not None)
        return device


def frames(chunks):
    """The events in an SSE byte stream, as (name, data dict)."""
    events = []
    for block in b"".join(chunks).split(b"\n\n"):
        lines = block.split(b"\n")
        if len(lines) == 2 and lines[0].startswith(b"event: "):
            events.append((lines[0][7:].decode(), json.loads(lines[1][6:])))
    return events


@pytest.fixture
def cloud(reactor, data_dir, monkeypatch):
    monkeypatch.setattr(passwords, "ITERATIONS", 1000)
    settings = Settings(data_dir=data_dir, api_endpoint="tcp:0:interface=127.0.0.1",
                        device_endpoint="tcp:0:interface=127.0.0.1",
                        udp_device="127.0.0.1:0", login_failures_per_minute=0)
    service = SparkService(settings, reactor)
    service.startService()
    cloud = pytest_twisted.blockon(defer.ensureDeferred(_started(reactor, service)))
    yield cloud
    pytest_twisted.blockon(defer.ensureDeferred(_stopped(cloud)))


async def _started(reactor, service):
    await service.ready
    for name in ("alice", "bob"):
        await service.store.add_user(User(name, passwords.hash_password(PASSWORD)))
    for device_id in (CORE, PHOTON):
        await service.store.put_device(
            DeviceRecord(device_id, owner="alice", public_key=public_key_der(DEVICE_KEY)))
    return Cloud(reactor, service)


async def _stopped(cloud):
    for device in cloud.devices:
        device.disconnect()
    await defer.DeferredList([device.closed for device in cloud.devices])
    await cloud.service.stopService()
    await cloud.pool.closeCachedConnections()
    # Stopping the server ends every stream; wait for the client side to see it.
    await defer.DeferredList(cloud.streams)
    await until(lambda: not _client_sockets(cloud.reactor), what="client sockets closed")


def _client_sockets(reactor):
    return [s for s in reactor.getReaders() + reactor.getWriters()
            if type(s).__name__ == "Client"]


@pytest_twisted.ensureDeferred
async def test_device_events_reach_streams_with_exact_frames(reactor, cloud):
    alice, bob = await cloud.token("alice"), await cloud.token("bob")
    _, alice_all = await cloud.stream("/v1/devices/events", alice)
    _, alice_temp = await cloud.stream("/v1/events/temp", alice)
    _, bob_firehose = await cloud.stream("/v1/events", bob)
    await until(lambda: len(cloud.service.cloud.streams.streams()) == 3)

    device = await cloud.attach(CORE)
    await until(lambda: ("spark/status", "online") in
                [(name, body["data"]) for name, body in frames(alice_all)])
    device.publish("temp/kitchen", "21.5", ttl=120)
    device.publish("secret", "x", private=True)
    await until(lambda: len(frames(alice_all)) >= 3 and frames(alice_temp))

    name, body = frames(alice_temp)[0]
    assert name == "temp/kitchen"
    assert list(body) == ["data", "ttl", "published_at", "coreid"]
    assert body["data"] == "21.5" and body["ttl"] == "120" and body["coreid"] == CORE
    assert b"".join(alice_temp).startswith(b":ok\n\n")
    assert [n for n, _ in frames(alice_all)] == ["spark/status", "temp/kitchen", "secret"]
    await until(lambda: frames(bob_firehose))
    # Bob sees the public event only: not Alice's private one, nor her device's status.
    assert [n for n, _ in frames(bob_firehose)] == ["temp/kitchen"]

    device.disconnect()
    await until(lambda: ("spark/status", "offline") in
                [(name, body["data"]) for name, body in frames(alice_all)])


@pytest_twisted.ensureDeferred
async def test_api_publish_reaches_subscribed_devices_by_scope(reactor, cloud):
    alice, bob = await cloud.token("alice"), await cloud.token("bob")
    core = await cloud.attach(CORE)
    photon = await cloud.attach(PHOTON, platform="photon")
    assert await core.subscribe("cmd", my_devices=True)
    assert await photon.subscribe("cmd")  # firehose: public events only

    status, body = await cloud.request("POST", "/v1/devices/events", alice,
                                       data={"name": "cmd/open", "data": "1", "private": "True"})
    assert (status, body) == (200, {"ok": True})
    status, _ = await cloud.request("POST", "/v1/devices/events", bob,
                                    data={"name": "cmd/public", "data": "2"})
    assert status == 200
    await until(lambda: len(core.events) >= 1 and len(photon.events) >= 1)
    assert [(e[0], e[1]) for e in core.events] == [("cmd/open", "1")]
    assert [(e[0], e[1]) for e in photon.events] == [("cmd/public", "2")]

    status, body = await cloud.request("POST", "/v1/devices/events", alice,
                                       data={"name": "spark/fake", "data": "1"})
    assert status == 400 and body["ok"] is False and "spark" in body["error_description"]


@pytest_twisted.ensureDeferred
async def test_other_users_see_only_public_events_of_a_device(reactor, cloud):
    alice, bob = await cloud.token("alice"), await cloud.token("bob")
    device = await cloud.attach(CORE)
    _, bob_view = await cloud.stream(f"/v1/devices/{CORE}/events", bob)
    _, alice_view = await cloud.stream(f"/v1/devices/{CORE}/events", alice)
    await until(lambda: len(cloud.service.cloud.streams.streams()) == 2)
    device.publish("door", "open", private=True)
    device.publish("weather", "sunny")
    await until(lambda: len(frames(alice_view)) == 2 and frames(bob_view))
    assert [n for n, _ in frames(bob_view)] == ["weather"]

    response = await treq.get(cloud.base + "/v1/devices/0123456789abcdef01234567/events",
                              headers={"Authorization": f"Bearer {alice}"}, pool=cloud.pool)
    assert response.code == 403
    assert (await response.json())["ok"] is False


@pytest_twisted.ensureDeferred
async def test_deleting_the_token_ends_its_stream(reactor, cloud):
    alice = await cloud.token("alice")
    subscribers_before = len(cloud.service.cloud.bus)
    response, chunks = await cloud.stream("/v1/events", alice)
    await until(lambda: b"".join(chunks).startswith(b":ok"))
    assert len(cloud.service.cloud.bus) == subscribers_before + 1
    status, body = await cloud.request("DELETE", f"/v1/access_tokens/{alice}", alice)
    assert (status, body) == (200, {"ok": True})
    await until(lambda: cloud.service.cloud.streams.streams() == [])
    assert len(cloud.service.cloud.bus) == subscribers_before


@pytest_twisted.ensureDeferred
async def test_flash_a_binary_through_the_service(reactor, cloud):
    import io

    alice = await cloud.token("alice")
    device = await cloud.attach(CORE)
    _, events = await cloud.stream("/v1/devices/events/spark/flash", alice)
    image = bytes(range(256)) * 20  # 5 120 bytes: 20 chunks of 256
    response = await treq.put(
        f"{cloud.base}/v1/devices/{CORE}", pool=cloud.pool,
        headers={"Authorization": f"Bearer {alice}"},
        data={"file_type": "binary"}, files={"file": ("app.bin", io.BytesIO(image))})
    body = await response.json()
    assert response.code == 200, body
    assert body["ok"] is True and body["status"] == "Update finished" and body["id"] == CORE
    assert device.firmware[: len(image)] == image
    assert (cloud.service.settings.data_dir / "firmware" /
            f"{body['firmware_binary_id']}.bin").read_bytes() == image
    await until(lambda: len(frames(events)) == 2)
    assert [b["data"] for _, b in frames(events)] == ["started", "success"]


@pytest_twisted.ensureDeferred
async def test_health_and_metrics_count_devices_and_handshakes(reactor, cloud):
    await cloud.attach(CORE)
    response = await treq.get(cloud.base + "/healthz", pool=cloud.pool)
    assert await response.json() == {"ok": True, "devices_online": 1}
    response = await treq.get(cloud.base + "/metrics", pool=cloud.pool)
    text = (await response.text()).splitlines()
    assert "spark_devices_online 1.0" in text
    assert "spark_handshakes_completed_total 1.0" in text
    assert "spark_handshakes_failed_total 0.0" in text
    assert any(line.startswith('spark_handshake_duration_seconds_count{transport="tcp"} 1.0')
               for line in text)


@pytest_twisted.ensureDeferred
async def test_trailing_slash_streams_every_event(reactor, cloud):
    alice = await cloud.token("alice")
    device = await cloud.attach(CORE)
    response, chunks = await cloud.stream(f"/v1/devices/{CORE}/events/", alice)
    assert response.code == 200
    await until(lambda: len(cloud.service.cloud.streams.streams()) == 1)
    device.publish("a", "1")
    device.publish("b/c", "2")
    await until(lambda: len(frames(chunks)) == 2)
    assert [name for name, _ in frames(chunks)] == ["a", "b/c"]
