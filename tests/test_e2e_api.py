"""Loopback end to end: the real API (Site on 127.0.0.1:0), the real device
server, and virtual devices from :mod:`twisted_spark.sim` over TCP; real
HTTP with treq.  Password hashing runs in a thread pool."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import pytest_twisted
import treq
from Crypto.PublicKey import RSA
from loopback import listen, loopback_cloud, shut_down, until
from twisted.internet import defer, reactor
from twisted.web.client import HTTPConnectionPool

from twisted_spark import passwords
from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.executors import Executors, ThreadExecutor
from twisted_spark.models import DeviceRecord, User
from twisted_spark.sim.device import VirtualDevice, connect_device

pytestmark = pytest.mark.usefixtures("clean_reactor")

KEYS = Path(__file__).parent / "keys"
SERVER_KEY = RSA.import_key((KEYS / "server.pem").read_bytes())
DEVICE_KEY = RSA.import_key((KEYS / "device-1.pem").read_bytes())
CORE = "53ff73065067544816300187"
PHOTON = "1a118ad1c886d54240ce4b17"
PASSWORD = "loopback password"


class SilentDevice(VirtualDevice):
    """Handshakes and describes, then never answers a variable read."""

    def _variable(self, msg):
        return None


class Cloud:
    """The composition root's server on ephemeral loopback ports, virtual devices
    attached (password hashing in the passwords executor's threads)."""

    def __init__(self, request_timeout=30.0, **settings):
        self.settings = Settings(
            request_timeout=request_timeout, login_failures_per_minute=0, **settings
        )
        executors = Executors.synchronous()
        executors.passwords = ThreadExecutor(reactor, "passwords", 2)
        self.cloud = loopback_cloud(self.settings, executors=executors)
        self.store = self.cloud.store
        self.registry = self.cloud.registry
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.devices = []
        self.ports = []

    async def start(self):
        await self.store.add_user(User("alice", passwords.hash_password(PASSWORD)))
        for device_id in (CORE, PHOTON):
            await self.store.put_device(
                DeviceRecord(device_id, owner="alice", public_key=public_key_der(DEVICE_KEY))
            )
        self.device_port, self.api_port = await listen(self.cloud)
        self.ports = [self.device_port, self.api_port]
        self.base = f"http://127.0.0.1:{self.api_port.getHost().port}"
        return self

    async def attach(self, device_id, platform="core", cls=VirtualDevice):
        device = cls(device_id, DEVICE_KEY, SERVER_KEY.public_key(), platform=platform)
        await connect_device(reactor, "127.0.0.1", self.device_port.getHost().port, device, 10)
        self.devices.append(device)
        await until(lambda: self.registry.get(device_id) is not None)
        session = self.registry.get(device_id)
        await until(lambda: session.functions or session.variables)  # Describe cached
        return device

    async def request(self, method, path, token=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await treq.request(
            method, self.base + path, headers=headers, pool=self.pool, **kwargs
        )
        return response.code, await response.json()

    async def stop(self):
        for device in self.devices:
            device.disconnect()
        await defer.DeferredList([d.closed for d in self.devices])
        await self.pool.closeCachedConnections()
        await shut_down(self.cloud, *self.ports)






@pytest.fixture(autouse=True)
def fast_passwords(monkeypatch):
    monkeypatch.setattr(passwords, "ITERATIONS", 1000)


@pytest_twisted.ensureDeferred
async def test_loopback_token_list_info_variables_function_rename_release_claim(fast_passwords):
    cloud = await Cloud().start()
    try:
        await cloud.attach(CORE, "core")
        await cloud.attach(PHOTON, "photon")

        # token (password checked in the thread pool)
        response = await treq.post(
            cloud.base + "/oauth/token",
            auth=("spark", "spark"),
            pool=cloud.pool,
            data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        )
        assert response.code == 200
        token = (await response.json())["access_token"]

        # list
        status, devices = await cloud.request("GET", "/v1/devices", token)
        assert status == 200
        assert {(d["id"], d["connected"]) for d in devices} == {(CORE, True), (PHOTON, True)}
        assert all(d["last_heard"].endswith("Z") for d in devices)

        # info from the cached Describe
        status, info = await cloud.request("GET", f"/v1/devices/{CORE}", token)
        assert status == 200
        assert info["variables"] == {
            "ready": "bool",
            "temperature": "int32",
            "message": "string",
            "ratio": "double",
        }
        assert set(info["functions"]) == {"brew", "negate"}

        # every variable type, from both platforms
        expected = {"ready": True, "temperature": -98765, "message": "woot", "ratio": -104.858}
        for device_id in (CORE, PHOTON):
            for name, value in expected.items():
                status, body = await cloud.request("GET", f"/v1/devices/{device_id}/{name}", token)
                assert status == 200, body
                assert body["result"] == value and type(body["result"]) is type(value)
                assert body["coreInfo"]["deviceID"] == device_id
        raw = await treq.get(
            f"{cloud.base}/v1/devices/{CORE}/temperature?format=raw&access_token={token}",
            pool=cloud.pool,
        )
        assert await raw.text() == "-98765"

        # functions
        status, body = await cloud.request(
            "POST", f"/v1/devices/{CORE}/brew", token, data={"arg": "coffee"}
        )
        assert (status, body["return_value"], body["connected"]) == (200, 6, True)
        status, body = await cloud.request(
            "POST", f"/v1/devices/{PHOTON}/negate", token, json={"args": "42"}
        )
        assert (status, body["return_value"]) == (200, -42)
        status, body = await cloud.request(
            "POST", f"/v1/devices/{CORE}/nothere", token, data={"arg": "x"}
        )
        assert (status, body["error"]) == (400, "Function not found")

        # rename, then address by name
        status, body = await cloud.request(
            "PUT", f"/v1/devices/{CORE}", token, data={"name": "kitchen"}
        )
        assert (status, body) == (200, {"ok": True, "id": CORE, "name": "kitchen"})
        status, body = await cloud.request("GET", "/v1/devices/kitchen/message", token)
        assert (status, body["result"]) == (200, "woot")

        # ping, signal
        status, body = await cloud.request("PUT", "/v1/devices/kitchen/ping", token)
        assert (status, body) == (200, {"online": True, "ok": True})
        status, body = await cloud.request(
            "PUT", "/v1/devices/kitchen", token, data={"signal": "1"}
        )
        assert (status, body["signaling"]) == (200, True)
        assert cloud.devices[0].signalling is True

        # release, then it is not ours; claim it back
        status, body = await cloud.request("DELETE", "/v1/devices/kitchen", token)
        assert (status, body) == (200, {"ok": True})
        status, _ = await cloud.request("GET", f"/v1/devices/{CORE}/temperature", token)
        assert status == 403
        status, body = await cloud.request("POST", "/v1/devices", token, data={"id": CORE})
        assert status == 200
        assert body == {"ok": True, "user_id": "alice", "id": CORE, "connected": True}
        status, body = await cloud.request("GET", f"/v1/devices/{CORE}/temperature", token)
        assert (status, body["result"]) == (200, -98765)
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_loopback_device_going_offline_gives_404_within_a_second():
    cloud = await Cloud().start()
    try:
        token = "0123456789abcdef0123456789abcdef01234567"
        from twisted_spark.models import AccessToken

        await cloud.store.add_token(AccessToken(token, "alice", "spark", 0.0, None))
        device = await cloud.attach(CORE)
        status, _ = await cloud.request(
            "POST", f"/v1/devices/{CORE}/brew", token, data={"arg": "a"}
        )
        assert status == 200
        started = time.monotonic()
        device.disconnect()
        statuses = []

        async def poll():
            status, body = await cloud.request(
                "POST", f"/v1/devices/{CORE}/brew", token, data={"arg": "a"}
            )
            statuses.append((status, body))
            return status

        while await poll() != 404:
            assert time.monotonic() - started < 1.0, statuses
        assert time.monotonic() - started < 1.0
        assert statuses[-1][1]["error"] == "Device is not connected"
        status, body = await cloud.request("PUT", f"/v1/devices/{CORE}/ping", token)
        assert (status, body) == (200, {"online": False, "ok": True})
        status, body = await cloud.request("GET", f"/v1/devices/{CORE}", token)
        assert (status, body["connected"]) == (200, False)
        assert body["functions"]  # last known Describe is still shown
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_loopback_silent_device_gives_408():
    cloud = await Cloud(request_timeout=0.3).start()
    try:
        token = "1123456789abcdef0123456789abcdef01234567"
        from twisted_spark.models import AccessToken

        await cloud.store.add_token(AccessToken(token, "alice", "spark", 0.0, None))
        await cloud.attach(CORE, cls=SilentDevice)
        started = time.monotonic()
        status, body = await cloud.request("GET", f"/v1/devices/{CORE}/temperature", token)
        elapsed = time.monotonic() - started
        assert (status, body["error"]) == (408, "Timed out.")
        assert 0.25 <= elapsed < 2.0
        # the device is still connected and its functions still work
        status, body = await cloud.request(
            "POST", f"/v1/devices/{CORE}/brew", token, data={"arg": "ab"}
        )
        assert (status, body["return_value"]) == (200, 2)
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_loopback_oversized_body_is_413_without_buffering_it():
    cloud = await Cloud(max_body_size=1000, max_firmware_size=2000).start()
    try:
        token = "2123456789abcdef0123456789abcdef01234567"
        from twisted_spark.models import AccessToken

        await cloud.store.add_token(AccessToken(token, "alice", "spark", 0.0, None))
        status, body = await cloud.request(
            "POST",
            f"/v1/devices/{CORE}/brew",
            token,
            data=b"arg=" + b"x" * 50_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert (status, body["ok"]) == (413, False)
        # token in the discarded body: still 413 (size first), never a 401
        response = await treq.post(
            cloud.base + "/v1/devices",
            data={"access_token": token, "id": "x" * 5000},
            pool=cloud.pool,
        )
        assert response.code == 413
        await response.content()
    finally:
        await cloud.stop()
