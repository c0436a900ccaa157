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

    PYTHONPATH=. python bench/bench_api.py --devices 10 --concurrency 16

Against a server that is already running (another implementation, to compare on
the same machine): the devices ``be00…00``, ``be00…01``, … must be registered
there with the public key of ``tests/keys/device-1.pem`` and callable with the
token, and the server must hold ``tests/keys/server.pem``::

    python bench/bench_api.py --external-api http://127.0.0.1:8080 \
        --external-device 127.0.0.1:5683 --token TOKEN --server-pid PID[,PID...]

``--idle N`` (issue 17: "10 000 devices held in one process") adds a fourth
process, ``fleet``: N more virtual devices that connect and stay idle, each
pinging after ``--keepalive`` seconds of silence as the firmware does (15 s)
plus up to ``--keepalive-jitter`` (1 s), while the server pings and
idle-checks them.  (Without the jitter, one process answered together drifts
into lock-step: its pings go out in clumps of up to ~200 per reactor pass,
which devices on their own do not do; the fleet reports its clump sizes.)
The fleet also sends at most ``--fleet-pace`` pings per millisecond (2), so
that a backlog it finds after being kept off the CPU goes out spread.
The run then measures the load in the same server in ``--rounds`` rounds,
each first with no fleet (the idle-server figure), then with the fleet
connected, and prints the ratio of the p99s over all rounds' calls pooled,
and each round's.  ``--fleet-priority
idle`` runs the fleet under ``SCHED_IDLE``, standing for devices on other
machines; ``--fleet-server separate`` is the control (the same fleet held by
a second server process, so the measured one does none of its work); and
``--pin`` gives the server CPU 0 and every load process CPU 1.  After each
round the fleet disconnects and the server reports its memory (in detail
after the first): RSS, ``gc`` object counts by type (growth from before the
fleet), and RSS after ``malloc_trim(0)`` (what glibc's allocator gives
back), with ``--tracemalloc`` also the top allocation sites still held
(tracemalloc slows the server: take latencies without it)::

    PYTHONPATH=. python bench/bench_api.py --devices 1 --concurrency 1 \
        --idle 10000 --duration 20
    PYTHONPATH=. python bench/bench_api.py --devices 1 --concurrency 1 \
        --idle 10000 --duration 5 --tracemalloc
    PYTHONPATH=. python bench/bench_api.py --devices 1 --concurrency 1 \\
        --idle 10000 --duration 5 --rounds 5     # RSS over repeated fleets

On a machine shared with background work (fuzzers under ``SCHED_IDLE``, say)
give the run a scheduling autogroup of its own with a high priority, e.g.
``setsid bash -c 'echo -20 > /proc/self/autogroup && exec "$@"' - <command>``
(as root): autogroups share the CPU fairly, so otherwise the background's
group takes half of it despite its policy.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "tests" / "keys"
TOKEN = "be0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c"


def device_ids(count):
    return [f"be{n:022x}" for n in range(count)]


def idle_ids(count):
    return [f"bf{n:022x}" for n in range(count)]


def raise_fd_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid="self"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def type_counts():
    counts = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    return counts


