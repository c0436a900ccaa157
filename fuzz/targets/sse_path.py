# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The event-stream prefix of a request path (``api/sse.py``) and the bus's prefix match.

The input is a raw request path (bytes, as ``request.path`` holds it).
Contract: :func:`prefix_from_path` returns a ``str`` for every route depth,
never longer than the path, and the bus subscribes and matches it.
"""

from __future__ import annotations

from fuzz.harness import ContractBroken
from twisted_spark.api.sse import prefix_from_path
from twisted_spark.events.bus import EventBus
from twisted_spark.models import Event

BUS = EventBus()


def one_input(data: bytes) -> None:
    for fixed in (2, 3, 4):
        prefix = prefix_from_path(data, fixed)
        if not isinstance(prefix, str) or len(prefix) > len(data):
            raise ContractBroken(f"prefix {prefix!r} of {data!r}")
    seen = []
    subscription = BUS.subscribe(prefix, seen.append)
    try:
        BUS.publish(Event(name=prefix or "x", data=None, ttl=60, published_at=0.0,
                          coreid="api", public=True, owner=None))
    finally:
        subscription.cancel()
    if len(seen) != 1:
        raise ContractBroken(f"an event named by the prefix {prefix!r} was not delivered")
