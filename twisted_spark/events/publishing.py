# -*- test-case-name: tests.test_events_publishing -*-
"""Validation of events published through the API (``POST /v1/devices/events``).

:func:`api_event` turns the request fields into an
:class:`~twisted_spark.models.Event` or raises :class:`InvalidEvent` (a
``ValueError``) whose message is a sentence fit for the 400 error body's
``error_description``.  Field rules (API.md §5):

* ``name``: required, 1–63 characters and at most 63 bytes in UTF-8 (what a
  device can receive), no control characters (CR/LF would break the SSE
  framing), not starting with ``spark`` in any letter case (reserved).
* ``data``: optional; at most ``max_data`` bytes in UTF-8; no NUL (devices
  cut the data there); empty means ``null``.
* Neither may hold an unpaired surrogate (JSON can spell ``"\ud800"``): it
  has no UTF-8 form, so no device or stream could be sent it.
* ``private``: ``true``/``false``/``1``/``0`` in any letter case (or a JSON
  boolean); absent or empty means public.
* ``ttl``: an integer number of seconds, default 60; values ≤ 0 become 60
  (as the devices' own publishes), more than 16777215 (the 24-bit Max-Age a
  device can receive) is refused.
"""

from __future__ import annotations

from twisted_spark.events.visibility import API_COREID, is_system
from twisted_spark.models import Event
from twisted_spark.text import is_utf8_text

MAX_NAME_LENGTH = 63
DEFAULT_TTL = 60
MAX_TTL = 0xFFFFFF

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0", ""})


class InvalidEvent(ValueError):
    """The API request does not describe a publishable event (→ 400).

    :ivar field: the offending field name.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid API event name, else raise :class:`InvalidEvent`."""
    if name is None or name == "":
        raise InvalidEvent("name", "The event name is required.")
    if not isinstance(name, str):
        raise InvalidEvent("name", "The event name must be a string.")
    if not is_utf8_text(name):
        raise InvalidEvent("name", "The event name must not contain unpaired surrogates.")
    if len(name.encode("utf-8")) > MAX_NAME_LENGTH:
        raise InvalidEvent(
            "name", f"The event name must be at most {MAX_NAME_LENGTH} characters long."
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidEvent("name", "The event name must not contain control characters.")
    if is_system(name):
        raise InvalidEvent(
            "name", 'Event names starting with "spark" are reserved for the server.'
        )
    return name


def check_data(data: object, max_data: int) -> str | None:
    """Return ``data`` (``None`` when absent or empty) or raise :class:`InvalidEvent`."""
    if data is None or data == "":
        return None
    if not isinstance(data, str):
        raise InvalidEvent("data", "The event data must be a string.")
    if not is_utf8_text(data):
        raise InvalidEvent("data", "The event data must not contain unpaired surrogates.")
    if len(data.encode("utf-8")) > max_data:
        raise InvalidEvent("data", f"The event data must be at most {max_data} bytes long.")
    if "\x00" in data:
        raise InvalidEvent("data", "The event data must not contain NUL characters.")
    return data


def parse_private(value: object) -> bool:
    """``true``/``false``/``1``/``0`` in any case (or a bool) → bool; absent → False."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidEvent("private", 'The "private" field must be true or false.')


def parse_ttl(value: object) -> int:
    """An integer TTL in seconds; absent → 60, ≤ 0 → 60, above 16777215 refused."""
    if value is None or value == "":
        return DEFAULT_TTL
    if isinstance(value, bool):
        raise InvalidEvent("ttl", "The ttl must be a whole number of seconds.")
    if isinstance(value, int):
        ttl = value
    else:
        try:
            ttl = int(str(value).strip(), 10)
        except ValueError:
            raise InvalidEvent("ttl", "The ttl must be a whole number of seconds.") from None
    if ttl <= 0:
        return DEFAULT_TTL
    if ttl > MAX_TTL:
        raise InvalidEvent("ttl", f"The ttl must be at most {MAX_TTL} seconds.")
    return ttl


def api_event(
    name: object,
    data: object = None,
    private: object = None,
    ttl: object = None,
    *,
    owner: str,
    now: float,
    max_data: int = 255,
) -> Event:
    """Build the :class:`Event` the API caller ``owner`` publishes at ``now``.

    :raises InvalidEvent: with a sentence saying what is wrong.
    """
    return Event(
        name=check_name(name),
        data=check_data(data, max_data),
        ttl=parse_ttl(ttl),
        published_at=now,
        coreid=API_COREID,
        public=not parse_private(private),
        owner=owner,
    )
