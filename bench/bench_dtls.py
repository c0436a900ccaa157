"""Cost of the Gen3 DTLS layer (twisted_spark.dtls), sans-IO, in this process.

No sockets: devices are the package's own ClientHandshake, and only the time
spent inside server calls is counted (time.process_time around them), so the
device side's crypto does not inflate the server figures.  Reports:

* server CPU per full handshake (cookie exchange included), and how much of
  it is the CryptoWork (ECDSA sign, ECDH, ECDSA verify) the Twisted layer
  will run in a thread pool;
* server CPU per type-253 resumption record (open, move, checkpoint) and per
  session restored from its persisted dict;
* server CPU to open a 100-byte device record and to seal a 100-byte reply;
* memory per idle established session (tracemalloc, N sessions in the table).

Usage::

    PYTHONPATH=. python bench/bench_dtls.py [--count 500]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from dtls_harness import SERVER_ADDRESS as SERVER  # noqa: E402
from dtls_harness import FixedRandom, key  # noqa: E402

from twisted_spark.dtls import (  # noqa: E402
    ClientConfig,
    ClientHandshake,
    DtlsServer,
    ServerConfig,
    SessionState,
    SessionTable,
    resume,
)


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Timed:
    """Accumulates process CPU time of the server calls made through it."""

    def __init__(self, server):
        self.server = server
        self.total = 0.0
        self.work = 0.0

    def call(self, method, *args):
        start = time.process_time()
        out = getattr(self.server, method)(*args)
        pending = list(out.work)
        while pending:
            item = pending.pop(0)
            work_start = time.process_time()
            result = item.run()
            self.work += time.process_time() - work_start
            more = self.server.work_done(item, result, args[-1])
            out.datagrams += more.datagrams
            out.events += more.events
            pending += more.work
        self.total += time.process_time() - start
        return out


def run_client(client, out, now):
    pending = list(out.work)
    datagrams = list(out.datagrams)
    while pending:
        item = pending.pop(0)
        more = client.work_done(item, item.run(), now)
        datagrams += more.datagrams
        pending += more.work
    return datagrams


def handshake(timed, device_key, server_public, address, index):
    config = ClientConfig(device_key, server_public, rng=FixedRandom(f"bench/{index}"))
    client = ClientHandshake(config, SERVER, 0.0)
    to_server = run_client(client, client.start(0.0), 0.0)
    while to_server:
        to_client = []
        for _, datagram in to_server:
            to_client += timed.call("datagram_received", datagram, address, 0.0).datagrams
        to_server = []
        for _, datagram in to_client:
            to_server += run_client(client, client.datagram_received(datagram, SERVER, 0.0), 0.0)
    assert client.connection is not None
    return client.connection


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    count = args.count
    server_key = key("server")
    server = DtlsServer(
        ServerConfig(server_key, rng=FixedRandom("bench")),
        SessionTable(max_sessions=count + 10),
        max_handshakes=count + 10,
    )
    timed = Timed(server)
    device_keys = [key(f"device-{i % 20}") for i in range(20)]
    devices = []
    for index in range(count):
        address = (f"10.0.{index // 250}.{index % 250}", 40000 + index)
        connection = handshake(
            timed, device_keys[index % 20], server_key.public_key(), address, index
        )
        devices.append((connection, address))
    print(
        f"full handshake: {1000 * timed.total / count:.2f} ms server CPU each "
        f"({1000 * timed.work / count:.2f} ms of it CryptoWork), "
        f"{count / timed.total:.0f}/s on one core"
    )

    # first record of a woken device, from a new address (type 253)
    records = []
    for index, (connection, _) in enumerate(devices):
        saved = SessionState.from_dict(connection.snapshot().to_dict())
        woken = resume(saved)
        [(_, datagram)] = woken.send(b"\x40\x00\x12\x34" + b"p" * 96, 1.0).datagrams
        records.append((datagram, ("172.16.0.1", 1024 + index)))
    timed.total = 0.0
    for datagram, address in records:
        out = timed.call("datagram_received", datagram, address, 1.0)
        assert len(out.events) == 3, out.events  # moved, checkpoint, data
    print(f"type-253 resumption record: {1e6 * timed.total / count:.1f} us server CPU each")

    states = [c.snapshot().to_dict() for c in server.sessions]
    restored = DtlsServer(
        ServerConfig(server_key, rng=FixedRandom("r")), SessionTable(max_sessions=count + 10)
    )
    start = time.process_time()
    for state in states:
        restored.restore(SessionState.from_dict(state), 2.0)
    elapsed = time.process_time() - start
    print(f"session restored from its persisted dict: {1e6 * elapsed / count:.1f} us each")

    connection, address = devices[0]
    connection.moving = False
    data = [connection.send(b"d" * 100, 3.0).datagrams[0][1] for _ in range(2000)]
    server_side = server.sessions.get(connection.cid)
    start = time.process_time()
    for datagram in data:
        server.datagram_received(datagram, ("172.16.0.1", 1024), 3.0)
    opened = time.process_time() - start
    start = time.process_time()
    for _ in range(2000):
        server_side.send(b"r" * 100, 3.0)
    sealed = time.process_time() - start
    print(f"100-byte record: open {1e6 * opened / 2000:.1f} us, seal {1e6 * sealed / 2000:.1f} us")

    # memory per idle session: restore N sessions into a fresh table under tracemalloc
    del devices, records, data, restored
    gc.collect()
    rss_before = rss_kib()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    idle = DtlsServer(
        ServerConfig(server_key, rng=FixedRandom("m")), SessionTable(max_sessions=count + 10)
    )
    for index, state in enumerate(states):
        state = dict(state, cid=hashlib.sha256(b"%d" % index).hexdigest()[:16])
        idle.restore(SessionState.from_dict(state), 4.0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss_after = rss_kib()
    print(
        f"idle established session: {(after - before) / count / 1024:.2f} KiB of Python heap "
        f"each (tracemalloc), {(rss_after - rss_before) / count:.2f} KiB RSS growth each"
    )


if __name__ == "__main__":
    main()
