"""Function-call (or variable-read) round trips through the real HTTP stack.

Three processes, so the measured server shares its CPU with nobody:

* ``server``  – the API (Klein on twisted.web) and the device server, on
  loopback, MemoryStore (``--store sqlite`` or ``postgresql``: the token and
  device lookups of every call go to that database), one pre-made token;
* ``devices`` – N virtual devices (:mod:`twisted_spark.sim`) connected over TCP;
* ``load``    – C concurrent HTTP clients (treq, persistent connections), each
  calling ``POST /v1/devices/<id>/brew`` (``--op variable``: ``GET
  /v1/devices/<id>/temperature``) in a loop, round-robin over devices.

``python bench/bench_api.py`` (the ``run`` command) starts all three, measures
for ``--duration`` seconds after a warm-up, and prints requests per second,
p50/p90/p99 latency and the server's CPU use, in all and per call (from
``/proc/<pid>/stat``, so it counts every thread of the server process).
Run from the repository root::

    PYTHONPATH=. /work/venv/bin/python bench/bench_api.py --devices 10 --concurrency 16

Against a server that is already running (another implementation, to compare on
the same machine): the devices ``be00…00``, ``be00…01``, … must be registered
there with the public key of ``tests/keys/device-1.pem`` and callable with the
token, and the server must hold ``tests/keys/server.pem``::

    python bench/bench_api.py --external-api http://127.0.0.1:8080 \
        --external-device 127.0.0.1:5683 --token TOKEN --server-pid PID[,PID...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "tests" / "keys"
TOKEN = "be0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c"


def device_ids(count):
    return [f"be{n:022x}" for n in range(count)]


# -- server -------------------------------------------------------------------------


def serve(args):
    from Crypto.PublicKey import RSA
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from twisted_spark import heap
    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.crypto.keys import public_key_der
    from twisted_spark.executors import Executors
    from twisted_spark.models import AccessToken, DeviceRecord, User
    from twisted_spark.store import MemoryStore

    if args.nodelay:
        from twisted.internet import tcp

        original = tcp.Server.__init__

        def nodelay_init(self, *a, **kw):
            original(self, *a, **kw)
            self.setTcpNoDelay(True)

        tcp.Server.__init__ = nodelay_init

    server_key = RSA.import_key((KEYS / "server.pem").read_bytes())
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes())
    settings = Settings()

    async def start():
        executors = Executors.threaded(reactor, settings.rsa_threads)
        executors.start()
        reactor.addSystemEventTrigger("before", "shutdown", executors.stop)
        if args.store == "sqlite":
            import tempfile

            from twisted_spark.store.sqlite import SQLiteStore

            path = Path(tempfile.mkdtemp(prefix="bench-api-")) / "spark.sqlite"
            store = await SQLiteStore.open(path, reactor=reactor, executor=executors.store)
        elif args.store == "postgresql":
            from bench_store import scratch_database

            from twisted_spark.store.postgres import PostgresStore

            url, drop = scratch_database(args.postgres)
            reactor.addSystemEventTrigger("after", "shutdown", drop)
            store = await PostgresStore.open(url, reactor, executor=executors.database)
        else:
            store = MemoryStore()
        await store.add_user(User("bench", "x", is_admin=False))
        await store.add_token(AccessToken(TOKEN, "bench", "bench", 0.0, None))
        for device_id in device_ids(args.devices):
            await store.put_device(
                DeviceRecord(device_id, owner="bench", public_key=public_key_der(device_key))
            )
        cloud = build_cloud(
            settings, reactor=reactor, store=store, server_key=server_key, executors=executors
        )
        site = cloud.site
        site.noisy = False
        device_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            cloud.devices
        )
        api_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        if not args.unsettled_heap:
            heap.settle()  # as `serve` and twistd do once the server is up
        print(
            json.dumps({"api": api_port.getHost().port, "device": device_port.getHost().port}),
            flush=True,
        )

    from twisted.internet import defer

    def failed(f):
        print(f"server failed: {f.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.run()


# -- devices -------------------------------------------------------------------------


def devices(args):
    from Crypto.PublicKey import RSA
    from twisted.internet import defer, reactor

    from twisted_spark.sim.device import VirtualDevice, connect_device

    server_key = RSA.import_key((KEYS / "server.pem").read_bytes())
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes())

    async def start():
        connected = []
        for device_id in device_ids(args.devices):
            device = VirtualDevice(
                device_id, device_key, server_key.public_key(), platform="photon"
            )
            connected.append(connect_device(reactor, args.host, args.port, device, 30))
        await defer.gatherResults([defer.ensureDeferred(c) for c in connected])
        print("ready", flush=True)

    def failed(f):
        print(f"devices failed: {f.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.run()


# -- load --------------------------------------------------------------------------------


def load(args):
    import treq
    from twisted.internet import defer, reactor, task
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.concurrency
    pool.retryAutomatically = False
    base = args.url or f"http://127.0.0.1:{args.port}"
    ids = device_ids(args.devices)
    headers = {"Authorization": f"Bearer {args.token}"}
    latencies, errors = [], {}
    window = {}

    if args.client == "raw":
        from urllib.parse import urlsplit

        import rawhttp

        target = urlsplit(base)
        calls = []
        for device in ids:
            common = {"Host": target.netloc, "Authorization": f"Bearer {args.token}"}
            if args.op == "variable":
                calls.append(rawhttp.encode_request(
                    "GET", f"/v1/devices/{device}/temperature", common))
            else:
                calls.append(rawhttp.encode_request(
                    "POST", f"/v1/devices/{device}/brew",
                    {**common, "Content-Type": "application/x-www-form-urlencoded"},
                    b"arg=bench"))
        expected = b'"result":-98765' if args.op == "variable" else b'"return_value":5'

    async def raw_worker(n):
        connection = await rawhttp.connect(reactor, target.hostname, target.port or 80)
        i = n
        while True:
            now = time.perf_counter()
            if now >= window["end"]:
                connection.transport.loseConnection()
                return
            status, body = await connection.request(calls[i % len(calls)])
            i += 1
            done = time.perf_counter()
            if status != 200 or expected not in body:
                errors[status] = errors.get(status, 0) + 1
            elif now >= window["start"]:
                latencies.append(done - now)

    async def worker(n):
        if args.client == "raw":
            return await raw_worker(n)
        i = n
        while True:
            now = time.perf_counter()
            if now >= window["end"]:
                return
            device = ids[i % len(ids)]
            i += 1
            if args.op == "variable":
                url = f"{base}/v1/devices/{device}/temperature"
                response = await treq.get(url, headers=headers, pool=pool)
                expected = b'"result":-98765'
            else:
                url = f"{base}/v1/devices/{device}/brew"
                response = await treq.post(url, data={"arg": "bench"}, headers=headers, pool=pool)
                expected = b'"return_value":5'
            body = await response.content()
            done = time.perf_counter()
            if response.code != 200 or expected not in body:
                errors[response.code] = errors.get(response.code, 0) + 1
            elif now >= window["start"]:
                latencies.append(done - now)

    cpu = {}

    def sample(key):
        cpu[key] = (
            cpu_seconds(args.server_pid) if args.server_pid else 0.0,
            cpu_seconds("self"),
            cpu_seconds(args.devices_pid) if args.devices_pid else 0.0,
        )

    async def main(_reactor):
        start = time.perf_counter()
        window["start"] = start + args.warmup
        window["end"] = window["start"] + args.duration
        reactor.callLater(args.warmup, sample, "start")
        reactor.callLater(args.warmup + args.duration, sample, "end")
        await defer.gatherResults(
            [defer.ensureDeferred(worker(n)) for n in range(args.concurrency)]
        )
        if "end" not in cpu:  # the last worker finished before the end timer ran
            sample("end")
        await pool.closeCachedConnections()
        latencies.sort()

        def pct(p):
            return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

        print(
            json.dumps(
                {
                    "requests": len(latencies),
                    "seconds": args.duration,
                    "rps": len(latencies) / args.duration,
                    "p50_ms": pct(50),
                    "p90_ms": pct(90),
                    "p99_ms": pct(99),
                    "max_ms": latencies[-1] * 1000,
                    "errors": errors,
                    "server_cpu_percent": 100 * (cpu["end"][0] - cpu["start"][0]) / args.duration,
                    "server_cpu_ms_per_call": 1000 * (cpu["end"][0] - cpu["start"][0])
                    / max(len(latencies), 1),
                    "load_cpu_percent": 100 * (cpu["end"][1] - cpu["start"][1]) / args.duration,
                    "devices_cpu_percent": 100 * (cpu["end"][2] - cpu["start"][2]) / args.duration,
                }
            ),
            flush=True,
        )

    task.react(main)


# -- orchestration -----------------------------------------------------------------------


def stat_cpu_ticks(stat):
    """utime + stime, in clock ticks, of one ``/proc/<pid>/stat`` line (all threads)."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def parse_pids(text):
    """``"12,34"`` -> ``[12, 34]``; None or empty -> ``[]``."""
    return [int(p) for p in (text or "").replace(" ", "").split(",") if p]


