# -*- test-case-name: tests.test_coap_codec -*-
"""Encode and decode the CoAP subset used on the Spark device link.

PROTOCOL.md §5: RFC 7252 header, token of 0..8 bytes (Spark uses 0 or 1),
options with minimal delta/length encoding, ``0xFF`` then the payload.

This is a small codec of our own rather than ``aiocoap.message.Message``.
bench/bench_codec.py measures both on the same messages, like for like
(Python 3.11.7, aiocoap 0.4.17, 2-core VM; thousands of operations per
second, best of 5 interleaved runs).  Decode = parse, then read every field
as the server does (Uri-Path as text, Max-Age as an int, payload); encode =
wire bytes from a message built beforehand; build+encode = build the message
from prepared fields, then encode:

====================  ============  ============  ============
message               decode        encode        build+encode
                      ours / aio    ours / aio    ours / aio
====================  ============  ============  ============
Hello (device)         502 /  193   1264 /  639    882 /  254
FunctionCall           289 /  118    747 /  418    574 /  157
VariableValue (ACK)    690 /  278   2411 /  930   1419 /  421
Event (with Max-Age)   312 /  118    745 /  347    607 /  147
====================  ============  ============  ============

Over several runs: 2.4-2.9x faster to decode, 1.8-2.6x to encode a built
message, 3.3-4.1x to build and encode (building an aiocoap message, with its typed
option objects, costs more than encoding it).  It also keeps option values as raw bytes
(aiocoap types Uri-Path/Uri-Query as text, but a function argument or a
CRC is arbitrary bytes), and writes options exactly as the builders in
:mod:`twisted_spark.coap.messages` lay them out (aiocoap re-encodes Max-Age
minimally, so it cannot reproduce a device's 3-byte Max-Age).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "Code",
    "CoapError",
    "CoapMessage",
    "MessageType",
    "OptionNumber",
    "decode",
    "decode_uint",
    "encode",
    "encode_message",
    "encode_uint",
]

Buffer = bytes | bytearray | memoryview
OptionList = Sequence[tuple[int, bytes]]

#: The largest option delta or length the 2-byte extended form can hold.
_MAX_OPTION_LENGTH = 0xFFFF + 269


class CoapError(ValueError):
    """Bytes that are not a well-formed CoAP message (or cannot become one)."""


class MessageType(IntEnum):
    """The 2-bit CoAP message type."""

    CON = 0
    NON = 1
    ACK = 2
    RST = 3


class Code(IntEnum):
    """CoAP codes seen on the Spark link (PROTOCOL.md §5.2), as c.dd bytes."""

    EMPTY = 0x00
    GET = 0x01
    POST = 0x02
    PUT = 0x03
    CREATED = 0x41
    CHANGED = 0x44
    CONTENT = 0x45
    BAD_REQUEST = 0x80
    NOT_FOUND = 0x84
    INTERNAL_SERVER_ERROR = 0xA0
    SERVICE_UNAVAILABLE = 0xA3


class OptionNumber(IntEnum):
    """CoAP option numbers used on the Spark link."""

    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15


_TYPES = tuple(MessageType)


def encode_uint(value: int) -> bytes:
    """Minimal big-endian unsigned encoding (0 -> empty), as CoAP uint options use."""
    if value < 0:
        raise CoapError(f"unsigned option value cannot be negative: {value}")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_uint(value: Buffer) -> int:
    """Big-endian unsigned integer of any length (empty -> 0)."""
    return int.from_bytes(value, "big")


class CoapMessage(NamedTuple):
    """One CoAP message: header fields, options in wire order, payload.

    ``options`` holds (number, raw value bytes) pairs; the properties decode
    the ones Spark uses.  ``type`` is a :class:`MessageType`, ``code`` an int byte
    (compare with :class:`Code` members).
    """

    type: int
    code: int
    message_id: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = b""

    def option_values(self, number: int) -> list[bytes]:
        """Values of every option with this number, in order."""
        return [value for option, value in self.options if option == number]

    @property
    def uri_path(self) -> list[str]:
        """Uri-Path segments as text (UTF-8, undecodable bytes replaced)."""
        return [
            value.decode("utf-8", "replace")
            for option, value in self.options
            if option == OptionNumber.URI_PATH
        ]

    @property
    def uri_query(self) -> list[bytes]:
        """Uri-Query values as raw bytes."""
        return self.option_values(OptionNumber.URI_QUERY)

    @property
    def max_age(self) -> int | None:
        """The first Max-Age option as an integer, or None when absent."""
        for option, value in self.options:
            if option == OptionNumber.MAX_AGE:
                return decode_uint(value)
        return None

    @property
    def path_char(self) -> str:
        """First character of the first Uri-Path option ('' if none).

        This is the byte the device firmware dispatches on (§5.4).
        """
        for option, value in self.options:
            if option == OptionNumber.URI_PATH:
                return chr(value[0]) if value else ""
            if option > OptionNumber.URI_PATH:
                break
        return ""

    def encode(self) -> bytes:
        """Wire bytes of this message."""
        return encode_message(
            self.type, self.code, self.message_id, self.token, self.options, self.payload
        )


def _extended(nibble_value: int) -> tuple[int, bytes]:
    """Option delta/length as (nibble, extension bytes), minimal form."""
    if nibble_value < 13:
        return nibble_value, b""
    if nibble_value < 269:
        return 13, bytes((nibble_value - 13,))
    return 14, (nibble_value - 269).to_bytes(2, "big")


def _encode_options(options: Iterable[tuple[int, bytes]]) -> bytes:
    parts = []
    previous = 0
    for number, value in options:
        delta = number - previous
        length = len(value)
        if delta < 0:
            raise CoapError("options must be in ascending option-number order")
        if delta > _MAX_OPTION_LENGTH:
            raise CoapError(
                f"option {number} is {delta} after the previous one; a delta is at most "
                f"{_MAX_OPTION_LENGTH}"
            )
        if length > _MAX_OPTION_LENGTH:
            raise CoapError(f"option {number} value too long ({length} bytes)")
        if delta < 13 and length < 13:
            parts.append(bytes(((delta << 4) | length,)))
        else:
            delta_nibble, delta_ext = _extended(delta)
            length_nibble, length_ext = _extended(length)
            parts.append(bytes(((delta_nibble << 4) | length_nibble,)) + delta_ext + length_ext)
        parts.append(bytes(value))
        previous = number
    return b"".join(parts)


def encode_message(
    mtype: int,
    code: int,
    message_id: int,
    token: bytes = b"",
    options: OptionList = (),
    payload: bytes = b"",
) -> bytes:
    """Wire bytes for a message given field by field.

    Options are written in the order given, which must be ascending by
    number (as §6.2 lays them out); each is minimally encoded.  The
    ``0xFF`` marker is written only when there is a payload.
    """
    if not 0 <= message_id <= 0xFFFF:
        raise CoapError(f"message id out of range: {message_id}")
    if not 0 <= code <= 0xFF:
        raise CoapError(f"code out of range: {code}")
    if not 0 <= mtype <= 3:
        raise CoapError(f"message type out of range: {mtype}")
    tkl = len(token)
    if tkl > 8:
        raise CoapError(f"token is {tkl} bytes; at most 8 allowed")
    header = bytes((0x40 | (mtype << 4) | tkl, code, message_id >> 8, message_id & 0xFF))
    body = _encode_options(options) if options else b""
    if payload:
        return b"".join((header, token, body, b"\xff", payload))
    return b"".join((header, token, body))


def encode(message: CoapMessage) -> bytes:
    """Wire bytes of a :class:`CoapMessage`."""
    return message.encode()


def decode(data: Buffer) -> CoapMessage:
    """Parse one CoAP message.

    Raises :class:`CoapError` for: fewer than 4 bytes, version other than 1,
    token length over 8 or past the end, the reserved nibble 15 in an
    option header, an option running past the end, or a ``0xFF``
    marker with no payload after it.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    end = len(data)
    if end < 4:
        raise CoapError(f"message is {end} bytes, shorter than the 4-byte header")
    first = data[0]
    if first >> 6 != 1:
        raise CoapError(f"CoAP version {first >> 6}, expected 1")
    tkl = first & 0x0F
    if tkl > 8:
        raise CoapError(f"token length {tkl} is over 8")
    position = 4 + tkl
    if position > end:
        raise CoapError("token runs past the end of the message")
    options = []
    number = 0
    try:
        while position < end:
            byte = data[position]
            position += 1
            if byte == 0xFF:
                if position == end:
                    raise CoapError("payload marker with an empty payload")
                break
            delta = byte >> 4
            length = byte & 0x0F
            if delta >= 13:
                if delta == 13:
                    delta = data[position] + 13
                    position += 1
                elif delta == 14:
                    delta = ((data[position] << 8) | data[position + 1]) + 269
                    position += 2
                else:
                    raise CoapError("reserved option delta 15")
            if length >= 13:
                if length == 13:
                    length = data[position] + 13
                    position += 1
                elif length == 14:
                    length = ((data[position] << 8) | data[position + 1]) + 269
                    position += 2
                else:
                    raise CoapError("reserved option length 15")
            number += delta
            stop = position + length
            if stop > end:
                raise CoapError(f"option {number} runs past the end of the message")
            options.append((number, data[position:stop]))
            position = stop
    except IndexError:
        raise CoapError("option header runs past the end of the message") from None
    return CoapMessage(
        _TYPES[(first >> 4) & 3],
        data[1],
        (data[2] << 8) | data[3],
        data[4 : 4 + tkl],
        tuple(options),
        data[position:],
    )
