# -*- test-case-name: tests.test_api_sse -*-
"""The bytes of an SSE event (API.md §5), formatted once however many streams it goes to.

The bus delivers one event to all its subscribers before the next, so a
one-entry identity cache makes every stream after the first reuse the frame
(the same ``bytes`` object), and the same frame framed as an HTTP/1.1 chunk.
"""

from __future__ import annotations

import json

from twisted_spark.models import Event, iso8601

__all__ = ["encode_chunk", "encode_event", "format_event"]

_NAME_UNSAFE = str.maketrans({"\r": " ", "\n": " "})


def format_event(event: Event) -> bytes:
    """The SSE frame of ``event``.

    ``event: <name>\\ndata: {"data":…,"ttl":"60","published_at":"…","coreid":"…"}\\n\\n``
    with the keys in that order, ``ttl`` as a string and ``data`` ``null``
    when absent or empty.  CR and LF in a name (only a device could send
    them) become spaces so a frame can never be split.
    """
    payload = json.dumps(
        {
            "data": event.data or None,
            "ttl": str(event.ttl),
            "published_at": iso8601(event.published_at),
            "coreid": event.coreid,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    name = event.name.translate(_NAME_UNSAFE)
    return f"event: {name}\ndata: {payload}\n\n".encode("utf-8", "replace")


_last_event: Event | None = None
_last_frame = b""
_last_chunk: bytes | None = None


def encode_event(event: Event) -> bytes:
    """:func:`format_event`, cached for the event being fanned out right now."""
    global _last_event, _last_frame, _last_chunk
    if event is not _last_event:
        _last_frame = format_event(event)
        _last_chunk = None
        _last_event = event
    return _last_frame


def encode_chunk(event: Event) -> bytes:
    """:func:`encode_event`'s frame as one HTTP/1.1 chunk (hex length, CRLF, frame, CRLF)."""
    global _last_chunk
    frame = encode_event(event)
    if _last_chunk is None:
        _last_chunk = b"%x\r\n%b\r\n" % (len(frame), frame)
    return _last_chunk
