# -*- test-case-name: tests.test_dtls_handshake -*-
"""Flights: retransmission timing (RFC 6347 §4.2.4) and packing records into datagrams.

A flight is kept as its messages, not its bytes: every retransmission
gets fresh record sequence numbers, as the peer's replay window requires.
Timers are explicit: the owner asks ``deadline`` and calls back with the
time, so tests drive them with plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetransmitPolicy", "RetransmitTimer", "pack_datagrams"]


@dataclass(frozen=True, slots=True)
class RetransmitPolicy:
    """First wait ``initial`` seconds, double each time up to ``maximum``, give up
    after ``attempts`` retransmissions.  Device OS uses 3 s doubling to 24 s."""

    initial: float = 1.0
    maximum: float = 24.0
    attempts: int = 5


class RetransmitTimer:
    """When to retransmit a flight next, and when to give up."""

    __slots__ = ("_interval", "deadline", "policy", "retransmissions")

    def __init__(self, policy: RetransmitPolicy) -> None:
        self.policy = policy
        self.deadline: float | None = None
        self.retransmissions = 0
        self._interval = policy.initial

    def start(self, now: float) -> None:
        """A new flight went out: wait the initial interval."""
        self.retransmissions = 0
        self._interval = self.policy.initial
        self.deadline = now + self._interval

    def stop(self) -> None:
        self.deadline = None

    def due(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def back_off(self, now: float) -> bool:
        """Count one retransmission and wait longer; False when attempts are used up."""
        if self.retransmissions >= self.policy.attempts:
            self.deadline = None
            return False
        self.retransmissions += 1
        self._interval = min(self._interval * 2, self.policy.maximum)
        self.deadline = now + self._interval
        return True


def pack_datagrams(records: list[bytes], budget: int) -> list[bytes]:
    """Records packed in order into datagrams of at most ``budget`` bytes.

    A record larger than the budget goes alone (the caller fragments
    handshake messages so that this does not happen).
    """
    datagrams: list[bytes] = []
    current = b""
    for record in records:
        if current and len(current) + len(record) > budget:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams
