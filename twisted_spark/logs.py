# -*- test-case-name: tests.test_logs -*-
"""Log output: classic text lines, or one JSON object per line for log shippers.

:func:`text_observer` writes what twisted's ``textFileLogObserver`` writes,
formatting each second's timestamp once instead of once per event (the
access log writes a line per request; the timestamp was half its cost), and
each message with ``str.format_map`` where that gives the same text.

Each line has ``time`` (ISO 8601, UTC), ``level``, ``namespace`` and
``message`` (the formatted text a person would read), plus the fields a
shipper can index when the event carries them: :data:`FIELDS` (device id,
request id, user, route, status, duration...), and ``traceback`` for a
logged failure.  ``python -m twisted_spark serve --log-format json`` uses
:func:`json_observer`; under ``twistd``, pass ``--logger
twisted_spark.logs.json_observer`` to twistd as well.  The text format,
the default, is unchanged.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from twisted.logger import FileLogObserver, formatEvent, formatEventAsClassicLogText, formatTime

#: Event keys copied into the JSON object when present.
FIELDS = ("device_id", "request_id", "user", "route", "method", "uri", "status", "duration",
          "client", "ip", "reason")


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def json_line(event: dict) -> str:
    """``event`` as one line of JSON (ends with a newline)."""
    when = event.get("log_time")
    level = event.get("log_level")
    record = {
        "time": (datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
                 if when is not None else None),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace") or event.get("system") or "-",
        "message": formatEvent(event),
    }
    for key in FIELDS:
        if key in event:
            record[key] = _plain(event[key])
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class _TimestampPerSecond:
    """``formatTime(when)`` (RFC 3339, whole seconds, local offset), one call per second."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._text = "-"

    def __call__(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = int(when // 1)
        if second != self._second:
            self._text = formatTime(second)
            self._second = second
        return self._text


def classic_line(event: dict, timestamp) -> str | None:
    """The line ``formatEventAsClassicLogText(event, timestamp)`` gives, made faster.

    Twisted formats each message through ``string.Formatter`` in Python, to
    allow its ``{callable()}`` syntax; ``str.format_map`` does the rest of
    that syntax in C, several times faster.  An event it cannot do (a call in
    the format, a failure, a format that does not fit the event) takes
    Twisted's own path, which also says why an event is unformattable.
    """
    format = event.get("log_format")
    if (type(format) is not str or "()" in format or "log_failure" in event
            or "log_flattened" in event):
        return formatEventAsClassicLogText(event, formatTime=timestamp)
    try:
        text = format.format_map(event)
    except Exception:
        return formatEventAsClassicLogText(event, formatTime=timestamp)
    if not text:
        return None
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        system = f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"
    line = f"{timestamp(event.get('log_time'))} [{system}] {text}\n"
    return line if "\n" not in text else line[:-1].replace("\n", "\n\t") + "\n"


def text_observer(out) -> FileLogObserver:
    """Classic text lines (``2026-11-30T23:20:26+0000 [namespace#info] message``) to ``out``."""
    timestamp = _TimestampPerSecond()
    return FileLogObserver(out, lambda event: classic_line(event, timestamp))


def json_observer(out=None) -> FileLogObserver:
    """A log observer writing :func:`json_line` lines to ``out`` (standard output).

    Takes no argument when ``twistd --logger`` calls it.
    """
    return FileLogObserver(out if out is not None else sys.stdout, json_line)
