# -*- test-case-name: tests.test_webhooks_dispatch -*-
"""Consecutive failures and sleep of each hook (API.md §6, throttling).

:class:`LocalHealth` keeps them in this process, which is right for one
node.  In a cluster every node dispatches the events it received, so a
broken hook fails on several nodes at once;
:class:`~twisted_spark.cluster.hook_health.RedisHealth` (a counter and a
sleep key per hook in Redis, announced to the other nodes) makes them share
one count and one sleep, and keeps its local view in a :class:`LocalHealth`.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted_spark.interfaces.webhooks import IWebhookHealth


@implementer(IWebhookHealth)
class LocalHealth:
    """Failure counts and sleeps in dicts; nothing survives the process (as §6 says).

    :param clock: ``IReactorTime``.
    :param max_errors: consecutive failed deliveries that start a sleep.
    :param sleep: seconds a sleep lasts.
    """

    def __init__(self, clock, max_errors: int = 10, sleep: float = 60.0) -> None:
        self._clock = clock
        self.max_errors = max_errors
        self.sleep = sleep
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def asleep(self, hook_id: str) -> bool:
        return self._clock.seconds() < self._until.get(hook_id, 0.0)

    def failed(self, hook_id: str) -> None:
        count = self._failures.get(hook_id, 0) + 1
        self._failures[hook_id] = count
        if count >= self.max_errors:
            self._until[hook_id] = self._clock.seconds() + self.sleep

    def succeeded(self, hook_id: str) -> None:
        self._failures.pop(hook_id, None)
        self._until.pop(hook_id, None)

    def failures(self, hook_id: str) -> int:
        return self._failures.get(hook_id, 0)

    def forget(self, hook_id: str) -> None:
        self._failures.pop(hook_id, None)
        self._until.pop(hook_id, None)

    def assume(self, hook_id: str, failures: int, until: float | None) -> None:
        """Take a state learnt elsewhere: ``failures`` in a row, asleep until
        ``until`` (clock seconds; None: awake)."""
        self.forget(hook_id)
        if failures > 0:
            self._failures[hook_id] = failures
        if until is not None:
            self._until[hook_id] = until
