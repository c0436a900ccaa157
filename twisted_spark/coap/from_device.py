# -*- test-case-name: tests.test_coap_messages -*-
"""Builders of the messages a device sends the server (PROTOCOL.md §6-§11).

The simulator (:mod:`twisted_spark.sim`) and the tests speak the device's
half of the protocol with these.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable

from twisted_spark.coap.codec import Code, encode_message
from twisted_spark.coap.encoding import (
    ACK,
    CON,
    DEFAULT_TTL,
    DEVICE_ID,
    MAX_DEVICE_TTL,
    NON,
    PATH,
    QUERY,
    Text,
    Token,
    echo_token,
    event_options,
    payload_bytes,
    request_token,
    text_bytes,
)


def device_hello(
    message_id: int,
    product_id: int = 0xFFFF,
    firmware_version: int = 0xFFFF,
    flags: int = 0,
    platform_id: int | None = None,
) -> bytes:
    """Device Hello: NON POST /h ff PH PL VH VL 00 FL [QH QL] (§7).

    Leave ``platform_id`` None for a Core (6-byte payload).
    """
    payload = struct.pack(">HHBB", product_id, firmware_version, 0, flags)
    if platform_id is not None:
        payload += struct.pack(">H", platform_id)
    return encode_message(NON, Code.POST, message_id, b"", ((PATH, b"h"),), payload)


def device_event(
    message_id: int,
    name: Text,
    data: Text | None = None,
    ttl: int = DEFAULT_TTL,
    private: bool = False,
    confirmable: bool = False,
) -> bytes:
    """Device publish: NON (or CON, WITH_ACK) POST /e|E/<name> [33 t2 t1 t0] [ff data].

    Max-Age is 3 bytes, as the firmware writes it, and only when ttl != 60.
    """
    if not 0 <= ttl <= MAX_DEVICE_TTL:
        raise ValueError(f"device ttl must be 0..{MAX_DEVICE_TTL}, got {ttl}")
    max_age = None if ttl == DEFAULT_TTL else ttl.to_bytes(3, "big")
    return encode_message(
        CON if confirmable else NON,
        Code.POST,
        message_id,
        b"",
        event_options(name, max_age, private),
        payload_bytes(data),
    )


def subscribe(
    message_id: int,
    prefix: Text | None = None,
    my_devices: bool = False,
    device_id: str | None = None,
) -> bytes:
    """Subscribe: CON GET /e[/<prefix>] [?u] [ff <24-hex device id>] (§9.3).

    Like the firmware, refuses the form with no prefix, no ``my_devices``
    and no device id (a name-less firehose).
    """
    options = [(PATH, b"e")]
    if prefix:
        options.append((PATH, text_bytes(prefix)))
    if my_devices:
        options.append((QUERY, b"u"))
    payload = b""
    if device_id is not None:
        payload = device_id.encode("ascii")
        if not DEVICE_ID.fullmatch(payload):
            raise ValueError(f"device id must be 24 hex characters, got {device_id!r}")
    if not prefix and not my_devices and not payload:
        raise ValueError("a subscription needs a prefix, my_devices or a device id")
    return encode_message(CON, Code.GET, message_id, b"", options, payload)


def get_time(message_id: int, token: Token) -> bytes:
    """GetTime request: CON GET /t with a 1-byte token."""
    return encode_message(CON, Code.GET, message_id, request_token(token), ((PATH, b"t"),))


def function_return(message_id: int, token: Token, value: int) -> bytes:
    """FunctionReturn: NON 2.04 with the call's token, ff int32 BE."""
    return encode_message(
        NON, Code.CHANGED, message_id, request_token(token), (), struct.pack(">i", value)
    )


def variable_value(
    message_id: int, token: Token, value: bytes, separate: bool = False
) -> bytes:
    """VariableValue: piggy-backed ACK 2.05 (Core, Photon < 1.5) or, with
    ``separate``, a NON 2.05 (device OS >= 1.5).  ``value`` is already
    encoded (see :func:`encode_variable`)."""
    return encode_message(
        NON if separate else ACK, Code.CONTENT, message_id, request_token(token), (), bytes(value)
    )


def describe_response(
    message_id: int, token: Token, description: bytes | str | dict
) -> bytes:
    """Describe answer: ACK 2.05 ff <JSON>; a dict is written compactly as the Core does."""
    if isinstance(description, dict):
        description = json.dumps(description, separators=(",", ":"))
    body = text_bytes(description)
    return encode_message(ACK, Code.CONTENT, message_id, request_token(token), (), body)


def update_ready(message_id: int, token: Token, fast: bool | None = None) -> bytes:
    """UpdateReady: NON 2.04 [ff FL]; ``fast`` None = no payload (Core)."""
    payload = b"" if fast is None else (b"\x01" if fast else b"\x00")
    return encode_message(NON, Code.CHANGED, message_id, request_token(token), (), payload)


def chunk_received(message_id: int, token: Token, ok: bool = True) -> bytes:
    """ChunkReceived: NON 2.04 (CRC good) or NON 4.00 (CRC mismatch)."""
    return encode_message(
        NON, Code.CHANGED if ok else Code.BAD_REQUEST, message_id, request_token(token)
    )


def chunk_missed(message_id: int, indexes: Iterable[int]) -> bytes:
    """ChunkMissed: CON GET /c ff (uint16 BE index)+."""
    payload = b"".join(index.to_bytes(2, "big") for index in indexes)
    if not payload:
        raise ValueError("chunk_missed needs at least one index")
    return encode_message(CON, Code.GET, message_id, b"", ((PATH, b"c"),), payload)


def device_update_done(message_id: int, payload: Text | None = None) -> bytes:
    """Device UpdateDone (fast OTA, device OS): NON PUT /u [ff json]."""
    return encode_message(NON, Code.PUT, message_id, b"", ((PATH, b"u"),), payload_bytes(payload))


def coded_ack(message_id: int, token: Token, code: int, payload: bytes = b"") -> bytes:
    """Piggy-backed response: ACK <code> with the request's token [ff payload]."""
    return encode_message(ACK, code, message_id, echo_token(token), (), bytes(payload))


def signal_ack(message_id: int, token: Token) -> bytes:
    """Signal ACK: ``61 44 SS SS TT``."""
    return coded_ack(message_id, token, Code.CHANGED)


def update_done_ack(
    message_id: int, token: Token, ok: bool = True, payload: Text | None = None
) -> bytes:
    """UpdateDone ACK: 2.04 [ff json] when complete, 4.00 when chunks are missing."""
    return coded_ack(
        message_id, token, Code.CHANGED if ok else Code.BAD_REQUEST, payload_bytes(payload)
    )

