"""Event fan-out benchmark: one publisher, N SSE subscribers.

The load generator opens N event streams with treq, publishes M events through
``POST /v1/devices/events`` (each carrying its sequence number and send time),
and reports deliveries per second and the p50/p99 publish→receive latency.
The server is always another process:

* against a running server (the real API)::

      python bench/bench_fanout.py run --url http://127.0.0.1:8080 --token TOKEN \
          [--server-pid PID[,PID...]]   # its CPU (all threads), from /proc

* self-contained, the real API (``--server api``): spawns ``serve-api``, the
  composition root's whole HTTP site (Klein routes, token authentication,
  scopes, metrics) on an in-memory store with one user and token, in its own
  process; the server's CPU over the run comes from ``/proc/<pid>/stat`` and
  is reported per delivery.  Issue 17's figure (100 streams × 800 events/s)::

      PYTHONPATH=. python bench/bench_fanout.py run --server api \
          --streams 100 --events 8000 --rate 800 --client node

  ``--client node`` runs the same load from ``bench/fanout_load.js`` (Node):
  one Python process cannot parse 80 000 SSE events/s (this script's own
  generator tops out near 13 000 deliveries/s here), so it would measure
  itself.  ``BENCH_NODELAY=1`` sets TCP_NODELAY on the server's sockets.
  On a machine shared with background work, give the run an autogroup of
  its own (see ``bench_api.py``).

* self-contained, minimal: spawn a minimal server: the composition root's bus
  and SSE streams behind a bare resource (publish validation; no
  authentication)::

      python bench/bench_fanout.py run            # spawns "serve" itself
      python bench/bench_fanout.py serve --port 8090

Options: ``--streams 100 --events 2000 --concurrency 4 --rate 0`` (0 = as fast
as ``concurrency`` requests in flight allow).  Latency is measured with the
wall clock of this machine, so client and server must share it (loopback).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- the minimal server (serve) -----------------------------------------------------


def serve(port: int, queue_size: int) -> None:
    from Crypto.PublicKey import RSA
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site

    from twisted_spark.api.sse import prefix_from_path
    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.events.publishing import InvalidEvent, api_event
    from twisted_spark.events.visibility import firehose_rule
    from twisted_spark.executors import Executors
    from twisted_spark.store import MemoryStore

    server_key = RSA.import_key((ROOT / "tests" / "keys" / "server.pem").read_bytes())
    cloud = build_cloud(Settings(sse_queue_size=queue_size), reactor=reactor,
                        store=MemoryStore(), server_key=server_key,
                        executors=Executors.synchronous())
    bus, streams = cloud.bus, cloud.streams

    class Events(Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"access-control-allow-origin", b"*")
            if not request.path.startswith(b"/v1/events"):
                request.setResponseCode(404)
                return b'{"ok":false,"error":"Not found","error_description":"No such route."}'
            streams.open(request, prefix_from_path(request.path, 2), firehose_rule("bench"))
            return NOT_DONE_YET

        def render_POST(self, request):
            from urllib.parse import parse_qs

            request.setHeader(b"content-type", b"application/json")
            if request.path != b"/v1/devices/events":
                request.setResponseCode(404)
                return b'{"ok":false,"error":"Not found","error_description":"No such route."}'
            fields = {k.decode(): v[0].decode() for k, v in
                      parse_qs(request.content.read(), keep_blank_values=True).items()}
            try:
                event = api_event(fields.get("name"), fields.get("data"), fields.get("private"),
                                  fields.get("ttl"), owner="bench", now=reactor.seconds())
            except InvalidEvent as e:
                request.setResponseCode(400)
                return json.dumps({"ok": False, "error": "invalid_request",
                                   "error_description": str(e)}).encode()
            bus.publish(event)
            return b'{"ok":true}'

    listening = reactor.listenTCP(port, Site(Events()), interface="127.0.0.1")
    print(f"listening {listening.getHost().port}", flush=True)
    reactor.addSystemEventTrigger("before", "shutdown", streams.close_all)
    reactor.run()


TOKEN = "fa0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c"


def serve_api(port: int, queue_size: int) -> None:
    """The real HTTP API (``build_cloud``'s site), one user ``bench`` with :data:`TOKEN`."""
    from Crypto.PublicKey import RSA
    from serving import (
        add_bench_user,
        log_like_serve,
        nodelay_on_accepted_sockets,
        started_executors,
    )
    from twisted.internet import defer, reactor

    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.store import MemoryStore

    if os.environ.get("BENCH_NODELAY"):
        nodelay_on_accepted_sockets()
    log_like_serve()
    server_key = RSA.import_key((ROOT / "tests" / "keys" / "server.pem").read_bytes())
    settings = Settings(sse_queue_size=queue_size)

    async def start():
        executors = started_executors(reactor, settings.rsa_threads)
        store = MemoryStore()
        await add_bench_user(store, TOKEN)
        cloud = build_cloud(settings, reactor=reactor, store=store, server_key=server_key,
                            executors=executors)
        cloud.site.noisy = False
        listening = reactor.listenTCP(port, cloud.site, interface="127.0.0.1")
        reactor.addSystemEventTrigger("before", "shutdown", cloud.streams.close_all)
        print(f"listening {listening.getHost().port}", flush=True)

    def failed(f):
        print(f"server failed: {f.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.run()


def cpu_seconds(pids) -> float:
    """CPU time (user + system, every thread) so far of a pid or ``"PID,PID..."``."""
    total = 0
    for pid in str(pids).split(","):
        fields = Path(f"/proc/{pid.strip()}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# -- the load generator (run) --------------------------------------------------------


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def load(reactor, args) -> dict:
    import treq
    from twisted.internet import defer, task
    from twisted.internet.protocol import Protocol
    from twisted.web.client import HTTPConnectionPool

    run_id = uuid.uuid4().hex[:8]
    name = f"bench/{run_id}"
    headers = {"Authorization": [f"Bearer {args.token}"]} if args.token else {}
    latencies: list[float] = []
    received = [0]
    last_receive = [0.0]

    class Stream(Protocol):
        def __init__(self):
            self.buffer = b""
            self.ready = defer.Deferred()
            self.done = defer.Deferred()
            self.count = 0

        def dataReceived(self, data):
            now = time.time()
            if not self.ready.called:
                self.ready.callback(None)
            self.buffer += data
            *frames, self.buffer = self.buffer.split(b"\n\n")
            for frame in frames:
                for line in frame.split(b"\n"):
                    if line.startswith(b"data: "):
                        payload = json.loads(line[6:])
                        _, sent_at = payload["data"].split(" ")
                        latencies.append(now - float(sent_at))
                        self.count += 1
                        received[0] += 1
                        last_receive[0] = now

        def connectionLost(self, reason):
            self.done.callback(None)

    async def open_stream():
        response = await treq.get(f"{args.url}/v1/events/{name}", headers=headers,
                                  persistent=False, unbuffered=True)
        if response.code != 200:
            raise SystemExit(f"GET /v1/events answered {response.code}")
        stream = Stream()
        response.deliverBody(stream)
        await stream.ready
        return stream

    streams = []
    for start in range(0, args.streams, 50):  # open in batches
        batch = [defer.ensureDeferred(open_stream())
                 for _ in range(start, min(args.streams, start + 50))]
        streams += await defer.gatherResults(batch, consumeErrors=True)

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.concurrency
    publish_errors = [0]

    async def publish(seq):
        body = {"name": name, "data": f"{seq} {time.time():.6f}", "private": "false"}
        response = await treq.post(f"{args.publish_url or args.url}/v1/devices/events", data=body,
                                   headers=headers, pool=pool)
        await response.content()
        if response.code != 200:
            publish_errors[0] += 1

    expected = args.events * len(streams)
    cpu_start = cpu_seconds(args.server_pid) if args.server_pid else None
    started = time.time()
    next_seq = [0]
    interval = 1.0 / args.rate if args.rate else 0.0

    async def publisher():
        while next_seq[0] < args.events:
            seq = next_seq[0]
            next_seq[0] += 1
            if interval:
                delay = started + seq * interval - time.time()
                if delay > 0:
                    await task.deferLater(reactor, delay, lambda: None)
            await publish(seq)

    await defer.gatherResults(
        [defer.ensureDeferred(publisher()) for _ in range(args.concurrency)], consumeErrors=True
    )
    published = time.time()
    deadline = published + args.timeout
    while received[0] < expected and time.time() < deadline:
        await task.deferLater(reactor, 0.01, lambda: None)
    for stream in streams:
        stream.transport.stopProducing()
    await pool.closeCachedConnections()
    await defer.gatherResults([s.done for s in streams])

    cpu_end = cpu_seconds(args.server_pid) if args.server_pid else None
    end = last_receive[0] or time.time()
    latencies.sort()
    elapsed = max(end - started, 1e-9)
    return {
        "streams": len(streams),
        "events": args.events,
        "published_per_s": round(args.events / max(published - started, 1e-9), 1),
        "delivered": received[0],
        "expected": expected,
        "missing": expected - received[0],
        "publish_errors": publish_errors[0],
        "deliveries_per_s": round(received[0] / elapsed, 1),
        "latency_ms_p50": round(percentile(latencies, 0.50) * 1000, 2),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 2),
        "latency_ms_max": round((latencies[-1] if latencies else float("nan")) * 1000, 2),
        "seconds": round(elapsed, 3),
        **({} if cpu_start is None else {
            "server_cpu_s_window": round(cpu_end - cpu_start, 3),
            "server_cpu_percent": round(100 * (cpu_end - cpu_start) / elapsed, 1),
            "server_cpu_us_per_delivery_window": round(
                (cpu_end - cpu_start) / max(received[0], 1) * 1e6, 2),
        }),
    }


def run(args) -> int:
    server = None
    if args.url is None:
        if args.server == "api":
            args.token = TOKEN
        server = subprocess.Popen(
            [sys.executable, __file__, "serve-api" if args.server == "api" else "serve",
             "--port", "0", "--queue-size", str(args.queue_size)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        line = server.stdout.readline()
        if not line.startswith("listening "):
            server.kill()
            raise SystemExit(f"the server did not start: {line!r}")
        args.url = f"http://127.0.0.1:{int(line.split()[1])}"
        args.server_pid = str(server.pid)
    results = {}
    if args.client == "node":
        try:
            results.update(load_node(args))
        finally:
            finish(server, results)
        return 0 if results.get("missing") == 0 else 1
    from twisted.internet import defer, task

    cpu0 = cpu_seconds(args.server_pid) if args.server_pid and server is None else None

    async def main(reactor):
        results.update(await load(reactor, args))

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        if cpu0 is not None:  # a server given by --url and --server-pid
            cpu = cpu_seconds(args.server_pid) - cpu0
            results["server_cpu_s"] = round(cpu, 3)
            if results.get("delivered"):
                results["server_cpu_us_per_delivery"] = round(cpu / results["delivered"] * 1e6, 2)
        finish(server, results)
    return 0 if results.get("missing") == 0 else 1


def finish(server, results) -> None:
    """Stop the spawned server, add its whole-life CPU, print the results."""
    if server is not None:
        server.terminate()
        _, _, usage = os.wait4(server.pid, 0)
        server.returncode = 0
        cpu = usage.ru_utime + usage.ru_stime
        results["server_cpu_s"] = round(cpu, 3)
        if results.get("delivered"):
            results["server_cpu_us_per_delivery"] = round(cpu / results["delivered"] * 1e6, 2)
    print(json.dumps(results, indent=2))


def load_node(args) -> dict:
    """The same load from ``fanout_load.js`` (Node): one process parses 80 000 events/s."""
    node = subprocess.Popen(
        ["node", str(ROOT / "bench" / "fanout_load.js"), args.url, args.token or "",
         str(args.streams), str(args.events), str(args.rate), str(args.concurrency),
         str(args.timeout)],
        stdout=subprocess.PIPE, text=True,
    )
    if node.stdout.readline().strip() != "streams open":
        node.kill()
        raise SystemExit("the Node generator did not open its streams")
    cpu_start = cpu_seconds(args.server_pid) if args.server_pid else None
    node_start = cpu_seconds(node.pid)
    line = node.stdout.readline()
    cpu_end = cpu_seconds(args.server_pid) if args.server_pid else None
    node_cpu = cpu_seconds(node.pid) - node_start
    node.wait()
    results = json.loads(line)
    results["generator_cpu_percent"] = round(100 * node_cpu / results["seconds"], 1)
    if cpu_start is not None:
        results["server_cpu_s_window"] = round(cpu_end - cpu_start, 3)
        results["server_cpu_percent"] = round(100 * (cpu_end - cpu_start) / results["seconds"], 1)
        results["server_cpu_us_per_delivery_window"] = round(
            (cpu_end - cpu_start) / max(results["delivered"], 1) * 1e6, 2)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the minimal event server")
    s.add_argument("--port", type=int, default=8090)
    s.add_argument("--queue-size", type=int, default=1000)
    a = sub.add_parser("serve-api", help="run the real API with one token")
    a.add_argument("--port", type=int, default=8090)
    a.add_argument("--queue-size", type=int, default=1000)
    r = sub.add_parser("run", help="run the load generator")
    r.add_argument("--url", help="base URL of a running server (default: spawn 'serve')")
    r.add_argument("--token", help="access token (Bearer)")
    r.add_argument("--server-pid", help="(--url) the server's process, PID or PID,PID...: "
                   "report its CPU over the run")
    r.add_argument("--publish-url", help="publish here instead (another cluster node)")
    r.add_argument("--streams", type=int, default=100)
    r.add_argument("--events", type=int, default=2000)
    r.add_argument("--concurrency", type=int, default=4, help="publish requests in flight")
    r.add_argument("--rate", type=float, default=0.0, help="events/s to publish; 0 = max")
    r.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for stragglers")
    r.add_argument("--queue-size", type=int, default=1000, help="for the spawned server")
    r.add_argument("--client", choices=["python", "node"], default="python",
                   help="the load generator: this script (treq) or bench/fanout_load.js")
    r.add_argument("--server", choices=["minimal", "api"], default="minimal",
                   help="without --url, spawn this server: the bare resource or the real API")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port, args.queue_size)
        return 0
    if args.command == "serve-api":
        serve_api(args.port, args.queue_size)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
