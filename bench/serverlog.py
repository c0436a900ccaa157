"""Log like a deployed server: each event formatted as ``serve`` formats it, the text discarded.

Without an observer twisted keeps the last 200 log events in memory (with
whatever they refer to: sessions, requests), and a benchmark would not pay
for the log lines a real server writes (an access-log line per request, a
line per device online and offline).
"""

from __future__ import annotations

import os


def log_like_serve() -> None:
    """Begin logging to ``serve``'s text format, into ``/dev/null``."""
    from twisted.logger import globalLogBeginner

    from twisted_spark.logs import text_observer

    sink = open(os.devnull, "w")  # noqa: SIM115 -- lives as long as the process
    globalLogBeginner.beginLoggingTo([text_observer(sink)], redirectStandardIO=False)
