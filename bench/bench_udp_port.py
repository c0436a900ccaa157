"""The UDP device port in a real server process: handshakes/s, resumptions/s, memory per device.

The server is ``python -m twisted_spark serve`` in another process, on a
fresh data directory (SQLite) where this script registered N Gen3 device
keys.  The devices are the sans-IO DTLS client of tests/, each on its own
UDP socket, ``--concurrency`` at a time; their crypto runs in this process,
so the server's figures are its own (CPU from /proc/PID/stat, memory from
VmRSS).  Reports:

* full handshake + Hello (cookie, ECDHE-ECDSA, key check against SQLite,
  session saved): wall rate and server CPU per device;
* server RSS per idle connected device;
* after a server restart, every device resumes from a new port with a
  type-253 ping: the session is loaded from SQLite on demand; wall rate and
  server CPU per resumed device.

Usage::

    python bench/bench_udp_port.py [--count 300] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
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

from dtls_harness import FixedRandom, key, run_work  # noqa: E402
from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402
from udp_harness import hello_message  # noqa: E402

from twisted_spark.coap.codec import CoapMessage, Code, MessageType, decode  # noqa: E402
from twisted_spark.crypto.ec_keys import (  # noqa: E402
    ec_public_key_der,
    load_server_ec_private_key,
)
from twisted_spark.dtls import ApplicationData, ClientConfig, ClientHandshake, resume  # noqa: E402
from twisted_spark.models import DeviceRecord  # noqa: E402

UDP_LINE = re.compile(rb"Gen3 devices on UDP \S+ \(127\.0\.0\.1:(\d+)\)")
TICK = os.sysconf("SC_CLK_TCK")


class Server:
    """``twisted_spark serve`` on ``data_dir``, found by its log line."""

    def __init__(self, data_dir: Path):
        argv = [sys.executable, "-m", "twisted_spark", "serve", "--data-dir", str(data_dir),
                "--api", "tcp:0:interface=127.0.0.1", "--device", "tcp:0:interface=127.0.0.1",
                "--udp-device", "127.0.0.1:0", "--no-console"]
        log = data_dir / f"server-{time.monotonic_ns()}.log"  # a file: a pipe could fill up
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (match := UDP_LINE.search(log.read_bytes())):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"the server did not start; see {log}")
            time.sleep(0.05)
        self.address = ("127.0.0.1", int(match.group(1)))

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


class Device(DatagramProtocol):
    def __init__(self, index, server_public):
        self.index = index
        self.key = key(f"bench-device-{index}")
        self.device_id = f"{index:024x}"
        self.server_public = server_public
        self.side = None
        self.waiting = None
        self.server = None

    def now(self):
        return reactor.seconds()

    def send(self, out):
        out = run_work(self.side, out, self.now())
        for _, event in out.events:
            if isinstance(event, ApplicationData) and self.waiting is not None:
                waiting, self.waiting = self.waiting, None
                waiting.callback(decode(event.data))
        for _, datagram in out.datagrams:
            self.transport.write(datagram, self.server)

    def datagramReceived(self, data, addr):
        self.send(self.side.datagram_received(data, addr, self.now()))
        if isinstance(self.side, ClientHandshake) and self.side.connection is not None:
            self.side = self.side.connection
            self.request(hello_message(self.device_id))

    def request(self, coap):
        self.send(self.side.send(coap, self.now()))

    def connect(self, server):
        self.server = server
        self.waiting = defer.Deferred()
        config = ClientConfig(self.key, self.server_public, rng=FixedRandom(f"b{self.index}"))
        self.side = ClientHandshake(config, server, self.now())
        self.send(self.side.start(self.now()))
        return self.waiting

    def wake(self, server):
        """Resume the saved session towards a restarted server (type-253 records)."""
        self.server = server
        self.side = resume(self.side.snapshot())
        self.waiting = defer.Deferred()
        self.request(CoapMessage(MessageType.CON, Code.EMPTY, 2).encode())
        return self.waiting


async def in_batches(devices, action, concurrency):
    pending = list(devices)

    async def worker():
        while pending:
            device = pending.pop()
            answer = await action(device).addTimeout(30, reactor)
            assert answer.type == MessageType.ACK, answer

    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(concurrency)])


async def register(data_dir, count):
    from twisted_spark.store.sqlite import SQLiteStore

    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    for index in range(count):
        der = ec_public_key_der(key(f"bench-device-{index}"))
        await store.put_device(DeviceRecord(f"{index:024x}", public_key=der))
    await store.close()


async def main(args):
    data_dir = Path(tempfile.mkdtemp(prefix="bench-udp-"))
    data_dir.chmod(0o700)
    await register(data_dir, args.count)
    server = Server(data_dir)
    try:
        server_key = load_server_ec_private_key((data_dir / "server_key_ec.pem").read_bytes())
        devices = [Device(i, server_key.public_key()) for i in range(args.count)]
        sockets = [reactor.listenUDP(0, d, interface="127.0.0.1") for d in devices]
        await task.deferLater(reactor, 0.5, lambda: None)
        rss, cpu, start = server.rss_kib(), server.cpu(), time.perf_counter()
        await in_batches(devices, lambda d: d.connect(server.address), args.concurrency)
        wall, used = time.perf_counter() - start, server.cpu() - cpu
        await task.deferLater(reactor, 1.0, lambda: None)  # let saves settle
        grown = server.rss_kib() - rss
        print(f"{args.count} full handshakes + Hello: {args.count / wall:.0f}/s wall, "
              f"{1000 * used / args.count:.2f} ms server CPU each")
        print(f"server RSS per connected idle device: {grown / args.count:.1f} KiB "
              f"({grown} KiB for {args.count})")
        server.stop()
        for s in sockets:
            await s.stopListening()
        server = Server(data_dir)
        sockets = [reactor.listenUDP(0, d, interface="127.0.0.1") for d in devices]  # new ports
        await task.deferLater(reactor, 0.5, lambda: None)
        cpu, start = server.cpu(), time.perf_counter()
        await in_batches(devices, lambda d: d.wake(server.address), args.concurrency)
        wall, used = time.perf_counter() - start, server.cpu() - cpu
        print(f"{args.count} resumptions after a restart (type 253, session from SQLite): "
              f"{args.count / wall:.0f}/s wall, {1000 * used / args.count:.2f} ms server CPU each")
        for s in sockets:
            await s.stopListening()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    task.react(lambda _reactor: defer.ensureDeferred(main(parser.parse_args())))
