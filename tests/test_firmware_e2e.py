"""Loopback end to end for flashing: the real API and device server on
127.0.0.1, virtual devices over TCP, real multipart uploads with treq, the
real compile-command runner (small Python scripts as "compilers")."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
import treq
from Crypto.PublicKey import RSA
from loopback import listen, loopback_cloud, shut_down, until
from twisted.internet import defer, reactor
from twisted.web.client import HTTPConnectionPool

from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.firmware import FlashOptions
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.sim.device import OtaFaults, VirtualDevice, connect_device

pytestmark = pytest.mark.usefixtures("clean_reactor")

KEYS = Path(__file__).parent / "keys"
SERVER_KEY = RSA.import_key((KEYS / "server.pem").read_bytes())
DEVICE_KEY = RSA.import_key((KEYS / "device-1.pem").read_bytes())
CORE = "53ff73065067544816300187"
PHOTON = "1a118ad1c886d54240ce4b17"
TOKEN = "f" * 40
IMAGE_100K = os.urandom(100 * 1024)


class Cloud:
    """The composition root's server (with its firmware hook) on loopback ports."""

    def __init__(self, tmp_path, options=None, **settings):
        self.settings = Settings(data_dir=tmp_path / "data", **settings)
        self.cloud = loopback_cloud(self.settings, flash_options=options)
        self.store = self.cloud.store
        self.registry = self.cloud.registry
        self.hook = self.cloud.firmware
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.devices = []
        self.statuses = []
        self.cloud.bus.subscribe(
            "spark/flash/status", lambda e: self.statuses.append((e.coreid, e.data, e.owner))
        )

    async def start(self):
        await self.store.add_user(User("alice", "x"))
        await self.store.add_token(AccessToken(TOKEN, "alice", "spark", 0.0, None))
        for device_id in (CORE, PHOTON):
            await self.store.put_device(
                DeviceRecord(device_id, owner="alice", public_key=public_key_der(DEVICE_KEY))
            )
        self.device_port, self.api_port = await listen(self.cloud)
        self.base = f"http://127.0.0.1:{self.api_port.getHost().port}"
        return self

    async def attach(self, device_id, platform="core", **kw):
        device = VirtualDevice(
            device_id, DEVICE_KEY, SERVER_KEY.public_key(), platform=platform, **kw
        )
        await connect_device(reactor, "127.0.0.1", self.device_port.getHost().port, device, 10)
        self.devices.append(device)
        await until(lambda: self.registry.get(device_id) is not None)
        return device

    async def request(self, method, path, **kwargs):
        response = await treq.request(
            method,
            self.base + path,
            headers={"Authorization": f"Bearer {TOKEN}"},
            pool=self.pool,
            **kwargs,
        )
        return response.code, await response.json()

    async def flash(self, device_id, data, filename="firmware.bin", binary=True, extra=None):
        fields = {"file_type": "binary"} if binary else {}
        files = {"file": (filename, "application/octet-stream", io.BytesIO(data))}
        files.update(extra or {})
        return await self.request("PUT", f"/v1/devices/{device_id}", data=fields, files=files)

    async def stop(self):
        for device in self.devices:
            device.disconnect()
        await defer.DeferredList([d.closed for d in self.devices])
        await self.pool.closeCachedConnections()
        await shut_down(self.cloud, self.api_port, self.device_port)






def padded(image, size):
    return image + b"\x00" * (-len(image) % size)