class Inspector:
    """The server's answers to ``stats`` / ``trim`` / ``snapshot`` lines on stdin."""

    def __init__(self, reactor, cloud, tracing):
        self.reactor = reactor
        self.cloud = cloud
        self.tracing = tracing
        self.base_types = None
        self.base_snapshot = None
        # Where the time goes between two stats: garbage collections by
        # generation, and how late a 10 ms timer runs (the event loop's lag).
        self.gc_ms = {0: [], 1: [], 2: []}
        self.lags = []
        self._gc_started = 0.0
        gc.callbacks.append(self._gc)
        from twisted.internet import task

        self._tick_at = time.perf_counter()
        task.LoopingCall(self._tick).start(0.01, now=False)

    def _gc(self, phase, info):
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_ms[info["generation"]].append((time.perf_counter() - self._gc_started) * 1e3)

    def _tick(self):
        now = time.perf_counter()
        self.lags.append((now - self._tick_at - 0.01) * 1e3)
        self._tick_at = now

    def timing(self):
        """The GC and loop-lag summary since the previous call (then reset)."""
        lags = sorted(self.lags)
        out = {
            "gc": {f"gen{g}": {"count": len(v), "total_ms": round(sum(v), 1),
                               "max_ms": round(max(v, default=0), 1)}
                   for g, v in self.gc_ms.items()},
            "loop_lag_ms": {"p50": round(lags[len(lags) // 2], 2) if lags else None,
                            "p99": round(lags[int(len(lags) * 0.99)], 2) if lags else None,
                            "max": round(lags[-1], 2) if lags else None,
                            "over_10ms": sum(1 for v in lags if v > 10)},
        }
        self.gc_ms = {0: [], 1: [], 2: []}
        self.lags = []
        return out

    def command(self, line):
        import ctypes
        import tracemalloc

        word = line.strip()
        out = {"command": word, "since_last": self.timing()}
        gc.collect()
        if word == "trim":
            before = rss_kib()
            libc = ctypes.CDLL("libc.so.6")
            out["malloc_trim_returned"] = libc.malloc_trim(0)
            out["rss_before_trim_kib"] = before
        out["rss_kib"] = rss_kib()
        out["online"] = len(self.cloud.devices.registry)
        out["connections"] = len(self.cloud.devices.connections)
        out["delayed_calls"] = len(self.reactor.getDelayedCalls())
        counts = type_counts()
        out["gc_objects"] = sum(counts.values())
        if word == "held":
            self.marked = {id(o) for o in gc.get_objects()}
        elif word == "busy" and getattr(self, "marked", None) is not None:
            # Objects that reached the old generation during the measurement
            # and are still alive: what keeps full collections coming.
            promoted = {}
            for obj in gc.get_objects(generation=2):
                if id(obj) not in self.marked:
                    name = type(obj).__qualname__
                    promoted[name] = promoted.get(name, 0) + 1
            out["promoted_alive"] = dict(sorted(promoted.items(), key=lambda kv: -kv[1])[:10])
            self.marked = None
        if word == "base":
            self.base_types = counts
            if self.tracing:
                self.base_snapshot = tracemalloc.take_snapshot()
        elif self.base_types is not None:
            grown = {k: v - self.base_types.get(k, 0) for k, v in counts.items()}
            out["gc_growth_by_type"] = dict(
                sorted(((k, v) for k, v in grown.items() if v), key=lambda kv: -abs(kv[1]))[:12]
            )
            out["gc_objects_growth"] = out["gc_objects"] - sum(self.base_types.values())
            if self.tracing and self.base_snapshot is not None:
                snap = tracemalloc.take_snapshot()
                diff = snap.compare_to(self.base_snapshot, "lineno")
                out["tracemalloc_growth_kib"] = round(
                    sum(d.size_diff for d in diff) / 1024, 1)
                out["tracemalloc_top"] = [
                    f"{d.size_diff / 1024:+.1f} KiB {d.count_diff:+d} blocks "
                    f"{d.traceback[0].filename.rsplit('/', 2)[-1]}:{d.traceback[0].lineno}"
                    for d in diff[:8]
                ]
        # This command's own collection and heap scans stop the reactor for
        # up to ~100 ms with a fleet held: they belong to no measured window.
        self.timing()
        self._tick_at = time.perf_counter()
        print(json.dumps(out), flush=True)


# -- server -------------------------------------------------------------------------


def serve(args):
    from Crypto.PublicKey import RSA
    from serving import (
        add_bench_user,
        log_like_serve,
        nodelay_on_accepted_sockets,
        started_executors,
    )
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from twisted_spark import heap
    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.crypto.keys import public_key_der
    from twisted_spark.models import DeviceRecord
    from twisted_spark.store import MemoryStore

    if args.nodelay:
        nodelay_on_accepted_sockets()

    raise_fd_limit()
    log_like_serve()
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
    server_key = RSA.import_key((KEYS / "server.pem").read_bytes())
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes())
    # The idle fleet connects as one burst: admission control is not measured here.
    settings = Settings(max_pending_handshakes=100_000) if args.idle else Settings()

    async def start():
        executors = started_executors(reactor, settings.rsa_threads)
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
        await add_bench_user(store, TOKEN)
        for device_id in device_ids(args.devices) + idle_ids(args.idle):
            await store.put_device(
                DeviceRecord(device_id, owner="bench", public_key=public_key_der(device_key))
            )
        cloud = build_cloud(
            settings, reactor=reactor, store=store, server_key=server_key, executors=executors
        )
        site = cloud.site
        site.noisy = False
        device_port = await TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.1", backlog=1024
        ).listen(
            cloud.devices
        )
        api_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        if not args.unsettled_heap:
            heap.settle()  # as `serve` and twistd do once the server is up
        print(
            json.dumps({"api": api_port.getHost().port, "device": device_port.getHost().port}),
            flush=True,
        )
        if args.idle:
            from twisted.internet import stdio
            from twisted.protocols.basic import LineReceiver

            inspector = Inspector(reactor, cloud, args.tracemalloc)

            class Control(LineReceiver):
                delimiter = b"\n"

                def lineReceived(self, line):
                    inspector.command(line.decode())

            stdio.StandardIO(Control(), reactor=reactor)

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


