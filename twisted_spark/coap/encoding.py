# -*- test-case-name: tests.test_coap_messages -*-
"""Field encodings shared by the builders of both directions (PROTOCOL.md §5-§6).

Tokens are given as an int 0..255 or as bytes.  Requests that carry a
token always get exactly one byte (TKL = 1); events to devices never get
one (TKL = 0).  Names and texts are ``str`` (UTF-8) or ``bytes``.
"""

from __future__ import annotations

import re

from twisted_spark.coap.codec import MessageType, OptionNumber

Token = int | bytes
Text = str | bytes

#: An event's TTL when it carries no Max-Age (§9.1).
DEFAULT_TTL = 60
#: Devices send Max-Age as 3 bytes.
MAX_DEVICE_TTL = 0xFFFFFF

CON = MessageType.CON
NON = MessageType.NON
ACK = MessageType.ACK
PATH = OptionNumber.URI_PATH
MAX_AGE = OptionNumber.MAX_AGE
QUERY = OptionNumber.URI_QUERY

DEVICE_ID = re.compile(rb"[0-9a-fA-F]{24}")


def request_token(token: Token) -> bytes:
    """A request token: exactly one byte."""
    if isinstance(token, int):
        if not 0 <= token <= 0xFF:
            raise ValueError(f"token must be 0..255, got {token}")
        return bytes((token,))
    if len(token) != 1:
        raise ValueError(f"request tokens are exactly 1 byte, got {len(token)}")
    return bytes(token)


def echo_token(token: Token) -> bytes:
    """A token copied into a reply: whatever the request carried (0..8 bytes)."""
    if isinstance(token, int):
        return request_token(token)
    if len(token) > 8:
        raise ValueError(f"token is {len(token)} bytes; at most 8 allowed")
    return bytes(token)


def text_bytes(value: Text) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def name_bytes(value: Text, what: str) -> bytes:
    encoded = text_bytes(value)
    if not encoded:
        raise ValueError(f"{what} name must not be empty")
    return encoded


def event_options(name: Text, max_age: bytes | None, private: bool) -> list:
    options = [(PATH, b"E" if private else b"e"), (PATH, name_bytes(name, "event"))]
    if max_age is not None:
        options.append((MAX_AGE, max_age))
    return options


def payload_bytes(data: Text | None) -> bytes:
    return b"" if data is None else text_bytes(data)