# -- binaries ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_core_classic_100k_byte_exact(tmp_path):
    cloud = await Cloud(tmp_path).start()
    try:
        device = await cloud.attach(CORE, "core")
        status, body = await cloud.flash(CORE, IMAGE_100K)
        assert status == 200, body
        assert body == {
            "ok": True,
            "id": CORE,
            "status": "Update finished",
            "firmware_binary_id": body["firmware_binary_id"],
        }
        assert device.firmware == padded(IMAGE_100K, 256)  # device checked every CRC
        assert device.ota_stats["bad_crc"] == 0
        assert cloud.hook.last_summary["mode"] == "classic"
        assert cloud.statuses == [(CORE, "started", "alice"), (CORE, "success", "alice")]
        assert await cloud.hook.images.get(body["firmware_binary_id"]) == IMAGE_100K
        assert not cloud.registry.get(CORE).busy
        status, _ = await cloud.request("GET", f"/v1/devices/{CORE}/temperature")
        assert status == 200  # unlocked, and Describe asked again after the update
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("style", ["0.4.9", "1.5.2"])
async def test_photon_fast_100k_byte_exact(tmp_path, style):
    cloud = await Cloud(tmp_path).start()
    try:
        device = await cloud.attach(PHOTON, "photon", fast_style=style)
        await device.publish("spark/hardware/ota_chunk_size", "512", private=True)
        await until(lambda: cloud.hook.hardware.get(PHOTON, {}).get("ota_chunk_size"))
        status, body = await cloud.flash(PHOTON, IMAGE_100K, filename="app")  # file_type says
        assert status == 200, body
        assert body["ok"] is True and body["status"] == "Update finished"
        assert device.firmware == IMAGE_100K
        assert cloud.hook.last_summary["mode"] == "fast"
        assert cloud.hook.last_summary["chunk_size"] == 512
        assert [s for _, s, _ in cloud.statuses] == ["started", "success"]
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "platform,kw",
    [("core", {}), ("photon", {"fast_style": "0.4.9"}), ("photon", {"fast_style": "1.5.2"})],
)
async def test_corrupted_chunk_is_resent(tmp_path, platform, kw):
    cloud = await Cloud(tmp_path, options=FlashOptions(fast_quiet=0.2)).start()
    try:
        device_id = CORE if platform == "core" else PHOTON
        faults = OtaFaults(corrupt={17: 1})
        device = await cloud.attach(device_id, platform, ota_faults=faults, **kw)
        status, body = await cloud.flash(device_id, IMAGE_100K)
        assert status == 200, body
        assert device.ota_stats["bad_crc"] == 1
        assert cloud.hook.last_summary["resent"] == 1
        size = cloud.hook.last_summary["chunk_size"]
        expected = padded(IMAGE_100K, size) if platform == "core" else IMAGE_100K
        assert device.firmware == expected
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("platform", ["core", "photon"])
async def test_disconnect_mid_transfer_fails_and_unlocks(tmp_path, platform):
    cloud = await Cloud(tmp_path).start()
    try:
        device_id = CORE if platform == "core" else PHOTON
        faults = OtaFaults(disconnect_after=50)
        device = await cloud.attach(device_id, platform, ota_faults=faults)
        session = cloud.registry.get(device_id)
        status, body = await cloud.flash(device_id, IMAGE_100K)
        assert status == 500, body
        assert body["ok"] is False and "disconnected" in body["errors"][0]
        assert body["firmware_binary_id"]
        assert device.firmware is None
        assert not session.busy and session._update_handler is None
        assert cloud.hook.active == {}
        assert [s for _, s, _ in cloud.statuses] == ["started", "failed"]
        # The device comes back and can be flashed again.
        device = await cloud.attach(device_id, platform)
        status, body = await cloud.flash(device_id, b"small image")
        assert status == 200, body
        assert device.firmware.startswith(b"small image")
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_device_locked_while_flashing(tmp_path):
    cloud = await Cloud(tmp_path).start()
    try:
        device = await cloud.attach(CORE, "core", ota_faults=OtaFaults(silent_after=5))
        session = cloud.registry.get(CORE)
        flashing = defer.ensureDeferred(cloud.flash(CORE, IMAGE_100K))
        await until(lambda: session.busy)
        status, body = await cloud.request("GET", f"/v1/devices/{CORE}/temperature")
        assert (status, body["error"]) == (409, "Device is being updated")
        status, body = await cloud.request("POST", f"/v1/devices/{CORE}/brew", data={"arg": "x"})
        assert status == 409
        status, body = await cloud.flash(CORE, b"second image")
        assert (status, body["error"]) == (409, "Device is being updated")
        device.disconnect()
        status, body = await flashing
        assert status == 500 and body["ok"] is False
        assert not session.busy
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_too_big_is_refused_before_sending(tmp_path):
    cloud = await Cloud(tmp_path).start()
    try:
        photon = await cloud.attach(PHOTON, "photon")
        await photon.publish("spark/hardware/max_binary", "65536", private=True)
        await until(lambda: cloud.hook.hardware.get(PHOTON, {}).get("max_binary"))
        status, body = await cloud.flash(PHOTON, os.urandom(65537))
        assert status == 400, body
        assert "at most 65536" in body["errors"][0] and body["firmware_binary_id"]
        assert photon.ota_stats == {}  # not even an UpdateBegin
        core = await cloud.attach(CORE, "core")
        status, body = await cloud.flash(CORE, os.urandom(108_001))  # Core default limit
        assert status == 400 and "at most 108000" in body["errors"][0]
        assert core.ota_stats == {}
        assert cloud.statuses == []
        assert not cloud.registry.get(CORE).busy
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_offline_device_404_with_binary_id(tmp_path):
    cloud = await Cloud(tmp_path).start()
    try:
        status, body = await cloud.flash(PHOTON, b"image")
        assert status == 404
        assert body["ok"] is False and body["errors"] == ["Device is not connected."]
        assert await cloud.hook.images.get(body["firmware_binary_id"]) == b"image"
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_refused_update_is_500(tmp_path):
    cloud = await Cloud(tmp_path).start()
    try:
        await cloud.attach(PHOTON, "photon", ota_faults=OtaFaults(refuse=0xA3))
        status, body = await cloud.flash(PHOTON, b"image")
        assert status == 500 and "refused" in body["errors"][0]
        assert [s for _, s, _ in cloud.statuses] == ["started", "failed"]
    finally:
        await cloud.stop()