def fleet(args):
    """``--idle`` devices that connect, then idle with keep-alive pings until stdin says go."""
    from Crypto.PublicKey import RSA
    from twisted.internet import defer, reactor, stdio, task
    from twisted.protocols.basic import LineReceiver

    from twisted_spark.sim.device import VirtualDevice
    from twisted_spark.sim.fleet import Fleet, make_factory

    raise_fd_limit()
    server_key = RSA.import_key((KEYS / "server.pem").read_bytes())
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes())
    keys = [(device_id, device_key) for device_id in idle_ids(args.idle)]
    held = Fleet(
        reactor, "127.0.0.1", args.port,
        make_factory(server_key.public_key(), keys, "photon", reactor, keepalive=args.keepalive,
                     keepalive_jitter=keepalive_jitter(args.keepalive_jitter)),
        args.idle, concurrency=200,
    )
    release = defer.Deferred()
    clumps = count_pings_per_pass(reactor, VirtualDevice)
    if args.fleet_pace:
        pace_pings(reactor, VirtualDevice, args.fleet_pace)

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line):
            if not release.called:
                release.callback(None)

    async def main(_reactor):
        stdio.StandardIO(Control(), reactor=reactor)
        started = time.perf_counter()
        online = await held.connect_all(timeout=120)
        print(json.dumps({"online": len(online), "seconds": time.perf_counter() - started,
                          "failures": held.failures[:3]}), flush=True)
        await release
        still = sum(1 for d in held.devices if d._state == "framed")
        held.disconnect_all()
        await task.deferLater(reactor, 1.0, lambda: None)
        print(json.dumps({"still_online": still, "pings_per_pass": clumps()}), flush=True)

    task.react(lambda r: defer.ensureDeferred(main(r)))


def keepalive_jitter(seconds):
    """Extra seconds for each keep-alive wait, uniform in [0, ``seconds``), or None."""
    import random

    if not seconds:
        return None
    rng = random.Random(17)
    return lambda: rng.uniform(0.0, seconds)


def pace_pings(reactor, device_class, per_ms):
    """Send the fleet's keep-alive pings at most ``per_ms`` per millisecond.

    A fleet process kept from the CPU (at idle priority, while a load
    process starts, say) finds hundreds of pings due at once when it runs
    again and would send them in one pass; devices on machines of their own
    have no such common stall.  Queued pings go out on a 1 ms tick instead.
    """
    from collections import deque

    from twisted.internet import defer, task

    ping, queue = device_class.ping, deque()

    def send():
        for _ in range(min(per_ms, len(queue))):
            device = queue.popleft()
            if device._state == "framed":
                ping(device).addErrback(lambda f: None)

    def paced_ping(self):
        queue.append(self)
        return defer.succeed(None)

    device_class.ping = paced_ping
    tick = task.LoopingCall(send)
    tick.clock = reactor
    tick.start(0.001, now=False)


