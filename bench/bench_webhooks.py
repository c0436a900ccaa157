"""Webhook benchmark: deliveries/s and publish→receiver latency, a slow target's
effect on the others, and memory per 1 000 hooks.

The server side is the composition root's cloud (``build_cloud``: bus,
dispatcher, the treq sender, the network policy with ``--webhook-allow
loopback``) in this process; events are published on its bus as a device's
would be, at ``--rate`` events/s for ``--seconds``, each carrying its send
time.  The receiver is another process (a twisted.web Site on 127.0.0.1)
that answers 200 at once, except ``/slow`` which answers after 5 s; it
records the latency of each request from the event's send time::

    python bench/bench_webhooks.py --hooks 100 --rate 5 --seconds 10
    python bench/bench_webhooks.py --memory 1000      # memory only

Phases: (1) ``--hooks`` hooks to the fast target; (2) the same plus one hook
to the slow target receiving every event.  Bounded: each phase lasts
``--seconds`` plus a drain of at most 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def receive(port: int) -> None:
    """The receiver process: records latencies, answers ``GET /stats``."""
    from urllib.parse import parse_qs

    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site

    latencies: dict[str, list[float]] = {}

    class Target(Resource):
        isLeaf = True

        def render_GET(self, request):
            body = json.dumps({"latencies": latencies, "cpu": time.process_time()}).encode()
            latencies.clear()
            return body

        def render_POST(self, request):
            now = time.time()
            fields = parse_qs(request.content.read().decode())
            sent = json.loads(fields["data"][0])["t"]
            latencies.setdefault(request.path.decode(), []).append(now - sent)
            if request.path == b"/slow":
                reactor.callLater(5.0, lambda: (request.write(b"late"), request.finish()))
                return NOT_DONE_YET
            return b"ok"

    reactor.listenTCP(port, Site(Target()), interface="127.0.0.1")
    print("ready", flush=True)
    reactor.run()


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def phase(reactor, cloud, hooks, rate, seconds, target, slow):
    import treq
    from twisted.internet import task

    from twisted_spark.models import Event, Webhook

    dispatcher = cloud.webhooks
    for hook in await cloud.store.list_webhooks():  # the API's way: store, then dispatcher
        await cloud.store.delete_webhook(hook.hook_id)
        dispatcher.hook_removed(hook.hook_id)
    wanted = [Webhook(f"{n:024x}", "alice", "bench", f"{target}/fast") for n in range(hooks)]
    if slow:
        wanted.append(Webhook("f" * 24, "alice", "bench", f"{target}/slow"))
    for hook in wanted:
        await cloud.store.add_webhook(hook)
        dispatcher.hook_added(hook)
    errors: dict[str, int] = {}

    def count_error(event):
        if event.coreid == "particle-internal" and event.name.startswith("hook-error/"):
            errors[event.data] = errors.get(event.data, 0) + 1

    watching = cloud.bus.subscribe("hook-error/", count_error)
    count = int(rate * seconds)
    cpu_before = time.process_time()
    receiver_before = json.loads(await (await treq.get(f"{target}/stats")).text())["cpu"]
    started = time.time()
    for i in range(count):
        at = started + i / rate
        await task.deferLater(reactor, max(0.0, at - time.time()), lambda: None)
        cloud.bus.publish(Event("bench/temp", json.dumps({"t": time.time(), "i": i}), 60,
                                time.time(), "53ff73065067544816300187", False, "alice"))
    deadline = time.time() + 10
    fast_states = [s for s in dispatcher._hooks.values() if s.hook.hook_id != "f" * 24]
    await task.deferLater(reactor, 0.1, lambda: None)  # hooks are queued on the next turn
    while time.time() < deadline and any(s.running or s.queue for s in fast_states):
        await task.deferLater(reactor, 0.01, lambda: None)
    elapsed = time.time() - started
    watching.cancel()
    cpu = time.process_time() - cpu_before
    stats = json.loads(await (await treq.get(f"{target}/stats")).text())
    fast = stats["latencies"].get("/fast", [])
    receiver_cpu = stats["cpu"] - receiver_before
    return {
        "hooks": hooks, "slow_hook": slow, "events": count,
        "deliveries": len(fast), "deliveries_per_s": round(len(fast) / elapsed, 1),
        "p50_ms": round(statistics.median(fast) * 1000, 2) if fast else None,
        "p99_ms": round(percentile(fast, 0.99) * 1000, 2) if fast else None,
        "max_ms": round(max(fast) * 1000, 2) if fast else None,
        "server_cpu_ms_per_delivery": round(cpu * 1000 / max(1, len(fast)), 3),
        "receiver_cpu_ms_per_request": round(receiver_cpu * 1000 / max(1, len(fast)), 3),
        "hook_errors": errors,
    }


def memory(count: int) -> float:
    """Bytes per hook held by the dispatcher (definition with templates, state)."""
    from twisted.internet.task import Clock

    from twisted_spark.events.bus import EventBus
    from twisted_spark.models import Webhook
    from twisted_spark.store import MemoryStore
    from twisted_spark.webhooks.dispatcher import WebhookDispatcher

    dispatcher = WebhookDispatcher(EventBus(), MemoryStore(), None, Clock())
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for n in range(count):
        dispatcher.hook_added(Webhook(
            f"{n:024x}", f"user{n % 50}", f"sensor/{n}", f"https://example.com/in/{n}", "POST",
            1.7e9, definition={"json": {"value": "{{{PARTICLE_EVENT_VALUE}}}", "n": n},
                               "headers": {"X-Key": f"secret-{n}"}}))
    after = tracemalloc.take_snapshot()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    tracemalloc.stop()
    return used / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hooks", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=18099)
    parser.add_argument("--memory", type=int, default=1000)
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        receive(args.port)
        return
    print(json.dumps({"memory_bytes_per_hook": round(memory(args.memory)),
                      "hooks": args.memory}))
    if args.hooks == 0:
        return
    child = subprocess.Popen([sys.executable, __file__, "--receive", "--port", str(args.port)],
                             stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert child.stdout.readline().strip() == "ready"
        run(args)
    finally:
        child.terminate()
        child.wait(10)


def run(args) -> None:
    from twisted.internet import defer, task

    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.executors import Executors
    from twisted_spark.models import User
    from twisted_spark.store import MemoryStore

    async def go(reactor):
        from Crypto.PublicKey import RSA

        key = RSA.import_key((ROOT / "tests" / "keys" / "server.pem").read_bytes())
        cloud = build_cloud(Settings(webhook_allow=("loopback",)), reactor=reactor,
                            store=MemoryStore(), server_key=key,
                            executors=Executors.synchronous())
        await cloud.store.add_user(User("alice", "x"))
        await cloud.start()
        target = f"http://127.0.0.1:{args.port}"
        for slow in (False, True):
            result = await phase(reactor, cloud, args.hooks, args.rate, args.seconds,
                                 target, slow)
            print(json.dumps(result), flush=True)
        await cloud.stop()

    task.react(lambda reactor: defer.ensureDeferred(go(reactor)))


if __name__ == "__main__":
    main()
