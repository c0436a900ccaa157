"""What the metrics cost on the hot paths, per operation, and a scrape.

Measures, in one process, the best of ``--repeat`` timings of ``--count``
operations each:

* ``api_request``: what every API response records (a histogram and a
  counter, children cached per route/method/status);
* ``device_call``: timing one device Deferred (a callback, a histogram);
* ``store_op``: a store call through the timing wrapper, minus the same
  call on the bare MemoryStore;
* ``render``: one ``/metrics`` scrape with ``--routes`` route templates x
  ``--statuses`` statuses recorded (the API has about 30 templates).

Run from the repository root::

    PYTHONPATH=. python bench/bench_metrics.py
"""

from __future__ import annotations

import argparse
import json
import time

from twisted.internet import defer

from twisted_spark.metrics import Metrics
from twisted_spark.models import User
from twisted_spark.store.memory import MemoryStore
from twisted_spark.store.timed import timed_store


def best(function, count: int, repeat: int) -> float:
    """Best seconds per call of ``function`` over ``repeat`` runs of ``count`` calls."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(count):
            function()
        timings.append((time.perf_counter() - started) / count)
    return min(timings)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--routes", type=int, default=30)
    parser.add_argument("--statuses", type=int, default=3)
    args = parser.parse_args(argv)
    metrics = Metrics()
    routes = [f"/v1/route{n}/<device>" for n in range(args.routes)]
    for route in routes:
        for status in (200, 404, 400, 403, 408, 500)[:args.statuses]:
            metrics.api_request(route, "GET", status, 0.001)

    def api_request():
        metrics.api_request("/v1/devices/<device>/<function>", "POST", 200, 0.004)

    def device_call():
        d = defer.Deferred()
        metrics.time_device_call(d, "function")
        d.callback(1)

    bare = MemoryStore()
    bare._users["alice"] = User("alice", "x")
    timed = timed_store(bare, metrics)
    store_bare = best(lambda: bare.get_user("alice"), args.count, args.repeat)
    store_timed = best(lambda: timed.get_user("alice"), args.count, args.repeat)
    figures = {
        "api_request_us": best(api_request, args.count, args.repeat) * 1e6,
        "device_call_us": best(device_call, args.count, args.repeat) * 1e6,
        "store_op_overhead_us": (store_timed - store_bare) * 1e6,
        "render_ms": best(metrics.render, 50, args.repeat) * 1e3,
        "render_bytes": len(metrics.render()),
    }
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=2))
    print(f"\nper API response {figures['api_request_us']:.2f} us, per device call "
          f"{figures['device_call_us']:.2f} us, per store operation "
          f"+{figures['store_op_overhead_us']:.2f} us; a scrape of "
          f"{figures['render_bytes']} bytes {figures['render_ms']:.2f} ms")


if __name__ == "__main__":
    main()
