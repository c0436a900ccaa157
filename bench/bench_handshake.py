"""Handshake throughput and CPU cost of the device server.

Runs the composition root's device server (RSA in its thread pool, in-memory store)
in this process on 127.0.0.1, and a load generator of virtual devices in a
SEPARATE process (``--client``), so the two do not share a GIL.  Reports:

* handshakes/s for a burst of N devices (first connect to last one online),
* server CPU ms per handshake (process CPU time of the server, all threads),
* the single-handshake server-side RSA cost measured in isolation.

Usage::

    PYTHONPATH=. python bench/bench_handshake.py [--count 500] [--threads 2] \
        [--no-describe] [--store sqlite] [--reconnect] [--platform photon]

Against a server already running (another implementation, on the same machine):
it must hold ``tests/keys/server.pem`` and have the public key of
``tests/keys/device-1.pem`` registered for the ids ``device_id(0..count-1)``::

    PYTHONPATH=. python bench/bench_handshake.py --external 127.0.0.1:5683 \
        --server-pid PID[,PID...] --count 1000 --platform photon

There the burst is timed by the load generator (first connect to the last server
Hello) and the server CPU read from ``/proc/<pid>/stat`` around it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "tests" / "keys"
sys.path.insert(0, str(ROOT))


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def device_id(i):
    return f"be{i:022x}"


# -- load generator (separate process) ---------------------------------------------


def client_main(host, port, count, concurrency, hold, platform="core"):
    """Connect ``count`` devices; print one JSON line with timings and own CPU."""
    from Crypto.PublicKey import RSA
    from twisted.internet import defer, task

    from twisted_spark.sim.fleet import Fleet, make_factory

    raise_fd_limit()
    key = RSA.import_key((KEYS / "device-1.pem").read_bytes())
    server_public = RSA.import_key((KEYS / "server.pub.pem").read_bytes())
    keys = [(device_id(i), key) for i in range(count)]

    async def run(reactor):
        fleet = Fleet(
            reactor,
            host,
            port,
            make_factory(server_public, keys, platform, reactor),
            count,
            concurrency,
        )
        started, cpu0 = time.perf_counter(), time.process_time()
        online = await fleet.connect_all(timeout=120)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
        print(
            json.dumps({"online": len(online), "seconds": elapsed, "cpu": cpu,
                        "failures": fleet.failures[:3]}),
            flush=True,
        )
        if hold:
            sys.stdin.readline()  # parent says when to let go
        fleet.disconnect_all()
        await task.deferLater(reactor, 0.5, lambda: None)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


# -- server side -----------------------------------------------------------------------


async def open_store(reactor, kind, count):
    """A store with ``count`` devices registered: in memory, or a real SQLite file."""
    from Crypto.PublicKey import RSA

    from twisted_spark.crypto.keys import public_key_der
    from twisted_spark.models import DeviceRecord
    from twisted_spark.store.memory import MemoryStore
    from twisted_spark.store.sqlite import SQLiteStore

    device_der = public_key_der(RSA.import_key((KEYS / "device-1.pem").read_bytes()))
    if kind == "sqlite":
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="bench-handshake-")) / "spark.sqlite"
        store = await SQLiteStore.open(path, reactor=reactor)
    else:
        store = MemoryStore()
    for i in range(count):
        await store.put_device(DeviceRecord(device_id(i), public_key=device_der))
    return store


def start_server(reactor, threads, store, describe_on_connect=False):
    """The composition root's device server on an ephemeral port, keys in ``store``.

    Returns ``(cloud, listening)``; ``cloud.devices`` is the protocol factory.
    """
    from Crypto.PublicKey import RSA
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.executors import Executors

    server_key = RSA.import_key((KEYS / "server.pem").read_bytes())
    # A burst of N connections measures throughput, not admission control: the
    # default --max-pending-handshakes (200) would refuse most of a 500 burst.
    settings = Settings(rsa_threads=threads, max_pending_handshakes=100_000)
    executors = Executors.threaded(reactor, threads)
    executors.start()
    cloud = build_cloud(
        settings, reactor=reactor, store=store, server_key=server_key, executors=executors,
        describe_on_connect=describe_on_connect,
    )
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1", backlog=1024)
    return cloud, endpoint.listen(cloud.devices)


def rsa_cost(repeat=200):
    """Server-side private-key work of one handshake, in ms (single thread)."""
    from Crypto.PublicKey import RSA

    from twisted_spark.crypto.handshake import (
        build_session_blob,
        decrypt_identity,
        encrypt_identity,
    )
    from twisted_spark.crypto.keys import openssl_private_key

    server_pycryptodome = RSA.import_key((KEYS / "server.pem").read_bytes())
    server_key = openssl_private_key(server_pycryptodome)  # as the device server holds it
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes()).public_key()
    nonce = os.urandom(40)
    blob = encrypt_identity(server_pycryptodome.public_key(), nonce, device_id(0))
    started = time.process_time()
    for _ in range(repeat):
        decrypt_identity(server_key, blob, nonce)
        build_session_blob(server_key, device_key)
    return (time.process_time() - started) * 1000 / repeat


def client_command(address, args, hold=False):
    """The argv of the load generator process for a burst against ``address``."""
    return [
        sys.executable, __file__, "--client", address, "--count", str(args.count),
        "--concurrency", str(args.concurrency), "--platform", args.platform,
    ] + (["--hold"] if hold else [])


def external_burst(args):
    """One burst against the server at ``args.external``; CPU from ``--server-pid``."""
    from bench_api import cpu_seconds

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cpu0 = cpu_seconds(args.server_pid) if args.server_pid else 0.0
    # --hold: the devices stay connected until the server's CPU has been read.
    proc = subprocess.Popen(client_command(args.external, args, hold=True),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    report = json.loads(proc.stdout.readline() or "{}")
    cpu = (cpu_seconds(args.server_pid) - cpu0) if args.server_pid else float("nan")
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait()
    online, seconds = report.get("online", 0), report.get("seconds", 0) or 1e-9
    print(f"devices online: {online}/{args.count} ({args.platform}), "
          f"failures {report.get('failures')}")
    print(f"burst: {online / seconds:.0f} handshakes/s over {seconds:.2f} s (client-measured)")
    print(f"server CPU: {cpu * 1000 / max(online, 1):.2f} ms per handshake "
          f"(pids {args.server_pid}, all threads)")
    print(f"load generator CPU: {report.get('cpu', 0) * 1000 / max(online, 1):.2f} ms "
          f"per handshake")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--no-describe", dest="describe", action="store_false",
                        help="skip the Describe after each Hello (the real server "
                             "always asks for it, as the Node server does)")
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory",
                        help="where device keys are looked up")
    parser.add_argument("--reconnect", action="store_true",
                        help="measure the second burst: devices coming back within a minute, "
                             "their stored attributes unchanged")
    parser.add_argument("--platform", choices=("core", "photon"), default="core",
                        help="the virtual devices' kind; a photon sends its public key "
                             "in the handshake")
    parser.add_argument("--external", metavar="HOST:PORT",
                        help="measure the device server already running there instead of ours")
    parser.add_argument("--server-pid",
                        help="(--external) its process: PID, or PID,PID... to add up")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        host, port = args.client.rsplit(":", 1)
        client_main(host, int(port), args.count, args.concurrency, args.hold, args.platform)
        return
    raise_fd_limit()
    if args.external:
        external_burst(args)
        return
    cost = rsa_cost()
    print(f"server RSA work per handshake (1 thread, isolated): {cost:.2f} ms CPU")
    sys.path.insert(0, str(ROOT / "bench"))
    from serving import log_like_serve

    log_like_serve()

    from twisted.internet import defer, reactor, task, threads

    async def burst(reactor, factory, port):
        """One client process connects every device; returns what the server saw."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cpu0 = time.process_time()
        proc = subprocess.Popen(
            client_command(f"127.0.0.1:{port}", args),
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        first = [None]
        started = time.perf_counter()
        while len(factory.registry) < args.count and proc.poll() is None:
            if first[0] is None and factory.connections:
                first[0] = time.perf_counter()
            await task.deferLater(reactor, 0.002, lambda: None)
        done = time.perf_counter()
        cpu = time.process_time() - cpu0
        online = len(factory.registry)
        report = json.loads(await threads.deferToThread(proc.stdout.readline) or "{}")
        await threads.deferToThread(proc.wait)
        return online, done - (first[0] or started), cpu, report

    async def run(reactor):
        store = await open_store(reactor, args.store, args.count)
        cloud, listening = start_server(reactor, args.threads, store, args.describe)
        factory = cloud.devices
        port = (await listening).getHost().port
        from twisted_spark import heap

        heap.settle()  # as `serve` and twistd do once the server is up
        if args.reconnect:
            await burst(reactor, factory, port)
            while len(factory.registry) or factory.connections:
                await task.deferLater(reactor, 0.01, lambda: None)
            # The store works in order: this read waits for the offline writes.
            await store.get_device(device_id(0))
            print("(first burst done; measuring the devices' reconnection)")
        online, window, cpu, report = await burst(reactor, factory, port)
        print(f"devices online: {online}/{args.count} (client saw {report.get('online')})")
        print(
            f"burst: {online / window:.0f} handshakes/s over {window:.2f} s "
            f"(client-measured {report.get('seconds', 0):.2f} s: "
            f"{report.get('online', 0) / (report.get('seconds') or 1e-9):.0f}/s)"
        )
        print(
            f"server CPU: {cpu * 1000 / max(online, 1):.2f} ms per handshake "
            f"(all threads, incl. framing/Hello/registry)"
        )
        print(f"load generator CPU: {report.get('cpu', 0) * 1000 / max(online, 1):.2f} ms "
              f"per handshake")
        (await listening).stopListening()
        await cloud.stop()

    task.react(lambda r: defer.ensureDeferred(run(r)))
    del reactor


if __name__ == "__main__":
    main()
