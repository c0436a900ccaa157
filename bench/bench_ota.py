"""OTA transfer time and throughput on loopback, classic (Core) and fast (Photon).

One process: the real device server and API (twisted.web + Klein) on
127.0.0.1, one virtual Core and one virtual Photon over TCP, and a treq
client uploading an image with ``PUT /v1/devices/:id`` (file_type=binary).
For each mode it prints the HTTP round trip (upload + whole transfer +
UpdateDone answer) and the flasher's own transfer time, as the median of
``--repeat`` runs, and the throughput.  The virtual devices verify every
chunk's CRC and the result is compared byte for byte.  Run from the
repository root::

    PYTHONPATH=. python bench/bench_ota.py --size 102400 --repeat 5
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "tests" / "keys"
TOKEN = "b0" * 20
CORE, PHOTON = "53ff73065067544816300187", "1a118ad1c886d54240ce4b17"


async def main(reactor, args):
    import treq
    from Crypto.PublicKey import RSA
    from twisted.internet import task
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.web.client import HTTPConnectionPool

    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.crypto.keys import public_key_der
    from twisted_spark.executors import Executors
    from twisted_spark.models import AccessToken, DeviceRecord, User
    from twisted_spark.sim.device import VirtualDevice, connect_device
    from twisted_spark.store import MemoryStore

    server_key = RSA.import_key((KEYS / "server.pem").read_bytes())
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes())
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="bench-ota-")))
    executors = Executors.threaded(reactor, settings.rsa_threads)
    store = MemoryStore()
    cloud = build_cloud(
        settings, reactor=reactor, store=store, server_key=server_key, executors=executors
    )
    registry, hook = cloud.registry, cloud.firmware
    await store.add_user(User("bench", "x"))
    await store.add_token(AccessToken(TOKEN, "bench", "spark", 0.0, None))
    for device_id in (CORE, PHOTON):
        await store.put_device(
            DeviceRecord(device_id, owner="bench", public_key=public_key_der(device_key))
        )
    device_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        cloud.devices
    )
    api_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(cloud.site)
    pool = HTTPConnectionPool(reactor, persistent=True)
    base = f"http://127.0.0.1:{api_port.getHost().port}"
    devices = {}
    for device_id, platform in ((CORE, "core"), (PHOTON, "photon")):
        device = VirtualDevice(
            device_id,
            device_key,
            server_key.public_key(),
            platform=platform,
            fast_style=args.fast_style,
        )
        await connect_device(reactor, "127.0.0.1", device_port.getHost().port, device, 10)
        devices[device_id] = device
    while registry.get(CORE) is None or registry.get(PHOTON) is None:
        await task.deferLater(reactor, 0.01, lambda: None)

    image = os.urandom(args.size)
    print(f"image {len(image)} bytes, {args.repeat} runs per mode (median shown)")
    for label, device_id in (("Core classic", CORE), ("Photon fast", PHOTON)):
        http_times, transfer_times = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = await treq.put(
                f"{base}/v1/devices/{device_id}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                data={"file_type": "binary"},
                files={"file": ("fw.bin", "application/octet-stream", io.BytesIO(image))},
                pool=pool,
            )
            body = await response.json()
            http_times.append(time.perf_counter() - started)
            assert response.code == 200 and body["ok"], body
            firmware = devices[device_id].firmware
            assert firmware[: len(image)] == image and not firmware[len(image) :].strip(b"\0")
            transfer_times.append(hook.last_summary["seconds"])
        summary = hook.last_summary
        http_s, transfer_s = statistics.median(http_times), statistics.median(transfer_times)
        print(
            f"{label:13s} {summary['mode']:7s} chunks {summary['chunks']:4d} x "
            f"{summary['chunk_size']:3d} B  transfer {transfer_s * 1000:7.1f} ms "
            f"({len(image) / transfer_s / 1024:7.1f} KiB/s)  HTTP round trip "
            f"{http_s * 1000:7.1f} ms"
        )
    for device in devices.values():
        device.disconnect()
    await pool.closeCachedConnections()
    await api_port.stopListening()
    await device_port.stopListening()
    await cloud.stop()


def cli(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100 * 1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fast-style", choices=("0.4.9", "1.5.2"), default="1.5.2")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from twisted.internet import defer, task

    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args)))


if __name__ == "__main__":
    cli()