def cpu_seconds(pids):
    """CPU seconds (user + system, every thread) of a process, or the sum over several.

    :param pids: ``"self"``, a pid, or a comma-separated list such as ``"12,34"``.
    """
    pids = ["self"] if pids == "self" else parse_pids(str(pids))
    ticks = sum(stat_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) for pid in pids)
    return ticks / os.sysconf("SC_CLK_TCK")


def split_hostport(text):
    """``"127.0.0.1:5683"`` -> ``("127.0.0.1", 5683)``."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def run(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    me = [sys.executable, str(Path(__file__).resolve())]
    procs = []
    try:
        if args.external_api:
            url, server_pid = args.external_api.rstrip("/"), args.server_pid
            device_host, device_port = split_hostport(args.external_device)
        else:
            server = subprocess.Popen(
                me
                + ["server", "--devices", str(args.devices), "--store", args.store,
               *(["--unsettled-heap"] if args.unsettled_heap else []),
                   "--postgres", args.postgres]
                + (["--nodelay"] if args.nodelay else []),
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            procs.append(server)
            ports = json.loads(server.stdout.readline())
            url, server_pid = f"http://127.0.0.1:{ports['api']}", str(server.pid)
            device_host, device_port = "127.0.0.1", ports["device"]
        fleet = subprocess.Popen(
            me + ["devices", "--devices", str(args.devices), "--host", device_host,
                  "--port", str(device_port)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        procs.append(fleet)
        if fleet.stdout.readline().strip() != "ready":
            raise SystemExit("virtual devices did not connect")
        out = subprocess.run(
            me
            + [
                "load",
                "--url",
                url,
                "--token",
                args.token,
                "--devices",
                str(args.devices),
                "--concurrency",
                str(args.concurrency),
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
                "--op",
                args.op,
                "--client",
                args.client,
                *(["--server-pid", server_pid] if server_pid else []),
                "--devices-pid",
                str(fleet.pid),
            ],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result.update(devices=args.devices, concurrency=args.concurrency, cpus=os.cpu_count())
        print(json.dumps(result, indent=2))
        where = f"external server {url}" if args.external_api else f"{args.store} store"
        print(
            f"\n{where}, {args.devices} virtual devices, "
            f"{args.concurrency} concurrent HTTP clients, "
            f"{args.duration:.0f} s: {result['rps']:.0f} {args.op} calls/s, "
            f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
            f"server CPU {result['server_cpu_percent']:.0f}% "
            f"({result['server_cpu_ms_per_call']:.3f} ms per call), "
            f"load generator CPU {result['load_cpu_percent']:.0f}%, "
            f"devices CPU {result['devices_cpu_percent']:.0f}%, errors {result['errors'] or 0}"
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", nargs="?", default="run", choices=["run", "server", "devices", "load"]
    )
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--port", type=int)
    parser.add_argument("--host", default="127.0.0.1", help="(devices) the device server's host")
    parser.add_argument("--url", help="(load) the API's base URL (default: 127.0.0.1:--port)")
    parser.add_argument("--token", default=TOKEN, help="the access token the load calls with")
    parser.add_argument("--external-api", metavar="URL",
                        help="measure the server already running at this API base URL "
                             "instead of starting ours (needs --external-device)")
    parser.add_argument("--external-device", metavar="HOST:PORT",
                        help="(--external-api) its device server")
    parser.add_argument("--server-pid", help="sample the CPU of this process (all threads), "
                        "or the sum of several: PID,PID...")
    parser.add_argument("--devices-pid", type=int, help="(load) sample this process's CPU")
    parser.add_argument("--store", choices=["memory", "sqlite", "postgresql"], default="memory")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="(--store postgresql) where to create the scratch database")
    parser.add_argument("--op", choices=["function", "variable"], default="function",
                        help="POST /v1/devices/<id>/brew, or GET .../temperature")
    parser.add_argument("--nodelay", action="store_true", help="(server) TCP_NODELAY on sockets")
    parser.add_argument("--unsettled-heap", action="store_true",
                        help="(server) leave the garbage collector as CPython sets it "
                             "(twisted_spark.heap.settle is what the real server does)")
    parser.add_argument("--client", choices=["raw", "treq"], default="raw",
                        help="(load) bench/rawhttp.py's lean keep-alive client, or treq")
    args = parser.parse_args(argv)
    if args.external_api and not args.external_device:
        parser.error("--external-api needs --external-device HOST:PORT")
    {"run": run, "server": serve, "devices": devices, "load": load}[args.command](args)


if __name__ == "__main__":
    main()
