# -*- test-case-name: tests.test_coap_messages -*-
"""Payload and option codecs of the Spark messages (PROTOCOL.md §7-§11).

Parsers turn payloads and options into values; malformed input raises
:class:`~twisted_spark.coap.codec.CoapError`.
"""

from __future__ import annotations

import json
import struct
from typing import Any, NamedTuple

from twisted_spark.coap.codec import CoapError, CoapMessage, decode_uint
from twisted_spark.coap.encoding import DEFAULT_TTL, DEVICE_ID, MAX_AGE, PATH, text_bytes

#: Bytes of a Max-Age option (RFC 7252 §5.10: uint, 0-4 bytes).
MAX_AGE_LENGTH = 4


class UpdateParams(NamedTuple):
    """The optional 12-byte UpdateBegin payload (§11.1)."""

    flags: int
    chunk_size: int
    file_size: int
    destination: int = 0
    address: int = 0

    @property
    def fast_ota(self) -> bool:
        """Flags bit 0: the server can do fast OTA."""
        return bool(self.flags & 1)


_UPDATE_BEGIN = struct.Struct(">BHIBI")


def encode_update_begin_payload(params: UpdateParams) -> bytes:
    """The 12 payload bytes: flags, chunk size, file size, store, address."""
    try:
        return _UPDATE_BEGIN.pack(*params)
    except struct.error as exc:
        raise ValueError(f"update parameters out of range: {exc}") from None


class Hello(NamedTuple):
    """Device Hello payload (§7); platform_id is None for a Core."""

    product_id: int
    firmware_version: int
    flags: int
    platform_id: int | None

    @property
    def ota_upgraded(self) -> bool:
        """Flags bit 0: the firmware was just updated over the air."""
        return bool(self.flags & 1)


def parse_hello(payload: bytes) -> Hello:
    """Parse 6 (Core) or 8+ (Photon and later) Hello payload bytes; extras are ignored."""
    if len(payload) < 6:
        raise CoapError(f"hello payload is {len(payload)} bytes, expected at least 6")
    product_id, version, _reserved, flags = struct.unpack_from(">HHBB", payload)
    platform_id = struct.unpack_from(">H", payload, 6)[0] if len(payload) >= 8 else None
    return Hello(product_id, version, flags, platform_id)


