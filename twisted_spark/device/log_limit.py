# -*- test-case-name: tests.test_device_log_limit -*-
"""Per-source log budgets, so that a flood of bogus connections cannot flood the log.

Each bogus device connection is worth one log line to an operator, but not
23 500 of them in 20 s.  :class:`LogLimiter` lets the first ``burst`` lines
per source address through in each ``window`` (starting at that source's
first line), counts the rest, and when the window ends logs one line:
``Suppressed K similar messages from ADDR in the last 60 s (last: ...)``.

Time comes from the injected clock; one timer serves every source (windows
have the same length, so they end in the order they started).  The table
holds at most ``max_sources`` addresses: past that, new addresses share one
budget under :data:`OTHER_SOURCES`, so many addresses cannot grow it either.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.logger import Logger, LogLevel, formatEvent

#: The shared entry of addresses that did not fit the table.
OTHER_SOURCES = "other addresses (too many to track one by one)"

_LEVELS = (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)


class _Window:
    """What one source logged since ``start``."""

    __slots__ = ("start", "count", "suppressed", "level", "last")

    def __init__(self, start):
        self.start = start
        self.count = 0
        self.suppressed = 0
        self.level = LogLevel.debug
        self.last = None


class LogLimiter:
    """The first ``burst`` lines per source per ``window`` seconds, then one summary.

    :param clock: ``IReactorTime``.
    :param log: the ``Logger`` the summaries go to.
    """

    def __init__(self, clock, burst=5, window=60.0, max_sources=1000, log=None):
        self.clock = clock
        self.burst = burst
        self.window = window
        self.max_sources = max_sources
        self.log = log if log is not None else Logger()
        self._windows = OrderedDict()
        self._suppressing = 0
        self._timer = None

    def __len__(self):
        return len(self._windows)

    def emit(self, source, logger, level, format, **kwargs):
        """Log ``format`` through ``logger`` unless ``source`` spent its budget.

        Returns True when the line was logged, False when it was only counted.
        """
        now = self.clock.seconds()
        self._expire(now)
        window = self._windows.get(source)
        if window is None:
            if len(self._windows) >= self.max_sources:
                source = OTHER_SOURCES
                window = self._windows.get(source)
            if window is None:
                window = self._windows[source] = _Window(now)
        window.count += 1
        if window.count <= self.burst:
            logger.emit(level, format, **kwargs)
            return True
        if not window.suppressed:
            self._suppressing += 1
        window.suppressed += 1
        if _LEVELS.index(level) > _LEVELS.index(window.level):
            window.level = level
        window.last = (format, kwargs)
        if self._timer is None:
            self._arm(now)
        return False

    def flush(self):
        """Log every pending summary now and stop the timer (on shutdown)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        while self._windows:
            self._close(*self._windows.popitem(last=False))

    # -- internals ---------------------------------------------------------------------

    def _expire(self, now):
        windows = self._windows
        while windows:
            source, window = next(iter(windows.items()))
            if window.start + self.window > now:
                return
            del windows[source]
            self._close(source, window)

    def _close(self, source, window):
        if not window.suppressed:
            return
        self._suppressing -= 1
        format, kwargs = window.last
        self.log.emit(
            window.level,
            "Suppressed {count} similar messages from {source} in the last {window:g} s "
            "(last: {last})",
            count=window.suppressed,
            source=source,
            window=self.window,
            last=formatEvent({"log_format": format, **kwargs}),
        )

    def _arm(self, now):
        first = next(iter(self._windows.values()))
        delay = max(0.0, first.start + self.window - now)
        self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self):
        self._timer = None
        now = self.clock.seconds()
        self._expire(now)
        if self._suppressing:
            self._arm(now)