def count_pings_per_pass(reactor, device_class):
    """Count the keep-alive pings the fleet sends in each pass of its reactor.

    One process stands for many devices: what its timers find due in one
    pass goes out together, a clump the server handles back to back (devices
    on their own would ping independently).  Returns a function giving the
    share of pings sent in clumps of each size so far.
    """
    sent = [0]
    clumps = {}
    ping, run = device_class.ping, reactor.runUntilCurrent

    def counted_ping(self):
        sent[0] += 1
        return ping(self)

    def counted_run():
        before = sent[0]
        run()
        if sent[0] > before:
            clumps[sent[0] - before] = clumps.get(sent[0] - before, 0) + 1

    device_class.ping = counted_ping
    reactor.runUntilCurrent = counted_run

    def report():
        total = sum(size * n for size, n in clumps.items()) or 1
        share = {}
        for size, n in sorted(clumps.items()):
            band = "1" if size == 1 else "2-4" if size < 5 else "5-19" if size < 20 else "20+"
            share[band] = share.get(band, 0) + size * n / total
        return {"pings": sum(size * n for size, n in clumps.items()),
                "largest": max(clumps, default=0),
                "share_by_clump_size": {k: round(v, 3) for k, v in share.items()}}

    return report


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
        if args.latencies:
            Path(args.latencies).write_bytes(array.array("d", latencies).tobytes())
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