# -- sources -----------------------------------------------------------------------------

FAILING = """
import os, sys
print("compiling", sorted(os.listdir(sys.argv[1])))
print("app.cpp:3: error: 'lop' was not declared in this scope", file=sys.stderr)
sys.exit(1)
"""

SUCCEEDING = """
import os, sys
src, out, platform = sys.argv[1], sys.argv[2], sys.argv[3]
parts = [open(os.path.join(src, n), "rb").read() for n in sorted(os.listdir(src))]
open(out, "wb").write(("BIN-" + platform + ":").encode() + b"|".join(parts))
"""

SLOW = "import time; print('working', flush=True); time.sleep(60)"


def command(tmp_path, script):
    path = tmp_path / "compiler.py"
    path.write_text(script)
    return f"{sys.executable} {path} {{src}} {{out}} {{platform}}"


@pytest_twisted.ensureDeferred
async def test_compile_failure_returns_output(tmp_path):
    cloud = await Cloud(tmp_path, compile_command=command(tmp_path, FAILING)).start()
    try:
        device = await cloud.attach(CORE, "core")
        status, body = await cloud.flash(CORE, b"void setup() {}", filename="app.cpp", binary=False)
        assert status == 400, body
        assert body["ok"] is False and body["errors"] == ["Compile error"]
        assert "'lop' was not declared" in body["output"]
        assert "['app.cpp']" in body["output"]
        assert device.ota_stats == {} and cloud.statuses == []
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_compile_success_flashes_the_result(tmp_path):
    cloud = await Cloud(tmp_path, compile_command=command(tmp_path, SUCCEEDING)).start()
    try:
        device = await cloud.attach(PHOTON, "photon")
        extra = {"file1": ("../lib.h", "text/plain", io.BytesIO(b"#define X 1"))}
        status, body = await cloud.flash(
            PHOTON, b"void loop() {}", filename="app.ino", binary=False, extra=extra
        )
        assert status == 200, body
        expected = b"BIN-photon:void loop() {}|#define X 1"  # app.ino, lib.h (sorted)
        assert device.firmware == expected
        assert await cloud.hook.images.get(body["firmware_binary_id"]) == expected
    finally:
        await cloud.stop()


@pytest.mark.parametrize("name", ["a" * 252 + ".cpp", "é" * 126 + ".cpp", "dir/" + "b" * 256])
@pytest_twisted.ensureDeferred
async def test_source_file_name_over_255_bytes_is_400_without_compiling(tmp_path, name):
    marker = tmp_path / "compiler-ran"
    script = f"open({str(marker)!r}, 'w').close()\n" + SUCCEEDING
    cloud = await Cloud(tmp_path, compile_command=command(tmp_path, script)).start()
    try:
        await cloud.attach(CORE, "core")
        status, body = await cloud.flash(CORE, b"void setup() {}", filename=name, binary=False)
        assert status == 400, body
        assert body["ok"] is False and "at most 255 bytes" in body["error_description"]
        assert body["errors"] == [body["error_description"]]
        assert not marker.exists()
        # a long path of short names is fine: only the last part becomes a file
        status, body = await cloud.flash(CORE, b"void setup() {}", binary=False,
                                         filename="d/" * 200 + "app.cpp")
        assert status == 200, body
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_compile_timeout_kills_and_reports(tmp_path):
    cloud = await Cloud(
        tmp_path, compile_command=command(tmp_path, SLOW), compile_timeout=1.0
    ).start()
    try:
        await cloud.attach(CORE, "core")
        started = time.monotonic()
        status, body = await cloud.flash(CORE, b"x", filename="app.cpp", binary=False)
        assert status == 400 and body["errors"] == ["Compile error"]
        assert "working" in body["output"] and "killed after 1 seconds" in body["output"]
        assert time.monotonic() - started < 30
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_source_without_compiler_is_400(tmp_path):
    cloud = await Cloud(tmp_path).start()
    try:
        await cloud.attach(CORE, "core")
        status, body = await cloud.flash(CORE, b"x", filename="app.cpp", binary=False)
        assert status == 400
        assert body["errors"] == ["Compilation is not configured on this server"]
    finally:
        await cloud.stop()
