# -*- test-case-name: tests.test_device_wheel -*-
"""Many far-off deadlines on one reactor timer: the device keep-alive checks.

Every connected device has a keep-alive deadline ``device_ping_interval``
seconds ahead, pushed back by each frame it sends.  As one reactor
``DelayedCall`` each, 10 000 idle devices put 10 000 entries in the reactor's
timer heap, and everything else pays for them: every ``callLater`` and every
expiry walks a deeper heap, and Twisted drops cancelled calls from the heap
only once they are half of it, so the few timers each API request arms and
cancels (head deadline, HTTP timeout, device request timeout) then linger for
seconds, age into the collector's oldest generation and bring its full
collections (of every session object) every few seconds.

A :class:`TimerWheel` keeps the deadlines in slots of ``resolution`` seconds
(a deadline fires at the end of its slot, at most ``resolution`` late) behind
a single ``DelayedCall``; an entry is made once per connection and re-armed,
so keeping a device alive allocates nothing.

A slot can hold hundreds of deadlines (10 000 devices that connected within
seconds of each other); run in one reactor pass they would hold every API
request that arrives meanwhile for milliseconds.  So at most ``batch`` of
them run per pass, and the rest on the next one, after the reactor has
served the sockets that are ready.
"""

from __future__ import annotations

import math


class WheelEntry:
    """One deadline on a :class:`TimerWheel`; the parts of ``IDelayedCall`` the
    device protocol uses (``active``, ``cancel``, ``reset``, ``getTime``)."""

    __slots__ = ("wheel", "func", "time", "slot")

    def __init__(self, wheel, func):
        self.wheel = wheel
        self.func = func
        self.time = 0.0
        self.slot = None

    def active(self) -> bool:
        """True while scheduled (not fired, not cancelled)."""
        return self.slot is not None

    def getTime(self) -> float:
        return self.time

    def cancel(self) -> None:
        if self.slot is not None:
            self.wheel._remove(self)

    def reset(self, seconds: float) -> None:
        """(Re-)arm: call ``func`` ``seconds`` from now (rounded up to the slot)."""
        if self.slot is not None:
            self.wheel._remove(self)
        self.time = self.wheel.clock.seconds() + seconds
        self.wheel._add(self)


class TimerWheel:
    """Deadlines in slots of ``resolution`` seconds behind one ``clock.callLater``."""

    def __init__(self, clock, resolution: float = 0.5, batch: int = 32):
        self.clock = clock
        self.resolution = resolution
        self.batch = batch
        self._slots: dict[int, dict[WheelEntry, None]] = {}
        self._call = None
        self._due_slot: int | None = None

    def __len__(self) -> int:
        return sum(map(len, self._slots.values()))

    def call_later(self, seconds: float, func) -> WheelEntry:
        """A new entry calling ``func()`` ``seconds`` from now (re-arm it with ``reset``)."""
        entry = WheelEntry(self, func)
        entry.reset(seconds)
        return entry

    def _add(self, entry: WheelEntry) -> None:
        slot = math.ceil(entry.time / self.resolution)
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = {}
        bucket[entry] = None
        entry.slot = slot
        if self._due_slot is None or slot < self._due_slot:
            self._arm(slot)

    def _remove(self, entry: WheelEntry) -> None:
        bucket = self._slots.get(entry.slot)
        if bucket is not None:
            bucket.pop(entry, None)
            if not bucket:
                del self._slots[entry.slot]
        entry.slot = None
        if not self._slots and self._call is not None:
            # Nothing left: leave no timer behind (a stopped server, a test clock).
            if self._call.active():
                self._call.cancel()
            self._call = self._due_slot = None

    def _arm(self, slot: int) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._due_slot = slot
        delay = max(0.0, slot * self.resolution - self.clock.seconds())
        self._call = self.clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        """Run up to ``batch`` due entries; any more due run on the next pass."""
        self._call = self._due_slot = None
        now = self.clock.seconds()
        budget = self.batch
        for slot in sorted(slot for slot in self._slots if slot * self.resolution <= now):
            # A callback may cancel or re-arm any entry: take them one by one.
            while budget and (bucket := self._slots.get(slot)):
                entry = next(iter(bucket))
                self._remove(entry)
                budget -= 1
                entry.func()
            if not budget:
                break
        if self._slots:
            first = min(self._slots)
            if self._due_slot != first:
                self._arm(first)
