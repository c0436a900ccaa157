"""Gen3 devices end to end: the server in one process, the Gen3 simulator in this one.

The server is ``python -m twisted_spark serve`` on a fresh data directory
(SQLite) where this script registered N Gen3 device keys owned by one user;
the devices are :class:`twisted_spark.sim.gen3.Gen3VirtualDevice` objects,
each on its own UDP socket, ``--concurrency`` handshaking at a time (their
crypto runs here, so the server's CPU figures are its own, from
/proc/PID/stat; memory from VmRSS).  Reports:

* full handshakes/s: DTLS (cookie, ECDHE-ECDSA), Hello checked against
  SQLite, the real CoAP session online in the registry, describe cached;
  wall rate and server CPU per device;
* server RSS per idle online Gen3 device;
* function calls through the HTTP API (treq, one persistent connection)
  to random devices, one at a time: round trip p50/p99 (HTTP -> CoAP over
  DTLS -> device -> separate response -> HTTP);
* resumed sessions/s: the server restarts; every device wakes and resumes
  its saved session from a new port (type-253 record + ping, no handshake),
  the session loaded from SQLite on demand and the CoAP session back online
  with its kept describe; wall rate and server CPU per device.

Usage::

    python bench/bench_gen3.py [--count 200] [--concurrency 16] [--calls 300]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import treq  # noqa: E402
from dtls_harness import key  # noqa: E402
from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.web.client import HTTPConnectionPool  # noqa: E402

from twisted_spark.crypto.ec_keys import (  # noqa: E402
    ec_public_key_der,
    load_server_ec_private_key,
)
from twisted_spark.models import AccessToken, DeviceRecord, User  # noqa: E402
from twisted_spark.sim.gen3 import Gen3VirtualDevice  # noqa: E402

UDP_LINE = re.compile(rb"Gen3 devices on UDP \S+ \(127\.0\.0\.1:(\d+)\)")
API_LINE = re.compile(rb"API on \S+ \(127\.0\.0\.1:(\d+)\)")
TICK = os.sysconf("SC_CLK_TCK")
TOKEN = "b" * 40


class Server:
    """``twisted_spark serve`` on ``data_dir``, its ports found in its log."""

    def __init__(self, data_dir: Path):
        argv = [sys.executable, "-m", "twisted_spark", "serve", "--data-dir", str(data_dir),
                "--api", "tcp:0:interface=127.0.0.1", "--device", "tcp:0:interface=127.0.0.1",
                "--udp-device", "127.0.0.1:0", "--no-console"]
        log = data_dir / f"server-{time.monotonic_ns()}.log"  # a file: a pipe could fill up
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not ((udp := UDP_LINE.search(log.read_bytes()))
                   and (api := API_LINE.search(log.read_bytes()))):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"the server did not start; see {log}")
            time.sleep(0.05)
        self.address = ("127.0.0.1", int(udp.group(1)))
        self.api = f"http://127.0.0.1:{int(api.group(1))}"

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.process.terminate()
        self.process.wait(30)


def device_id(index: int) -> str:
    return f"e3{index:022x}"


async def register(data_dir, count):
    from twisted_spark.store.sqlite import SQLiteStore

    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    await store.add_user(User("bench", "x"))
    await store.add_token(AccessToken(TOKEN, "bench", "bench", 0.0))
    for index in range(count):
        der = ec_public_key_der(key(f"bench-gen3-{index}"))
        await store.put_device(DeviceRecord(device_id(index), owner="bench", public_key=der))
    await store.close()


async def in_batches(items, action, concurrency):
    pending = list(items)

    async def worker():
        while pending:
            await action(pending.pop()).addTimeout(60, reactor)

    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(concurrency)])


async def calls(server, devices, count, pool):
    """Sequential function calls to random devices; their round trips in ms."""
    rounds = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(count):
        device = random.choice(devices)
        start = time.perf_counter()
        response = await treq.post(f"{server.api}/v1/devices/{device.device_id}/brew",
                                   data={"arg": "coffee"}, headers=headers, pool=pool)
        body = await response.json()
        rounds.append(1000 * (time.perf_counter() - start))
        assert body.get("return_value") == 6, body
    return sorted(rounds)


async def main(args):
    data_dir = Path(tempfile.mkdtemp(prefix="bench-gen3-"))
    data_dir.chmod(0o700)
    await register(data_dir, args.count)
    server = Server(data_dir)
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 1
    try:
        server_key = load_server_ec_private_key((data_dir / "server_key_ec.pem").read_bytes())
        devices = [
            Gen3VirtualDevice(device_id(i), key(f"bench-gen3-{i}"), server_key.public_key(),
                              server.address, reactor)
            for i in range(args.count)
        ]
        sockets = [reactor.listenUDP(0, d, interface="127.0.0.1") for d in devices]
        await task.deferLater(reactor, 0.5, lambda: None)
        rss, cpu, start = server.rss_kib(), server.cpu(), time.perf_counter()
        await in_batches(devices, lambda d: d.connect(), args.concurrency)
        wall, used = time.perf_counter() - start, server.cpu() - cpu
        await task.deferLater(reactor, 2.0, lambda: None)  # describes and saves settle
        grown = server.rss_kib() - rss
        print(f"{args.count} full handshakes (DTLS + Hello + describe, session online): "
              f"{args.count / wall:.0f}/s wall, {1000 * used / args.count:.2f} ms server CPU "
              f"each")
        print(f"server RSS per idle online Gen3 device: {grown / args.count:.1f} KiB "
              f"({grown} KiB for {args.count})")
        await calls(server, devices, 20, pool)  # warm up the HTTP connection
        rounds = await calls(server, devices, args.calls, pool)
        p50, p99 = rounds[len(rounds) // 2], rounds[int(len(rounds) * 0.99) - 1]
        print(f"{args.calls} function calls via the API over UDP, one at a time: "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {rounds[-1]:.2f} ms")
        await pool.closeCachedConnections()
        for device in devices:
            device.sleep()
        server.stop()
        for s in sockets:
            await s.stopListening()
        server = Server(data_dir)
        sockets = []
        for device in devices:
            device.server_address = server.address
            sockets.append(reactor.listenUDP(0, device, interface="127.0.0.1"))  # new ports
        await task.deferLater(reactor, 0.5, lambda: None)
        cpu, start = server.cpu(), time.perf_counter()
        await in_batches(devices, lambda d: d.wake(), args.concurrency)
        wall, used = time.perf_counter() - start, server.cpu() - cpu
        print(f"{args.count} resumed sessions after a restart (type 253 + ping, no handshake, "
              f"session from SQLite): {args.count / wall:.0f}/s wall, "
              f"{1000 * used / args.count:.2f} ms server CPU each")
        for s in sockets:
            await s.stopListening()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--calls", type=int, default=300)
    task.react(lambda _reactor: defer.ensureDeferred(main(parser.parse_args())))