def run_idle(args):
    """The ``--idle`` run: rounds of (no fleet, fleet held), then memory.

    One client's p99 near half a millisecond moves by tens of per cent between
    two runs of the same code on a shared 2-core machine, more than the effect
    measured.  So the two conditions alternate within one server, ``--rounds``
    times, and the verdict is the ratio of the pooled p99s (every call of
    every round), with each round's own ratio beside it.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    me = [sys.executable, str(Path(__file__).resolve())]
    procs = []
    scratch = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    if args.pin:
        os.sched_setaffinity(0, {1})  # inherited by every process started below

    def ask(proc, line):
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    def measure(ports, server, fleet_pid, name):
        dump = scratch / name
        out = subprocess.run(
            me + ["load", "--port", str(ports["api"]), "--devices", str(args.devices),
                  "--concurrency", str(args.concurrency), "--duration", str(args.duration),
                  "--warmup", str(args.warmup), "--op", args.op,
                  "--server-pid", str(server.pid), "--latencies", str(dump)]
            + (["--devices-pid", str(fleet_pid)] if fleet_pid else []),
            stdout=subprocess.PIPE, env=env, text=True, check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["latencies"] = read_latencies(dump)
        return result

    def brief(r):
        return (f"{r['rps']:.0f} calls/s, p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms, server CPU "
                f"{r['server_cpu_percent']:.0f}% ({r['server_cpu_ms_per_call']:.3f} ms/call), "
                f"fleet CPU {r['devices_cpu_percent']:.0f}%, errors {r['errors'] or 0}")

    def start_fleet():
        fleet = subprocess.Popen(
            me + ["fleet", "--idle", str(args.idle), "--port", str(fleet_ports["device"]),
                  "--keepalive", str(args.keepalive),
                  "--keepalive-jitter", str(args.keepalive_jitter),
                  "--fleet-pace", str(args.fleet_pace)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        procs.append(fleet)
        if args.fleet_priority == "idle":
            # The fleet stands for devices on other machines: on this one it
            # takes only CPU time that nothing else wants.
            os.sched_setscheduler(fleet.pid, os.SCHED_IDLE, os.sched_param(0))
        return fleet, json.loads(fleet.stdout.readline())

    def release(fleet):
        fleet.stdin.write("\n")
        fleet.stdin.flush()
        said = json.loads(fleet.stdout.readline())
        still = said["still_online"]
        print(f"  fleet pings: {said['pings_per_pass']}", flush=True)
        left_at = time.perf_counter()
        while True:
            gone = ask(holder, "gone")
            if gone["connections"] <= stay or time.perf_counter() > left_at + 60:
                break
            time.sleep(0.5)
        fleet.wait(10)
        return still, gone, time.perf_counter() - left_at

    try:
        server = subprocess.Popen(
            me + ["server", "--devices", str(args.devices), "--idle", str(args.idle),
                  "--store", args.store]
            + (["--tracemalloc"] if args.tracemalloc else [])
            + (["--unsettled-heap"] if args.unsettled_heap else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        procs.append(server)
        if args.pin:
            # The server gets a core of its own; this script and every load
            # process it starts (clients, devices, fleet) share the other.
            os.sched_setaffinity(server.pid, {0})
        ports = json.loads(server.stdout.readline())
        holder, fleet_ports, stay = server, ports, args.devices
        if args.fleet_server == "separate":
            # The control experiment: the same fleet and traffic on this
            # machine, held by another server process, so the measured server
            # does none of its work.
            holder = subprocess.Popen(
                me + ["server", "--devices", "0", "--idle", str(args.idle)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
            )
            procs.append(holder)
            fleet_ports, stay = json.loads(holder.stdout.readline()), 0
            ask(holder, "pre")
        callers = subprocess.Popen(
            me + ["devices", "--devices", str(args.devices), "--port", str(ports["device"])],
            stdout=subprocess.PIPE, env=env, text=True,
        )
        procs.append(callers)
        if callers.stdout.readline().strip() != "ready":
            raise SystemExit("virtual devices did not connect")
        ask(server, "pre")
        pooled = {"without": [], "with": []}
        ratios = []
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no} of {args.rounds}", flush=True)
            idle = measure(ports, server, None, f"without-{round_no}")
            print(f"  no idle fleet:      {brief(idle)}", flush=True)
            base = ask(server, "base")
            print(f"  server during it: {base['since_last']}", flush=True)
            cpu0 = cpu_seconds(server.pid)
            fleet, connected = start_fleet()
            cpu1 = cpu_seconds(server.pid)
            print(f"  idle fleet: {connected['online']} of {args.idle} online in "
                  f"{connected['seconds']:.1f} s "
                  f"({connected['online'] / connected['seconds']:.0f}/s, server CPU "
                  f"{(cpu1 - cpu0) * 1000 / max(1, connected['online']):.2f} ms each); "
                  f"failures {connected['failures'] or 0}", flush=True)
            settle_cpu = cpu_seconds(server.pid)
            time.sleep(args.settle)
            settle_cpu = cpu_seconds(server.pid) - settle_cpu
            print(f"  server CPU holding {connected['online']} idle devices, no API load: "
                  f"{100 * settle_cpu / args.settle:.1f}% over {args.settle:g} s", flush=True)
            held = ask(server, "held")
            held_at = time.perf_counter()
            busy = measure(ports, server, fleet.pid, f"with-{round_no}")
            print(f"  {args.idle} idle devices: {brief(busy)}", flush=True)
            after = ask(server, "busy")
            print(f"  server during it: {after['since_last']}", flush=True)
            print(f"  new objects still alive after it: {after.get('promoted_alive')}",
                  flush=True)
            ratios.append(busy["p99_ms"] / idle["p99_ms"])
            print(f"  this round's p99 with the fleet / without: {ratios[-1]:.2f} "
                  f"(p50 {busy['p50_ms'] / idle['p50_ms']:.2f})", flush=True)
            pooled["without"] += idle["latencies"]
            pooled["with"] += busy["latencies"]
            still, gone, took = release(fleet)
            print(f"  held {time.perf_counter() - held_at + args.settle:.0f} s: {still} of "
                  f"{connected['online']} still online; {gone['connections']} connections "
                  f"left {took:.1f} s after the fleet let go", flush=True)
            if holder is not server:
                continue  # the measured server held no fleet: no memory to report
            if round_no == 1:
                first = (base, held, gone)
            else:
                # A leak grows with every fleet; memory the allocator kept is reused.
                print(f"  RSS held {held['rss_kib']} KiB, after disconnect {gone['rss_kib']} "
                      f"KiB; gc objects {gone['gc_objects_growth']:+d} from before the first "
                      f"fleet {dict(list(gone['gc_growth_by_type'].items())[:4])}",
                      flush=True)
        without, with_fleet = (percentiles(pooled[k]) for k in ("without", "with"))
        print(f"pooled over {args.rounds} rounds: without the fleet {len(pooled['without'])} "
              f"calls, p50 {without[50]:.2f} ms, p90 {without[90]:.2f} ms, p99 "
              f"{without[99]:.2f} ms; with it {len(pooled['with'])} calls, p50 "
              f"{with_fleet[50]:.2f} ms, p90 {with_fleet[90]:.2f} ms, p99 "
              f"{with_fleet[99]:.2f} ms", flush=True)
        print(f"p99 with the fleet / without: {with_fleet[99] / without[99]:.2f} pooled; "
              f"rounds {', '.join(f'{r:.2f}' for r in ratios)}", flush=True)
        if holder is not server:
            return
        base, held, gone = first
        trim = ask(server, "trim")
        per = (held["rss_kib"] - base["rss_kib"]) / max(1, held["online"])
        print(f"server RSS: before the fleet {base['rss_kib']} KiB, held "
              f"{held['rss_kib']} KiB ({per:.2f} KiB per device, {held['online']} online, "
              f"{held['delayed_calls']} timers), after disconnect {gone['rss_kib']} KiB; "
              f"after the last round and malloc_trim(0) {trim['rss_kib']} KiB", flush=True)
        print(f"gc objects: before {base['gc_objects']}, held {held['gc_objects']} "
              f"(+{held['gc_objects_growth']}), after disconnect {gone['gc_objects']} "
              f"({gone['gc_objects_growth']:+d}); growth by type after disconnect: "
              f"{gone['gc_growth_by_type']}", flush=True)
        if args.tracemalloc:
            print(f"tracemalloc, held: {held['tracemalloc_growth_kib']} KiB "
                  f"{held['tracemalloc_top'][:4]}", flush=True)
            print(f"tracemalloc, after disconnect: {gone['tracemalloc_growth_kib']} KiB; top: "
                  + "; ".join(gone["tracemalloc_top"]), flush=True)
    finally:
        stop_processes(procs)
        shutil.rmtree(scratch, ignore_errors=True)


def read_latencies(path):
    """The call latencies (seconds) that ``load --latencies`` wrote."""
    values = array.array("d")
    values.frombytes(Path(path).read_bytes())
    return values.tolist()


def percentiles(latencies):
    """p50/p90/p99 in milliseconds, the same way ``load`` reports them."""
    ordered = sorted(latencies)
    return {p: ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000
            for p in (50, 90, 99)}


def stop_processes(procs):
    """Terminate ``procs`` (the last started first); kill any still there after 10 s."""
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(args):
    if args.idle:
        run_idle(args)
        return
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
        stop_processes(procs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", nargs="?", default="run",
        choices=["run", "server", "devices", "load", "fleet"],
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
    parser.add_argument("--idle", type=int, default=0,
                        help="also hold this many idle, pinging devices (see above)")
    parser.add_argument("--keepalive", type=float, default=15.0,
                        help="(--idle) seconds of silence before an idle device pings")
    parser.add_argument("--fleet-pace", type=int, default=2, metavar="N",
                        help="(--idle) the fleet sends at most N pings per millisecond "
                             "(3x the mean rate of 10 000 devices at N=2); 0: no limit")
    parser.add_argument("--keepalive-jitter", type=float, default=1.0,
                        help="(--idle) up to this many seconds more, drawn for each wait, so "
                             "the fleet's pings do not fall due in lock-step (0: they do)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="(--idle) seconds between the fleet online and the measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="(--idle) measure without and with the fleet this many times, "
                             "alternating; the fleet connects and leaves in each round")
    parser.add_argument("--fleet-priority", choices=["normal", "idle"], default="normal",
                        help="(--idle) run the fleet's process under SCHED_IDLE, as if its "
                             "devices were on other machines")
    parser.add_argument("--fleet-server", choices=["same", "separate"], default="same",
                        help="(--idle) connect the fleet to the measured server, or (a control "
                             "experiment) to a second server process on this machine")
    parser.add_argument("--pin", action="store_true",
                        help="(--idle) the server on CPU 0, every load process on CPU 1, as if "
                             "clients and devices were other machines")
    parser.add_argument("--latencies", help="(load) also write each call's latency here")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="(--idle) trace the server's allocations (slow)")
    parser.add_argument("--unsettled-heap", action="store_true",
                        help="(server) leave the garbage collector as CPython sets it "
                             "(twisted_spark.heap.settle is what the real server does)")
    parser.add_argument("--client", choices=["raw", "treq"], default="raw",
                        help="(load) bench/rawhttp.py's lean keep-alive client, or treq")
    args = parser.parse_args(argv)
    if args.external_api and not args.external_device:
        parser.error("--external-api needs --external-device HOST:PORT")
    {"run": run, "server": serve, "devices": devices, "load": load,
     "fleet": fleet}[args.command](args)


if __name__ == "__main__":
    main()
