# -*- test-case-name: tests.test_cluster_webhooks -*-
"""Webhook throttling shared by every node of a cluster (API.md §6).

Every node dispatches the events it received itself, so a broken target
fails on several nodes at once.  :class:`RedisHealth` keeps one count of
consecutive failures and one sleep per hook in Redis, under the cluster's
namespace: ``webhook:<hook>:failures`` (a counter) and
``webhook:<hook>:sleep`` (a key that expires when the sleep ends), and
``webhook:<hook>:version``, raised by every change.  Counting
a failure, starting a sleep and announcing the result on
``<namespace>:webhook-health`` is one Lua script, so concurrent failures on
different nodes each count and the ``max_errors``-th starts the sleep
wherever it happens.

The dispatcher asks :meth:`RedisHealth.asleep` on the reactor thread and
needs the answer at once, so each node keeps a local view: its own
failures count in it immediately, and the scripts' answers and the other
nodes' announcements correct it.  A script's answer and another node's
announcement travel on different connections and may arrive in either
order, so each carries the version it made, and the view never goes back
to an older one.  Sleeps travel as durations (the time left),
so the nodes' clocks need not agree.  A node that joins later learns a hook's
state from the next announcement about it.
"""

from __future__ import annotations

import json

from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.interfaces.webhooks import IWebhookHealth
from twisted_spark.webhooks.health import LocalHealth

log = Logger()

#: Milliseconds a failure count outlives its last failure (a deleted hook's
#: keys vanish even if no node forgot it).
COUNT_TTL_MS = 7 * 24 * 3600 * 1000

FAIL = """
local version = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local count = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local sleep = 0
if count >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  sleep = tonumber(ARGV[2])
else
  sleep = math.max(redis.call('PTTL', KEYS[2]), 0)
end
redis.call('PUBLISH', ARGV[4], cjson.encode({ARGV[5], ARGV[6], count, sleep, version}))
return {count, sleep, version}
"""

RESET = """
if redis.call('DEL', KEYS[1], KEYS[2]) == 0 then
  return 0
end
local version = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[1], cjson.encode({ARGV[2], ARGV[3], 0, 0, version}))
return version
"""


@implementer(IWebhookHealth)
class RedisHealth:
    """Failure counts and sleeps of every hook, one for the whole cluster.

    :param link: the cluster's :class:`~twisted_spark.cluster.link.RedisLink`.
    :param node_id: this node's id (it ignores its own announcements).
    :param clock: ``IReactorTime``.
    :param max_errors: consecutive failed deliveries that start a sleep.
    :param sleep: seconds a sleep lasts.
    """

    def __init__(self, link, node_id: str, clock, max_errors: int = 10,
                 sleep: float = 60.0) -> None:
        self.link = link
        self.node_id = node_id
        self.clock = clock
        self.max_errors = max_errors
        self.sleep = sleep
        #: The channel of the announcements.
        self.channel = link.key("webhook-health")
        #: This node's view (what :meth:`asleep` and :meth:`failures` answer).
        self.local = LocalHealth(clock, max_errors, sleep)
        self.heard = 0
        self._versions: dict[str, int] = {}

    def _keys(self, hook_id: str) -> list[str]:
        return [self.link.key("webhook", hook_id, "failures"),
                self.link.key("webhook", hook_id, "sleep"),
                self.link.key("webhook", hook_id, "version")]

    def asleep(self, hook_id: str) -> bool:
        return self.local.asleep(hook_id)

    def failures(self, hook_id: str) -> int:
        return self.local.failures(hook_id)

    def failed(self, hook_id: str) -> None:
        self.local.failed(hook_id)
        if self.link.redis is None:
            return  # not connected, or stopped: this node's view only
        d = self.link.redis.eval(
            FAIL, self._keys(hook_id),
            [self.max_errors, int(self.sleep * 1000), COUNT_TTL_MS, self.channel,
             self.node_id, hook_id])
        d.addCallback(lambda answer: self._set(hook_id, *(int(n) for n in answer)))
        d.addErrback(lambda f: log.failure(
            "Could not count a failure of webhook {hook_id} in Redis", f, hook_id=hook_id))

    def succeeded(self, hook_id: str) -> None:
        self.local.succeeded(hook_id)
        self._reset(hook_id)

    def forget(self, hook_id: str) -> None:
        self.local.forget(hook_id)
        self._versions.pop(hook_id, None)
        self._reset(hook_id)

    def _reset(self, hook_id: str) -> None:
        if self.link.redis is None:
            return
        d = self.link.redis.eval(RESET, self._keys(hook_id),
                                 [self.channel, self.node_id, hook_id, COUNT_TTL_MS])
        d.addCallback(lambda version: self._set(hook_id, 0, 0, int(version)) if version else None)
        d.addErrback(lambda f: log.failure(
            "Could not reset webhook {hook_id}'s failures in Redis", f, hook_id=hook_id))

    def _set(self, hook_id: str, count: int, sleep_ms: int, version: int) -> None:
        """Make the local view Redis's ``version``: ``count`` failures, asleep
        ``sleep_ms`` more (unless the view is already as new)."""
        if version <= self._versions.get(hook_id, 0):
            return
        self._versions[hook_id] = version
        until = self.clock.seconds() + sleep_ms / 1000 if sleep_ms > 0 else None
        self.local.assume(hook_id, count, until)

    def received(self, message: str) -> None:
        """Another node counted a failure, or a success or deletion reset a hook."""
        try:
            node, hook_id, *numbers = json.loads(message)
            count, sleep_ms, version = (int(n) for n in numbers)
        except (TypeError, ValueError):
            log.warn("Ignoring a malformed message on {channel}", channel=self.channel)
            return
        if node == self.node_id:
            return
        self.heard += 1
        self._set(str(hook_id), count, sleep_ms, version)

