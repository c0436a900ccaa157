# -*- test-case-name: tests.test_cluster_e2e -*-
"""The failed-login throttle of a cluster: one count per address for every node.

Same rule as :class:`~twisted_spark.api.tokens.LoginThrottle` (each attempt
charged before its password is checked, refunded when it was right, at
most ``per_minute`` charges per address in a sliding minute), kept in
Redis: a sorted set per address, ``login:<address>``, whose members are the
charges and whose scores are their times.  Checking and charging is one Lua
script, so concurrent attempts on different nodes each see the ones before
and no node is a loophole.
"""

from __future__ import annotations

import itertools

from twisted.internet import defer

from twisted_spark.api.tokens import too_many_logins

CHARGE = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
end
return ''
"""

WINDOW_MS = 60_000


class SharedLoginThrottle:
    """:class:`~twisted_spark.api.tokens.LoginThrottle` for a cluster; every
    method returns a Deferred.

    :param link: the cluster's :class:`~twisted_spark.cluster.link.RedisLink`.
    :param node_id: this node's id (charges are unique across nodes).
    :param clock: ``IReactorTime``.
    :param per_minute: failures allowed in 60 s before 429; 0 disables.
    """

    def __init__(self, link, node_id: str, clock, per_minute: int) -> None:
        self.link = link
        self.node_id = node_id
        self.clock = clock
        self.per_minute = per_minute
        self._ids = itertools.count()

    def _run(self, address: str, member: str) -> defer.Deferred[None]:
        now = int(self.clock.seconds() * 1000)
        d = self.link.redis.eval(CHARGE, [self.link.key("login", address)],
                                 [now, WINDOW_MS, self.per_minute, member])

        def decided(oldest):
            if oldest not in (None, ""):
                raise too_many_logins((float(oldest) + WINDOW_MS - now) / 1000)

        return d.addCallback(decided)

    def check(self, address: str) -> defer.Deferred[None]:
        """Fails with the 429 ApiError if ``address`` has no attempt left."""
        if not self.per_minute:
            return defer.succeed(None)
        return self._run(address, "")

    def charge(self, address: str) -> defer.Deferred[str | None]:
        """Count an attempt about to check a password (429 if none is left)."""
        if not self.per_minute:
            return defer.succeed(None)
        member = f"{self.node_id}:{next(self._ids)}"
        return self._run(address, member).addCallback(lambda _: member)

    def refund(self, address: str, charge: str | None) -> defer.Deferred:
        """Take back a :meth:`charge` (the password was right)."""
        if charge is None:
            return defer.succeed(None)
        return self.link.redis.zrem(self.link.key("login", address), charge)
