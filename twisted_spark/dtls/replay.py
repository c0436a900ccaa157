# -*- test-case-name: tests.test_dtls_record -*-
"""The anti-replay sliding window of RFC 6347 §4.1.2.6 (64 records wide).

``check`` before authenticating a record, ``accept`` only after its MAC
verified, so forged records cannot move the window.
"""

from __future__ import annotations

__all__ = ["WINDOW_SIZE", "ReplayWindow"]

WINDOW_SIZE = 64
_MASK = (1 << WINDOW_SIZE) - 1


class ReplayWindow:
    """``latest`` is the highest sequence number accepted (-1: none yet);
    bit i of ``bitmap`` says whether ``latest - i`` was accepted."""

    __slots__ = ("bitmap", "latest")

    def __init__(self, latest: int = -1, bitmap: int = 0) -> None:
        self.latest = latest
        self.bitmap = bitmap & _MASK

    def check(self, sequence: int) -> bool:
        """True if a record with this sequence number may be new."""
        if sequence > self.latest:
            return True
        offset = self.latest - sequence
        if offset >= WINDOW_SIZE:
            return False
        return not (self.bitmap >> offset) & 1

    def accept(self, sequence: int) -> None:
        """Mark an authenticated record as seen."""
        if sequence > self.latest:
            shift = sequence - self.latest
            self.bitmap = ((self.bitmap << shift) | 1) & _MASK if shift < WINDOW_SIZE else 1
            self.latest = sequence
        else:
            self.bitmap |= 1 << (self.latest - sequence)

    def is_newest(self, sequence: int) -> bool:
        """True if ``sequence`` is above everything accepted so far."""
        return sequence > self.latest
