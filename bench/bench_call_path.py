"""CPU per function call through the whole server, in one process, for A/B work.

``bench_api.py`` measures the server from outside, which is the figure that
counts, but on a small shared machine its runs scatter by tens of percent
(neighbours, SMT siblings, scheduling of three processes).  This script puts
the server (``build_cloud``, in-memory store), N virtual devices
(:mod:`twisted_spark.sim`) and C lean keep-alive HTTP clients
(``bench/rawhttp.py``) on one reactor over loopback, runs ``--calls`` calls
of ``POST /v1/devices/<id>/brew``, and prints the process CPU per call: the
server's share plus a device's and a client's, which a change to the
server does not move.  The best of ``--repeat`` rounds is the figure: noise
only ever adds.  ``--profile FILE`` writes a cProfile (thread CPU time) of
the last round, for ``python -m pstats FILE``.  ``--store sqlite`` puts the
store in a scratch SQLite file; ``--by-name`` addresses the devices by their
names (``particle call kettle brew``), and ``--owned N`` gives the caller N
more (offline, named) devices, the account a name is looked up in.

::

    PYTHONPATH=. python bench/bench_call_path.py [--calls 5000] [--clients 16] [--repeat 5] \
        [--store sqlite] [--by-name] [--owned 100]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "tests" / "keys"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOKEN = "ca11ca11ca11ca11ca11ca11ca11ca11ca11ca11"


def device_ids(count):
    return [f"ca{n:022x}" for n in range(count)]


def device_name(device_id: str) -> str:
    return f"bench-{int(device_id, 16) & 0xFFFFFF}"


async def open_store(reactor, kind: str, executors):
    if kind == "memory":
        from twisted_spark.store import MemoryStore

        return MemoryStore()
    import tempfile

    from twisted_spark.store.sqlite import SQLiteStore

    path = Path(tempfile.mkdtemp(prefix="bench-call-path-")) / "spark.sqlite"
    return await SQLiteStore.open(path, reactor=reactor, executor=executors.store)


async def build(reactor, devices: int, store_kind: str = "memory", owned: int = 0):
    """The cloud listening on loopback, and its ``devices`` connected virtual Photons."""
    from Crypto.PublicKey import RSA
    from serving import add_bench_user, started_executors
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.crypto.keys import public_key_der
    from twisted_spark.models import DeviceRecord
    from twisted_spark.sim.device import VirtualDevice, connect_device

    server_key = RSA.import_key((KEYS / "server.pem").read_bytes())
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes())
    settings = Settings()
    executors = started_executors(reactor, settings.rsa_threads)
    store = await open_store(reactor, store_kind, executors)
    await add_bench_user(store, TOKEN)
    for device_id in device_ids(devices + owned):
        await store.put_device(DeviceRecord(
            device_id, owner="bench", name=device_name(device_id),
            public_key=public_key_der(device_key)))
    cloud = build_cloud(settings, reactor=reactor, store=store, server_key=server_key,
                        executors=executors)
    cloud.site.noisy = False
    loopback = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    device_port = await loopback.listen(cloud.devices)
    api_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(cloud.site)
    for device_id in device_ids(devices):
        device = VirtualDevice(device_id, device_key, server_key.public_key(), platform="photon")
        await connect_device(reactor, "127.0.0.1", device_port.getHost().port, device, 30)
    return api_port.getHost().port


async def calls_round(reactor, port: int, devices: int, clients: int, calls: int,
                      by_name: bool = False) -> float:
    """Process CPU seconds for ``calls`` calls made by ``clients`` connections."""
    import rawhttp
    from twisted.internet import defer

    requests = [
        rawhttp.encode_request(
            "POST", f"/v1/devices/{device_name(device_id) if by_name else device_id}/brew",
            {"Host": f"127.0.0.1:{port}", "Authorization": f"Bearer {TOKEN}",
             "Content-Type": "application/x-www-form-urlencoded"},
            b"arg=bench")
        for device_id in device_ids(devices)
    ]
    connections = [await rawhttp.connect(reactor, "127.0.0.1", port) for _ in range(clients)]
    left = [calls]

    async def client(n, connection):
        i = n
        while left[0] > 0:
            left[0] -= 1
            status, body = await connection.request(requests[i % len(requests)])
            i += 1
            if status != 200 or b'"return_value":5' not in body:
                raise SystemExit(f"unexpected answer {status}: {body[:200]!r}")

    started = time.process_time()
    await defer.gatherResults(
        [defer.ensureDeferred(client(n, c)) for n, c in enumerate(connections)])
    spent = time.process_time() - started
    for connection in connections:
        connection.transport.loseConnection()
    return spent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile of the last round here")
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--by-name", action="store_true",
                        help="call the devices by name instead of by id")
    parser.add_argument("--owned", type=int, default=0,
                        help="this many more (offline) devices in the caller's account")
    options = parser.parse_args(argv)

    from twisted.internet import defer, task

    async def run(reactor):
        port = await build(reactor, options.devices, options.store, options.owned)
        by_name = options.by_name
        await calls_round(reactor, port, options.devices, options.clients, 500, by_name)
        rounds = []
        for n in range(options.repeat):
            profile = None
            if options.profile and n == options.repeat - 1:
                profile = cProfile.Profile(time.thread_time)
                profile.enable()
            gc.collect()
            rounds.append(await calls_round(
                reactor, port, options.devices, options.clients, options.calls, by_name))
            if profile is not None:
                profile.disable()
                profile.dump_stats(options.profile)
        per_call = sorted(1000 * spent / options.calls for spent in rounds)
        print(json.dumps({
            "calls": options.calls, "clients": options.clients, "devices": options.devices,
            "store": options.store, "by_name": by_name, "owned": options.owned,
            "cpu_ms_per_call_best": round(per_call[0], 4),
            "cpu_ms_per_call_median": round(per_call[len(per_call) // 2], 4),
            "rounds_ms": [round(x, 4) for x in per_call],
        }))

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
