# -*- test-case-name: tests.test_events_publishing -*-
"""Optional server-side limit on device publishes (PROTOCOL.md §9.7).

A token bucket per device session (``--device-publish-rate``): ``rate``
tokens per second, at most ``burst`` (4, the devices' own allowance per
second) saved up; each publish takes one.  A publish that finds no token is
answered with EventSlowdown and dropped (:mod:`twisted_spark.device.ingress`).
A rate of 0 switches the limit off.  Time comes from an injected clock.
"""

from __future__ import annotations

DEFAULT_BURST = 4.0


class TokenBucket:
    """One device's allowance.

    :param rate: tokens added per second; ``0`` = unlimited.
    :param clock: an ``IReactorTime`` (only ``seconds()`` is used).
    :param burst: the most tokens the bucket holds (it starts full).
    """

    __slots__ = ("rate", "burst", "clock", "_tokens", "_at")

    def __init__(self, rate: float, clock, burst: float = DEFAULT_BURST) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._at = clock.seconds()

    def allow(self) -> bool:
        """Take one token if there is one; ``True`` means the publish may go on."""
        if not self.rate:
            return True
        now = self.clock.seconds()
        elapsed = now - self._at
        self._at = now
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