def parse_describe(payload: bytes) -> dict:
    """Decode one Describe answer (a JSON object)."""
    try:
        value = json.loads(bytes(payload).rstrip(b"\x00").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CoapError(f"describe payload is not JSON: {exc}") from None
    except RecursionError:  # [[[[... a few thousand deep fits in one frame
        raise CoapError("describe payload nests too deeply") from None
    if not isinstance(value, dict):
        raise CoapError("describe payload is not a JSON object")
    return value


def merge_describe(current: dict | None, part: dict) -> dict:
    """Merge a Describe part into what is known so far, returning a new dict.

    ``f`` lists are unioned (order kept), ``v`` objects merged, other keys
    (``p``, ``m``, ...) taken from the newer part.
    """
    merged = dict(current or {})
    for key, value in part.items():
        old = merged.get(key)
        if key == "f" and isinstance(value, list) and isinstance(old, list):
            merged[key] = old + [name for name in value if name not in old]
        elif key == "v" and isinstance(value, dict) and isinstance(old, dict):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged


VARIABLE_TYPES = {1: "bool", 2: "int32", 4: "string", 9: "double"}
_TYPE_CODES = {name: code for code, name in VARIABLE_TYPES.items()}


def _type_code(type_code: int | str) -> int | None:
    """The numeric code, or None for anything a device sent that is not one.

    A Describe is JSON from the device: the "code" may be a name, a number
    (``1e999`` is infinity), ``null``, a list...
    """
    if isinstance(type_code, str) and type_code in _TYPE_CODES:
        return _TYPE_CODES[type_code]
    try:
        return int(type_code)
    except (TypeError, ValueError, OverflowError):
        return None


def variable_type_name(type_code: int | str) -> str:
    """API name of a describe type code: bool, int32, string, double (else 'string')."""
    return VARIABLE_TYPES.get(_type_code(type_code) or 0, "string")


def decode_variable(type_code: int | str, payload: bytes) -> bool | int | float | str:
    """Value of a variable from its describe type code (§8.2).

    1 bool (1 byte), 2 int32 BE, 9 double LITTLE-endian, 4 and anything
    unknown: UTF-8 text.
    """
    code = _type_code(type_code)
    if code == 1:
        if len(payload) != 1:
            raise CoapError(f"bool value is {len(payload)} bytes, expected 1")
        return payload[0] != 0
    if code == 2:
        if len(payload) != 4:
            raise CoapError(f"int32 value is {len(payload)} bytes, expected 4")
        return struct.unpack(">i", payload)[0]
    if code == 9:
        if len(payload) != 8:
            raise CoapError(f"double value is {len(payload)} bytes, expected 8")
        return struct.unpack("<d", payload)[0]
    return bytes(payload).decode("utf-8", "replace")


def encode_variable(type_code: int | str, value: Any) -> bytes:
    """Wire bytes of a variable value (the simulator's side of :func:`decode_variable`)."""
    code = _type_code(type_code)
    if code == 1:
        return b"\x01" if value else b"\x00"
    if code == 2:
        return struct.pack(">i", value)
    if code == 9:
        return struct.pack("<d", value)
    return text_bytes(value)


def parse_function_return(payload: bytes) -> int:
    """The int32 BE a function returned."""
    if len(payload) != 4:
        raise CoapError(f"function return is {len(payload)} bytes, expected 4")
    return struct.unpack(">i", payload)[0]


def parse_time_reply(payload: bytes) -> int:
    """Unix seconds from a GetTime reply."""
    if len(payload) < 4:
        raise CoapError(f"time reply is {len(payload)} bytes, expected 4")
    return int.from_bytes(payload[:4], "big")


def parse_update_ready(payload: bytes) -> bool:
    """Whether UpdateReady accepted fast OTA (payload bit 0)."""
    return bool(payload) and bool(payload[0] & 1)


def parse_update_begin(payload: bytes) -> UpdateParams | None:
    """UpdateBegin payload, or None when there is none (Core-style)."""
    if not payload:
        return None
    if len(payload) < _UPDATE_BEGIN.size:
        raise CoapError(f"update-begin payload is {len(payload)} bytes, expected 12")
    return UpdateParams(*_UPDATE_BEGIN.unpack_from(payload))


class Event(NamedTuple):
    """A published event: name, data (None = no payload), ttl seconds, private."""

    name: str
    data: str | None
    ttl: int
    private: bool


def _name_after_kind(message: CoapMessage) -> str:
    return "/".join(message.uri_path[1:])


def parse_event(message: CoapMessage) -> Event:
    """Extract an event from POST /e or /E (either direction).

    Name = Uri-Path segments after the first, joined with '/'; ttl = Max-Age,
    60 when absent or 0; data = payload as UTF-8, None when there is none.
    A Max-Age longer than CoAP's 4 bytes is refused (no device sends one, and
    the ttl could not be passed on to another device).
    """
    kind = message.path_char
    if kind not in ("e", "E"):
        raise CoapError(f"not an event (path {kind!r})")
    name = _name_after_kind(message)
    if not name:
        raise CoapError("event has no name")
    for value in message.option_values(MAX_AGE):
        if len(value) > MAX_AGE_LENGTH:
            raise CoapError(f"event Max-Age is {len(value)} bytes (at most {MAX_AGE_LENGTH})")
    ttl = message.max_age
    if not ttl or ttl <= 0:
        ttl = DEFAULT_TTL
    data = message.payload.decode("utf-8", "replace") if message.payload else None
    return Event(name, data, ttl, kind == "E")


class Subscription(NamedTuple):
    """A device's subscription: name prefix ('' = all), MY_DEVICES scope, one-device filter."""

    prefix: str
    my_devices: bool
    device_id: str | None


def parse_subscribe(message: CoapMessage) -> Subscription:
    """Read GET /e[/prefix] [?u] [ff device-id] (all four §9.3 forms)."""
    if message.path_char != "e":
        raise CoapError("not a subscription (path is not 'e')")
    device_id = None
    if message.payload:
        if not DEVICE_ID.fullmatch(message.payload):
            raise CoapError("subscription payload is not a 24-hex-digit device id")
        device_id = message.payload.decode("ascii").lower()
    return Subscription(_name_after_kind(message), b"u" in message.uri_query, device_id)


def parse_function_call(message: CoapMessage) -> tuple[str, bytes]:
    """(function name, raw argument) of a FunctionCall."""
    name = _name_after_kind(message)
    if not name:
        raise CoapError("function call has no name")
    queries = message.uri_query
    return name, queries[0] if queries else b""


def parse_variable_request(message: CoapMessage) -> str:
    """The variable name of a VariableRequest."""
    name = _name_after_kind(message)
    if not name:
        raise CoapError("variable request has no name")
    return name


def parse_signal(message: CoapMessage) -> bool:
    """True for signal start, False for stop."""
    queries = message.uri_query
    if not queries or not queries[0]:
        raise CoapError("signal has no on/off query")
    return queries[0][0] != 0


class ChunkInfo(NamedTuple):
    """An OTA chunk: CRC-32 the server computed, index (fast OTA only), bytes."""

    crc: int
    index: int | None  # type: ignore[assignment]  # shadows tuple.index on purpose
    data: bytes


def parse_chunk(message: CoapMessage) -> ChunkInfo:
    """Read POST /c?<crc>[?<index>] ff <data>.

    Like the firmware, takes the first option after the Uri-Path as the CRC
    and the second, whatever its number, as the index (a second Uri-Query
    is encoded ``02 IH IL``; PROTOCOL.md §6.2 writes ``42``, option 19).
    """
    after_path = [value for number, value in message.options if number != PATH]
    if not after_path or len(after_path[0]) != 4:
        raise CoapError("chunk has no 4-byte CRC query")
    index = decode_uint(after_path[1]) if len(after_path) > 1 else None
    return ChunkInfo(decode_uint(after_path[0]), index, message.payload)


def parse_chunk_missed(payload: bytes) -> list[int]:
    """The uint16 BE chunk indexes listed in a ChunkMissed."""
    if not payload or len(payload) % 2:
        raise CoapError(f"chunk-missed payload of {len(payload)} bytes is not a list of uint16")
    return [int.from_bytes(payload[i : i + 2], "big") for i in range(0, len(payload), 2)]
