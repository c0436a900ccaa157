# -*- test-case-name: tests.test_health -*-
"""Readiness: named checks that together say whether this server should get traffic.

``/healthz`` says the process is alive; ``/readyz`` (a load balancer's
question: send requests here?) runs every check registered in the server's
:class:`Readiness` and answers 503 unless all pass.  Parts add their own
checks with :meth:`Readiness.add` -- the composition root adds ``store``,
the service ``ports`` and ``draining``; a cluster node adds ``redis``::

    readiness.add("redis", lambda: redis.ping().addCallback(lambda _: "PONG"))

A check is ``check() -> str | Deferred[str]``: it passes by returning (or
firing with) a short detail, and fails by raising :class:`NotReady` (or any
error, or not answering within :attr:`Readiness.timeout` seconds).
Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer


class NotReady(Exception):
    """A check fails; the message is the detail ``/readyz`` shows."""


class Readiness:
    """The checks ``/readyz`` runs, by name, in the order they were added.

    :param clock: ``IReactorTime`` bounding each check by :attr:`timeout`.
    :param timeout: seconds a check may take before it counts as failed.
    """

    def __init__(self, clock=None, timeout: float = 2.0) -> None:
        self.clock = clock
        self.timeout = timeout
        self._checks: dict[str, Callable[[], Any]] = {}

    def add(self, name: str, check: Callable[[], Any]) -> None:
        """Register ``check`` under ``name`` (a name registered again is replaced)."""
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    def names(self) -> list[str]:
        return list(self._checks)

    async def evaluate(self) -> tuple[bool, dict[str, dict]]:
        """Run every check at once; ``(ready, {name: {"ok": bool, "detail": str}})``."""
        names = list(self._checks)
        results = await defer.gatherResults(
            [self._run(self._checks[name]) for name in names], consumeErrors=True)
        detail = dict(zip(names, results, strict=True))
        return all(entry["ok"] for entry in detail.values()), detail

    def _run(self, check) -> defer.Deferred:
        d = defer.maybeDeferred(check)
        if self.clock is not None:
            d.addTimeout(self.timeout, self.clock)

        def passed(detail):
            return {"ok": True, "detail": "ok" if detail is None else str(detail)}

        def failed(failure):
            if failure.check(defer.TimeoutError):
                why = f"no answer within {self.timeout:g} s"
            elif failure.check(NotReady):
                why = str(failure.value)
            else:
                why = f"{type(failure.value).__name__}: {failure.getErrorMessage()}"
            return {"ok": False, "detail": why}

        return d.addCallbacks(passed, failed)


def store_check(store) -> Callable[[], defer.Deferred]:
    """A check that the store answers a cheap query (a lookup by primary key)."""

    def check():
        return store.get_user("").addCallback(lambda _: "answers queries")

    return check
