"""Helpers for tests on real sockets with the global reactor."""

from __future__ import annotations

import time

from twisted.internet import reactor, task


async def until(predicate, timeout=10.0, step=0.01, what="condition"):
    """Poll ``predicate`` until it is true, for at most ``timeout`` seconds.

    Tests wait for effects this way instead of sleeping a fixed time.
    Returns the predicate's (truthy) value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await task.deferLater(reactor, step, lambda: None)
