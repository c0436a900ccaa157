"""Cluster figures: cross-node calls and fan-out against one node, and failover.

Every node is its own process (``node``: the composition root with
``--redis``, a SQLite file shared by the nodes, ephemeral loopback ports);
virtual devices and load generators are other processes.  Redis must run on
127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (user ``postgres``; or
``STORE=sqlite``: one SQLite file); each run uses a fresh key namespace and
database and deletes them after.

``calls``
    10 devices on node A; 16 HTTP clients call ``brew`` through A (same
    node), then through B (every call crosses Redis to A and back), with
    ``bench_api.py load``.
``fanout``
    100 SSE streams on node B, 1 publisher posting to node A, with
    ``bench_fanout.py run --publish-url``: deliveries/s, p99, loss.
``failover``
    N devices on node A; A is SIGKILLed.  Measures the seconds until B's
    API shows them all offline (the devices do not come back meanwhile), how
    many ``spark/status offline`` B's event stream got (once each is right),
    then the seconds until all are online on B once they reconnect there;
    then the same kill with devices that reconnect at once (takeover).

``scale``
    ``--devices`` idle devices spread over ``--nodes`` nodes (one holder
    process each), held ``--hold`` seconds while the nodes ping them: how
    many stay online, node memory per device, presence keys in Redis, and
    the time of an administrator's ``GET /v1/devices`` listing them all.

Run from the repository root::

    PYTHONPATH=. python bench/bench_cluster.py calls --duration 10
    PYTHONPATH=. python bench/bench_cluster.py fanout --streams 100 --events 2000
    PYTHONPATH=. python bench/bench_cluster.py failover --devices 50 --presence-ttl 30
    PYTHONPATH=. python bench/bench_cluster.py scale --devices 20000 --nodes 4 --hold 60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

from bench_api import TOKEN, device_ids  # noqa: E402

KEYS = ROOT / "tests" / "keys"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN = "ad" * 20


# -- a node ---------------------------------------------------------------------------


def node(args):
    from Crypto.PublicKey import RSA
    from twisted.internet import defer, reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.crypto.keys import public_key_der
    from twisted_spark.executors import Executors
    from twisted_spark.models import AccessToken, DeviceRecord, User
    from twisted_spark.store.sqlite import SQLiteStore

    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    settings = Settings(redis_url="redis://127.0.0.1:6379", redis_namespace=args.namespace,
                        node_id=args.node_id, presence_ttl=args.presence_ttl,
                        login_failures_per_minute=0)
    server_key = RSA.import_key((KEYS / "server.pem").read_bytes())
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes())

    async def start():
        executors = Executors.threaded(reactor, settings.rsa_threads)
        executors.start()
        if args.database.startswith("postgresql:"):
            from twisted_spark.store.postgres import PostgresStore

            store = await PostgresStore.open(args.database, reactor=reactor,
                                             executor=executors.store)
        else:
            store = await SQLiteStore.open(args.database, reactor=reactor,
                                           executor=executors.store, synchronous="NORMAL")
        if args.seed:
            await store.add_user(User("bench", "x"))
            await store.add_token(AccessToken(TOKEN, "bench", "bench", 0.0, None))
            await store.add_user(User("admin", "x", is_admin=True))
            await store.add_token(AccessToken(ADMIN, "admin", "bench", 0.0, None))
            for device_id in device_ids(args.seed):
                await store.put_device(DeviceRecord(device_id, owner="bench",
                                                    public_key=public_key_der(device_key)))
        cloud = build_cloud(settings, reactor=reactor, store=store, server_key=server_key,
                            executors=executors)
        await cloud.cluster.start()
        cloud.site.noisy = False
        device_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            cloud.devices)
        api_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            cloud.site)
        reactor.addSystemEventTrigger("before", "shutdown", cloud.stop)
        print(json.dumps({"api": api_port.getHost().port,
                          "device": device_port.getHost().port}), flush=True)

    def failed(f):
        print(f"node failed: {f.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.run()


# -- devices that can move ------------------------------------------------------------


def fleet(args):
    """Connect N devices to ``--port``; a line ``connect PORT`` on stdin connects
    them (again) to PORT; with ``--follow PORT`` each reconnects there as soon
    as its connection drops.  Prints ``ready`` after every batch."""
    from Crypto.PublicKey import RSA
    from twisted.internet import defer, reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from twisted_spark.sim.device import VirtualDevice, connect_device

    server_key = RSA.import_key((KEYS / "server.pem").read_bytes()).public_key()
    device_key = RSA.import_key((KEYS / "device-1.pem").read_bytes())

    async def one(device_id, port):
        device = VirtualDevice(device_id, device_key, server_key, platform="photon")
        await connect_device(reactor, "127.0.0.1", port, device, 60)
        if args.follow:
            device.closed.addCallback(lambda _: defer.ensureDeferred(one(device_id,
                                                                         args.follow)))
        return device

    async def connect_all(port):
        await defer.gatherResults([defer.ensureDeferred(one(i, port))
                                   for i in device_ids(args.devices)], consumeErrors=True)
        print("ready", flush=True)

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line):
            word, port = line.decode().split()
            defer.ensureDeferred(connect_all(int(port)))

    stdio.StandardIO(Commands())
    reactor.callWhenRunning(lambda: defer.ensureDeferred(connect_all(args.port)))
    reactor.run()


def holders(args):
    """Connect devices ``--first`` .. ``--first + --devices`` to ``--port``,
    hold them ``--hold`` seconds (answering the server's pings), and print
    how many are still connected then."""
    from Crypto.PublicKey import RSA
    from twisted.internet import defer, task

    from twisted_spark.sim.fleet import Fleet, make_factory

    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    key = RSA.import_key((KEYS / "device-1.pem").read_bytes())
    server_public = RSA.import_key((KEYS / "server.pem").read_bytes()).public_key()
    ids = device_ids(args.first + args.devices)[args.first:]

    async def run(reactor):
        fleet = Fleet(reactor, "127.0.0.1", args.port,
                      make_factory(server_public, [(i, key) for i in ids], "core", reactor),
                      len(ids), 100)
        started = time.perf_counter()
        online = await fleet.connect_all(timeout=300)
        print(json.dumps({"online": len(online), "seconds": time.perf_counter() - started,
                          "failures": fleet.failures[:3]}), flush=True)
        await task.deferLater(reactor, args.hold, lambda: None)
        still = sum(1 for d in online if d.connected)
        print(json.dumps({"still_online": still}), flush=True)
        fleet.disconnect_all()
        await task.deferLater(reactor, 1.0, lambda: None)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


# -- orchestration ----------------------------------------------------------------------


class Cluster:
    """Node processes on one Redis namespace and one store: a fresh PostgreSQL
    database on 127.0.0.1:5432 (user postgres), or with ``STORE=sqlite`` in
    the environment one SQLite file."""

    def __init__(self, presence_ttl=30.0):
        self.namespace = f"bench-{os.urandom(4).hex()}"
        self.dir = tempfile.mkdtemp(prefix="bench-cluster-")
        self.pg_name = None
        if os.environ.get("STORE", "postgresql") == "sqlite":
            self.database = str(Path(self.dir) / "spark.sqlite")
        else:
            import psycopg

            self.pg_name = f"bench_{self.namespace.replace('-', '_')}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.pg_name}"')
                # Like SQLite's synchronous=NORMAL below: commits do not wait
                # for the disk (a shared, busy disk otherwise sets the pace).
                admin.execute(f'ALTER DATABASE "{self.pg_name}" SET synchronous_commit = off')
            self.database = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.pg_name
        self.presence_ttl = presence_ttl
        self.procs = []
        self.env = dict(os.environ, PYTHONPATH=str(ROOT))

    def spawn(self, *argv, stdin=None):
        proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE,
                                stdin=stdin, env=self.env, text=True)
        self.procs.append(proc)
        return proc

    def node(self, name, seed=0):
        proc = self.spawn("node", "--namespace", self.namespace, "--node-id", name,
                          "--database", str(self.database), "--seed", str(seed),
                          "--presence-ttl", str(self.presence_ttl))
        line = proc.stdout.readline()
        if not line.startswith("{"):
            raise SystemExit(f"node {name} did not start")
        ports = json.loads(line)
        return proc, ports["api"], ports["device"]

    def fleet(self, count, port, follow=None):
        argv = ["fleet", "--devices", str(count), "--port", str(port)]
        proc = self.spawn(*argv, *(["--follow", str(follow)] if follow else []),
                          stdin=subprocess.PIPE)
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the devices did not connect")
        return proc

    def close(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        keys = subprocess.run(["redis-cli", "--scan", "--pattern", f"{self.namespace}:*"],
                              capture_output=True, text=True, check=False).stdout.split()
        if keys:
            subprocess.run(["redis-cli", "del", *keys], capture_output=True, check=False)
        if self.pg_name is not None:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


def api_get(port, path):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def online_count(port):
    return sum(1 for d in api_get(port, "/v1/devices") if d["connected"])


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calls(args):
    """Same-node and cross-node rounds alternate (``--rounds`` each), so a
    change in the machine's other load hits both alike; medians are printed."""
    cluster = Cluster()
    try:
        node_a, api_a, dev_a = cluster.node("a", seed=args.devices)
        node_b, api_b, _ = cluster.node("b")
        cluster.fleet(args.devices, dev_a)
        rounds: dict[str, list] = {"same-node": [], "cross-node": []}
        for _ in range(args.rounds):
            for label, port in (("same-node", api_a), ("cross-node", api_b)):
                before = cpu_seconds(node_a.pid) + cpu_seconds(node_b.pid)
                out = subprocess.run(
                    [sys.executable, str(BENCH / "bench_api.py"), "load", "--port", str(port),
                     "--devices", str(args.devices), "--concurrency", str(args.concurrency),
                     "--duration", str(args.duration), "--warmup", "2"],
                    capture_output=True, text=True, env=cluster.env, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                spent = cpu_seconds(node_a.pid) + cpu_seconds(node_b.pid) - before
                result["node_cpu_ms_per_call"] = 1000 * spent / max(1, result["requests"])
                rounds[label].append(result)

        def median(label, key):
            values = sorted(r[key] for r in rounds[label])
            return values[len(values) // 2]

        for label, results in rounds.items():
            print(f"{label}: " + "; ".join(
                f"{r['rps']:.0f} calls/s p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms "
                f"nodes' CPU {r['node_cpu_ms_per_call']:.2f} ms/call errors {r['errors'] or 0}"
                for r in results))
        rps = median("cross-node", "rps") / median("same-node", "rps")
        p99 = median("cross-node", "p99_ms") / median("same-node", "p99_ms")
        cpu = (median("cross-node", "node_cpu_ms_per_call")
               / median("same-node", "node_cpu_ms_per_call"))
        print(f"medians: cross/same throughput {rps:.0%}, p99 ratio {p99:.2f}, "
              f"nodes' CPU per call ratio {cpu:.2f}")
    finally:
        cluster.close()


def fanout(args):
    """Streams on A then on B, the publisher always posting to A."""
    cluster = Cluster()
    try:
        _, api_a, _ = cluster.node("a", seed=1)
        _, api_b, _ = cluster.node("b")
        for label, port in (("same-node", api_a), ("cross-node", api_b)):
            out = subprocess.run(
                [sys.executable, str(BENCH / "bench_fanout.py"), "run",
                 "--url", f"http://127.0.0.1:{port}",
                 "--publish-url", f"http://127.0.0.1:{api_a}", "--token", TOKEN,
                 "--streams", str(args.streams), "--events", str(args.events),
                 "--rate", str(args.rate)],
                capture_output=True, text=True, env=cluster.env, check=False)
            r = json.loads(out.stdout[out.stdout.index("{"):])
            print(f"{label}: {r['streams']} streams, {r['events']} events at "
                  f"{r['published_per_s']:.0f}/s: {r['deliveries_per_s']:.0f} deliveries/s, "
                  f"p50 {r['latency_ms_p50']:.1f} ms, p99 {r['latency_ms_p99']:.1f} ms, "
                  f"missing {r['missing']}, publish errors {r['publish_errors']}")
    finally:
        cluster.close()


class StatusWatch(threading.Thread):
    """Counts ``spark/status`` events of one node's event stream, per value."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.counts: dict[str, int] = {}

    def run(self):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/devices/events/spark/status",
            headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    value = json.loads(line[6:])["data"]
                    self.counts[value] = self.counts.get(value, 0) + 1


def wait_for(predicate, timeout, step=0.1):
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(step)
    return time.monotonic() - start


def failover(args):
    cluster = Cluster(args.presence_ttl)
    try:
        node_a, _, dev_a = cluster.node("a", seed=args.devices)
        _, api_b, dev_b = cluster.node("b")
        cluster.node("c")
        devices = cluster.fleet(args.devices, dev_a)
        wait_for(lambda: online_count(api_b) == args.devices, 30)
        watch = StatusWatch(api_b)
        watch.start()
        time.sleep(0.5)
        node_a.send_signal(signal.SIGKILL)
        offline_s = wait_for(lambda: online_count(api_b) == 0, 3 * args.presence_ttl)
        time.sleep(1.0)
        offline_events = watch.counts.get("offline", 0)
        started = time.monotonic()
        devices.stdin.write(f"connect {dev_b}\n")
        devices.stdin.flush()
        devices.stdout.readline()
        back_s = wait_for(lambda: online_count(api_b) == args.devices, 60)
        back_s = None if back_s is None else time.monotonic() - started
        print(f"{args.devices} devices, presence TTL {args.presence_ttl:g} s: offline on B "
              f"{offline_s:.1f} s after SIGKILL of A; {offline_events} offline events on B "
              f"(once each = {args.devices}); all online on B {back_s:.1f} s after they "
              "reconnect")
        # Takeover: devices that reconnect elsewhere at once when their node dies.
        devices.terminate()
        wait_for(lambda: online_count(api_b) == 0, 30)
        _, api_d, dev_d = cluster.node("d")
        cluster.fleet(args.devices, dev_b, follow=dev_d)
        wait_for(lambda: online_count(api_d) == args.devices, 30)
        watch = StatusWatch(api_d)
        watch.start()
        time.sleep(0.5)
        cluster.procs[1].send_signal(signal.SIGKILL)  # node b
        moved_s = wait_for(lambda: watch.counts.get("online", 0) >= args.devices, 60)
        time.sleep(1.0)
        print(f"takeover: {watch.counts.get('online', 0)} online events for "
              f"{args.devices} devices on node d {moved_s:.2f} s after their node was "
              f"killed (they reconnect at once); {watch.counts.get('offline', 0)} offline "
              "events")
    finally:
        cluster.close()


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def scale(args):
    """``--devices`` devices spread over ``--nodes`` nodes, held ``--hold`` s."""
    cluster = Cluster(args.presence_ttl)
    try:
        nodes = [cluster.node(f"n{k}", seed=args.devices if k == 0 else 0)
                 for k in range(args.nodes)]
        time.sleep(2)
        before = [rss_kib(proc.pid) for proc, _, _ in nodes]
        share = args.devices // args.nodes
        fleets = [cluster.spawn("holders", "--devices", str(share), "--first", str(k * share),
                                "--port", str(dev), "--hold", str(args.hold))
                  for k, (_, _, dev) in enumerate(nodes)]
        connected = [json.loads(f.stdout.readline()) for f in fleets]
        total = sum(c["online"] for c in connected)
        print(f"{total} of {share * args.nodes} devices online in "
              f"{max(c['seconds'] for c in connected):.0f} s "
              f"(failures: {[c['failures'] for c in connected if c['failures']]})", flush=True)
        api = nodes[-1][1]
        request = urllib.request.Request(f"http://127.0.0.1:{api}/v1/devices",
                                         headers={"Authorization": f"Bearer {ADMIN}"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            listed = json.loads(response.read())
        list_s = time.perf_counter() - started
        shown = sum(1 for d in listed if d["connected"])
        keys = subprocess.run(["redis-cli", "--scan", "--pattern",
                               f"{cluster.namespace}:dev:*"],
                              capture_output=True, text=True, check=False).stdout.split()
        after = [rss_kib(proc.pid) for proc, _, _ in nodes]
        held = [json.loads(f.stdout.readline())["still_online"] for f in fleets]
        per_device = [(a - b) / max(1, c["online"])
                      for a, b, c in zip(after, before, connected, strict=True)]
        print(f"held {args.hold:g} s: {sum(held)} still online (pings answered); "
              f"presence keys in Redis: {len(keys)}; GET /v1/devices as admin on one node: "
              f"{len(listed)} devices, {shown} connected, {list_s:.2f} s; node RSS growth "
              f"per device held: " + ", ".join(f"{kib:.1f}" for kib in per_device) + " KiB "
              "(each node also keeps the others' devices in its table)")
    finally:
        cluster.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["calls", "fanout", "failover", "scale", "node",
                                            "fleet", "holders"])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0.0, help="(fanout) events/s; 0 = max")
    parser.add_argument("--presence-ttl", type=float, default=30.0)
    parser.add_argument("--namespace")
    parser.add_argument("--node-id")
    parser.add_argument("--database")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--port", type=int)
    parser.add_argument("--follow", type=int)
    args = parser.parse_args(argv)
    {"calls": calls, "fanout": fanout, "failover": failover, "scale": scale, "node": node,
     "fleet": fleet, "holders": holders}[args.command](args)


if __name__ == "__main__":
    main()
