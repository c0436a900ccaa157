"""Per-operation latency of the stores: SQLite against PostgreSQL.

For each store, on the global reactor as the server runs it (SQLite on its
one thread, PostgreSQL on the 4-thread ``database`` executor):

* **sequential**: one call at a time, ``--count`` times each, p50/p99 in ms
  of ``get_token``, ``get_device``, ``add_token`` (creating a token) and
  ``update_device`` (a device's ``last_heard`` when it talks);
* **concurrent**: ``--concurrency`` calls in flight, operations per second.

The store is filled with ``--devices`` devices and as many tokens first.
PostgreSQL runs in a database of its own, created and dropped here, on the
server named by ``--postgres`` (default: user postgres on 127.0.0.1:5432)::

    PYTHONPATH=. python bench/bench_store.py --count 2000

For the whole server on PostgreSQL, ``bench_api.py --store postgresql``
runs the HTTP benchmark with the token and device lookups on it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OPERATIONS = ("get_token", "get_device", "add_token", "update_device")


def operation(store, name, n, devices):
    """The Deferred of call ``n`` of operation ``name``."""
    if name == "get_token":
        return store.get_token(f"{n % devices:040x}")
    if name == "get_device":
        return store.get_device(f"{n % devices:024x}")
    if name == "add_token":
        from twisted_spark.models import AccessToken

        return store.add_token(AccessToken(secrets.token_hex(20), "bench", "cli", time.time()))
    return store.update_device(f"{n % devices:024x}", last_heard=time.time())


async def fill(store, devices):
    from twisted_spark.models import AccessToken, DeviceRecord, User

    await store.add_user(User("bench", "x"))
    for n in range(devices):
        await store.add_token(AccessToken(f"{n:040x}", "bench", "cli", 0.0))
        await store.put_device(DeviceRecord(f"{n:024x}", owner="bench", name=f"d{n}",
                                            functions=("brew",), variables={"v": "int32"}))


async def measure(store, args):
    """{operation: (p50 ms, p99 ms, concurrent ops/s)}."""
    from twisted.internet import defer

    results = {}
    for name in OPERATIONS:
        latencies = []
        for n in range(args.count):
            started = time.perf_counter()
            await operation(store, name, n, args.devices)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        started = time.perf_counter()
        done = 0

        async def worker(first, name=name):
            nonlocal done
            for n in range(first, args.count, args.concurrency):
                await operation(store, name, n, args.devices)
                done += 1

        await defer.gatherResults([defer.ensureDeferred(worker(k))
                                   for k in range(args.concurrency)])
        results[name] = (p50, p99, done / (time.perf_counter() - started))
    return results


async def open_store(reactor, kind, url):
    if kind == "sqlite":
        from twisted_spark.store.sqlite import SQLiteStore

        path = Path(tempfile.mkdtemp(prefix="bench-store-")) / "spark.sqlite"
        return await SQLiteStore.open(path, reactor=reactor)
    from twisted_spark.store.postgres import PostgresStore

    return await PostgresStore.open(url, reactor)


def scratch_database(admin_url):
    """Create an empty database next to ``admin_url``'s: ``(its URL, drop())``."""
    import psycopg

    name = f"ts_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}")), drop


async def main(reactor, args):
    url, drop = scratch_database(args.postgres)
    try:
        print(f"{args.count} calls per operation one at a time, then {args.concurrency} in "
              f"flight; {args.devices} devices and tokens; Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs")
        print(f"{'store':<11}{'operation':<15}{'p50 ms':>8}{'p99 ms':>8}{'ops/s':>9}")
        for kind in args.stores:
            store = await open_store(reactor, kind, url)
            try:
                await fill(store, args.devices)
                for op, (p50, p99, rate) in (await measure(store, args)).items():
                    print(f"{kind:<11}{op:<15}{p50:>8.3f}{p99:>8.3f}{rate:>9.0f}", flush=True)
            finally:
                await store.close()
    finally:
        drop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="calls per operation")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "postgresql"],
                        default=["sqlite", "postgresql"])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a server and database where CREATE DATABASE is allowed")
    arguments = parser.parse_args()

    from twisted.internet import defer, task

    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
