"""The Spark message catalogue on top of the CoAP codec (PROTOCOL.md §6-§9, §11).

* Builders return the plaintext CoAP bytes of one message, laid out
  exactly as §6.2 says (the device firmware reads fixed offsets, §5.4).
  Server -> device: L{hello} ... L{time_reply}.  Device -> server (for the
  simulator): L{device_hello} ... L{update_done_ack}.
* L{classify} names a message the server received from a device;
  L{classify_device_bound} names one a device received from the server.
* Parsers turn payloads and options into values; malformed input raises
  L{CoapError}.

Tokens are given as an int 0..255 or as bytes.  Requests that carry a
token always get exactly one byte (TKL = 1); events to devices never get
one (TKL = 0).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable
from enum import Enum
from typing import Any, NamedTuple

from twisted_spark.coap.codec import (
    CoapError,
    CoapMessage,
    Code,
    MessageType,
    OptionNumber,
    decode_uint,
    encode_message,
    encode_uint,
)

__all__ = [
    "DEFAULT_TTL",
    "VARIABLE_TYPES",
    "ChunkInfo",
    "DeviceBoundKind",
    "Event",
    "Hello",
    "MessageKind",
    "Subscription",
    "UpdateParams",
    "bad_request_ack",
    "chunk",
    "chunk_missed",
    "chunk_received",
    "classify",
    "classify_device_bound",
    "coded_ack",
    "decode_variable",
    "describe",
    "describe_response",
    "device_event",
    "device_hello",
    "device_update_done",
    "empty_ack",
    "encode_update_begin_payload",
    "encode_variable",
    "event",
    "function_call",
    "function_return",
    "get_time",
    "hello",
    "is_sequenced",
    "merge_describe",
    "parse_chunk",
    "parse_chunk_missed",
    "parse_describe",
    "parse_event",
    "parse_function_call",
    "parse_function_return",
    "parse_hello",
    "parse_signal",
    "parse_subscribe",
    "parse_time_reply",
    "parse_update_begin",
    "parse_update_ready",
    "parse_variable_request",
    "ping",
    "signal",
    "signal_ack",
    "slowdown",
    "subscribe",
    "subscribe_fail",
    "time_reply",
    "update_begin",
    "update_done",
    "update_done_ack",
    "update_ready",
    "variable_request",
    "variable_type_name",
    "variable_value",
]

Token = int | bytes
Text = str | bytes

DEFAULT_TTL = 60
MAX_DEVICE_TTL = 0xFFFFFF  # devices send Max-Age as 3 bytes

_CON = MessageType.CON
_NON = MessageType.NON
_ACK = MessageType.ACK
_PATH = OptionNumber.URI_PATH
_MAX_AGE = OptionNumber.MAX_AGE
_QUERY = OptionNumber.URI_QUERY

_DEVICE_ID = re.compile(rb"[0-9a-fA-F]{24}")


def _token(token: Token) -> bytes:
    """A request token: exactly one byte."""
    if isinstance(token, int):
        if not 0 <= token <= 0xFF:
            raise ValueError(f"token must be 0..255, got {token}")
        return bytes((token,))
    if len(token) != 1:
        raise ValueError(f"request tokens are exactly 1 byte, got {len(token)}")
    return bytes(token)


def _echo_token(token: Token) -> bytes:
    """A token copied into a reply: whatever the request carried (0..8 bytes)."""
    if isinstance(token, int):
        return _token(token)
    if len(token) > 8:
        raise ValueError(f"token is {len(token)} bytes; at most 8 allowed")
    return bytes(token)


def _text(value: Text) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _name(value: Text, what: str) -> bytes:
    encoded = _text(value)
    if not encoded:
        raise ValueError(f"{what} name must not be empty")
    return encoded


# -- server -> device builders --------------------------------------------------


def hello(message_id: int, token: Token | None = None) -> bytes:
    """Server Hello: NON POST /h, no payload (``50 02 II II b1 68``)."""
    raw_token = b"" if token is None else _token(token)
    return encode_message(_NON, Code.POST, message_id, raw_token, ((_PATH, b"h"),))


def describe(message_id: int, token: Token, flags: int | None = None) -> bytes:
    """Describe: CON GET /d [?FL] (FL 1 = system, 2 = application, 3 = both)."""
    options: list[tuple[int, bytes]] = [(_PATH, b"d")]
    if flags is not None:
        if not 0 <= flags <= 0xFF:
            raise ValueError(f"describe flags must fit one byte, got {flags}")
        options.append((_QUERY, bytes((flags,))))
    return encode_message(_CON, Code.GET, message_id, _token(token), options)


def function_call(message_id: int, token: Token, name: Text, argument: Text = b"") -> bytes:
    """FunctionCall: CON POST /f/<name>?<argument>.

    The Uri-Query is always present, even when empty (the device would
    otherwise read a padding byte as the argument length); the argument is
    one option of raw bytes, never split on ``&``.
    """
    return encode_message(
        _CON,
        Code.POST,
        message_id,
        _token(token),
        ((_PATH, b"f"), (_PATH, _name(name, "function")), (_QUERY, _text(argument))),
    )


def variable_request(message_id: int, token: Token, name: Text) -> bytes:
    """VariableRequest: CON GET /v/<name>."""
    return encode_message(
        _CON, Code.GET, message_id, _token(token), ((_PATH, b"v"), (_PATH, _name(name, "variable")))
    )


def signal(message_id: int, token: Token, on: bool) -> bytes:
    """Signal ("raise your hand"): CON PUT /s?01 to start, ?00 to stop."""
    return encode_message(
        _CON,
        Code.PUT,
        message_id,
        _token(token),
        ((_PATH, b"s"), (_QUERY, b"\x01" if on else b"\x00")),
    )


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


def update_begin(message_id: int, token: Token, params: UpdateParams | None = None) -> bytes:
    """UpdateBegin: CON POST /u [ff 12-byte payload]."""
    payload = b"" if params is None else encode_update_begin_payload(params)
    return encode_message(_CON, Code.POST, message_id, _token(token), ((_PATH, b"u"),), payload)


def chunk(
    message_id: int, token: Token, crc: int, data: bytes, index: int | None = None
) -> bytes:
    """Chunk: CON POST /c?<crc32 BE>[?<index BE16>] ff <data>.

    Give C{index} only in fast-OTA mode (never to a Core).  The index is a
    second Uri-Query, so its header is ``02`` (delta 0) where PROTOCOL.md
    §6.2 shows ``42``; the firmware reads only the length nibble, so both
    work, and ``02`` is the valid CoAP form.
    """
    options: list[tuple[int, bytes]] = [(_PATH, b"c"), (_QUERY, crc.to_bytes(4, "big"))]
    if index is not None:
        options.append((_QUERY, index.to_bytes(2, "big")))
    return encode_message(_CON, Code.POST, message_id, _token(token), options, bytes(data))


def update_done(message_id: int, token: Token) -> bytes:
    """Server UpdateDone: CON PUT /u."""
    return encode_message(_CON, Code.PUT, message_id, _token(token), ((_PATH, b"u"),))


def _event_options(name: Text, max_age: bytes | None, private: bool) -> list:
    options = [(_PATH, b"E" if private else b"e"), (_PATH, _name(name, "event"))]
    if max_age is not None:
        options.append((_MAX_AGE, max_age))
    return options


def _payload(data: Text | None) -> bytes:
    return b"" if data is None else _text(data)


def event(
    message_id: int,
    name: Text,
    data: Text | None = None,
    ttl: int = DEFAULT_TTL,
    private: bool = False,
) -> bytes:
    """Event to a device: NON POST /e|E/<name> [Max-Age] [ff data], no token.

    The whole name is one Uri-Path option, as devices send it.  Max-Age
    is present only when ttl != 60, minimally encoded.  Empty data and
    None are the same on the wire (no payload).
    """
    if not 0 <= ttl <= 0xFFFFFFFF:
        raise ValueError(f"ttl must be 0..4294967295, got {ttl}")
    max_age = None if ttl == DEFAULT_TTL else encode_uint(ttl)
    return encode_message(
        _NON, Code.POST, message_id, b"", _event_options(name, max_age, private), _payload(data)
    )


def ping(message_id: int) -> bytes:
    """Ping (either direction): CON 0.00, ``40 00 II II``."""
    return encode_message(_CON, Code.EMPTY, message_id)


def empty_ack(message_id: int) -> bytes:
    """Empty ACK (ping/event/subscribe/chunk-missed ACK): ``60 00 SS SS``."""
    return encode_message(_ACK, Code.EMPTY, message_id)


def bad_request_ack(message_id: int) -> bytes:
    """ACK 4.00 without token: EventSlowdown / SubscribeFail, ``60 80 SS SS``."""
    return encode_message(_ACK, Code.BAD_REQUEST, message_id)


slowdown = bad_request_ack
subscribe_fail = bad_request_ack


def time_reply(message_id: int, token: Token, unix_seconds: int) -> bytes:
    """GetTime reply: ``61 45 SS SS TT ff`` + uint32 BE Unix seconds."""
    return encode_message(
        _ACK,
        Code.CONTENT,
        message_id,
        _echo_token(token),
        (),
        (int(unix_seconds) & 0xFFFFFFFF).to_bytes(4, "big"),
    )


# -- device -> server builders (simulator) -----------------------------------------


def device_hello(
    message_id: int,
    product_id: int = 0xFFFF,
    firmware_version: int = 0xFFFF,
    flags: int = 0,
    platform_id: int | None = None,
) -> bytes:
    """Device Hello: NON POST /h ff PH PL VH VL 00 FL [QH QL] (§7).

    Leave C{platform_id} None for a Core (6-byte payload).
    """
    payload = struct.pack(">HHBB", product_id, firmware_version, 0, flags)
    if platform_id is not None:
        payload += struct.pack(">H", platform_id)
    return encode_message(_NON, Code.POST, message_id, b"", ((_PATH, b"h"),), payload)


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
        _CON if confirmable else _NON,
        Code.POST,
        message_id,
        b"",
        _event_options(name, max_age, private),
        _payload(data),
    )


def subscribe(
    message_id: int,
    prefix: Text | None = None,
    my_devices: bool = False,
    device_id: str | None = None,
) -> bytes:
    """Subscribe: CON GET /e[/<prefix>] [?u] [ff <24-hex device id>] (§9.3).

    Like the firmware, refuses the form with no prefix, no C{my_devices}
    and no device id (a name-less firehose).
    """
    options = [(_PATH, b"e")]
    if prefix:
        options.append((_PATH, _text(prefix)))
    if my_devices:
        options.append((_QUERY, b"u"))
    payload = b""
    if device_id is not None:
        payload = device_id.encode("ascii")
        if not _DEVICE_ID.fullmatch(payload):
            raise ValueError(f"device id must be 24 hex characters, got {device_id!r}")
    if not prefix and not my_devices and not payload:
        raise ValueError("a subscription needs a prefix, my_devices or a device id")
    return encode_message(_CON, Code.GET, message_id, b"", options, payload)


def get_time(message_id: int, token: Token) -> bytes:
    """GetTime request: CON GET /t with a 1-byte token."""
    return encode_message(_CON, Code.GET, message_id, _token(token), ((_PATH, b"t"),))


def function_return(message_id: int, token: Token, value: int) -> bytes:
    """FunctionReturn: NON 2.04 with the call's token, ff int32 BE."""
    return encode_message(
        _NON, Code.CHANGED, message_id, _token(token), (), struct.pack(">i", value)
    )


def variable_value(
    message_id: int, token: Token, value: bytes, separate: bool = False
) -> bytes:
    """VariableValue: piggy-backed ACK 2.05 (Core, Photon < 1.5) or, with
    C{separate}, a NON 2.05 (device OS >= 1.5).  C{value} is already
    encoded (see L{encode_variable})."""
    return encode_message(
        _NON if separate else _ACK, Code.CONTENT, message_id, _token(token), (), bytes(value)
    )


def describe_response(
    message_id: int, token: Token, description: bytes | str | dict
) -> bytes:
    """Describe answer: ACK 2.05 ff <JSON>; a dict is written compactly as the Core does."""
    if isinstance(description, dict):
        description = json.dumps(description, separators=(",", ":"))
    return encode_message(_ACK, Code.CONTENT, message_id, _token(token), (), _text(description))


def update_ready(message_id: int, token: Token, fast: bool | None = None) -> bytes:
    """UpdateReady: NON 2.04 [ff FL]; C{fast} None = no payload (Core)."""
    payload = b"" if fast is None else (b"\x01" if fast else b"\x00")
    return encode_message(_NON, Code.CHANGED, message_id, _token(token), (), payload)


def chunk_received(message_id: int, token: Token, ok: bool = True) -> bytes:
    """ChunkReceived: NON 2.04 (CRC good) or NON 4.00 (CRC mismatch)."""
    return encode_message(
        _NON, Code.CHANGED if ok else Code.BAD_REQUEST, message_id, _token(token)
    )


def chunk_missed(message_id: int, indexes: Iterable[int]) -> bytes:
    """ChunkMissed: CON GET /c ff (uint16 BE index)+."""
    payload = b"".join(index.to_bytes(2, "big") for index in indexes)
    if not payload:
        raise ValueError("chunk_missed needs at least one index")
    return encode_message(_CON, Code.GET, message_id, b"", ((_PATH, b"c"),), payload)


def device_update_done(message_id: int, payload: Text | None = None) -> bytes:
    """Device UpdateDone (fast OTA, device OS): NON PUT /u [ff json]."""
    return encode_message(_NON, Code.PUT, message_id, b"", ((_PATH, b"u"),), _payload(payload))


def coded_ack(message_id: int, token: Token, code: int, payload: bytes = b"") -> bytes:
    """Piggy-backed response: ACK <code> with the request's token [ff payload]."""
    return encode_message(_ACK, code, message_id, _echo_token(token), (), bytes(payload))


def signal_ack(message_id: int, token: Token) -> bytes:
    """Signal ACK: ``61 44 SS SS TT``."""
    return coded_ack(message_id, token, Code.CHANGED)


def update_done_ack(
    message_id: int, token: Token, ok: bool = True, payload: Text | None = None
) -> bytes:
    """UpdateDone ACK: 2.04 [ff json] when complete, 4.00 when chunks are missing."""
    return coded_ack(
        message_id, token, Code.CHANGED if ok else Code.BAD_REQUEST, _payload(payload)
    )


# -- classification ---------------------------------------------------------------


class MessageKind(Enum):
    """What a message from a device is, as the server sees it."""

    HELLO = "hello"
    PING = "ping"
    PUBLIC_EVENT = "public_event"
    PRIVATE_EVENT = "private_event"
    SUBSCRIBE = "subscribe"
    GET_TIME = "get_time"
    CHUNK_MISSED = "chunk_missed"
    UPDATE_DONE = "update_done"
    EMPTY_ACK = "empty_ack"
    ACK_RESPONSE = "ack_response"  # ACK with a code: piggy-backed response, match by token
    SEPARATE_RESPONSE = "separate_response"  # NON/CON with a response code: match by token
    RST = "rst"
    UNKNOWN = "unknown"


_FROM_DEVICE_REQUESTS = {
    (Code.POST, "h"): MessageKind.HELLO,
    (Code.POST, "e"): MessageKind.PUBLIC_EVENT,
    (Code.POST, "E"): MessageKind.PRIVATE_EVENT,
    (Code.GET, "e"): MessageKind.SUBSCRIBE,
    (Code.GET, "t"): MessageKind.GET_TIME,
    (Code.GET, "c"): MessageKind.CHUNK_MISSED,
    (Code.PUT, "u"): MessageKind.UPDATE_DONE,
}


def classify(message: CoapMessage) -> MessageKind:
    """Name a message the server received from a device (§5, §6.1)."""
    mtype = message.type
    code = message.code
    if mtype == _ACK:
        return MessageKind.EMPTY_ACK if code == Code.EMPTY else MessageKind.ACK_RESPONSE
    if mtype == MessageType.RST:
        return MessageKind.RST
    if code == Code.EMPTY:
        return MessageKind.PING if mtype == _CON else MessageKind.UNKNOWN
    if code >= 0x40:
        return MessageKind.SEPARATE_RESPONSE
    return _FROM_DEVICE_REQUESTS.get((code, message.path_char), MessageKind.UNKNOWN)


def is_sequenced(message: CoapMessage) -> bool:
    """Whether the message takes the next device message id (§5.5): not ACK/RST."""
    return message.type != _ACK and message.type != MessageType.RST


class DeviceBoundKind(Enum):
    """What a message from the server is, as the device firmware sees it (§5.4)."""

    HELLO = "hello"
    PING = "ping"
    DESCRIBE = "describe"
    FUNCTION_CALL = "function_call"
    VARIABLE_REQUEST = "variable_request"
    SIGNAL = "signal"
    UPDATE_BEGIN = "update_begin"
    SAVE_BEGIN = "save_begin"
    CHUNK = "chunk"
    UPDATE_DONE = "update_done"
    KEY_CHANGE = "key_change"
    PUBLIC_EVENT = "public_event"
    PRIVATE_EVENT = "private_event"
    TIME_REPLY = "time_reply"
    EMPTY_ACK = "empty_ack"
    ACK_RESPONSE = "ack_response"  # e.g. 60 80 EventSlowdown / SubscribeFail
    UNKNOWN = "unknown"


_TO_DEVICE_REQUESTS = {
    (Code.GET, "v"): DeviceBoundKind.VARIABLE_REQUEST,
    (Code.GET, "d"): DeviceBoundKind.DESCRIBE,
    (Code.POST, "e"): DeviceBoundKind.PUBLIC_EVENT,
    (Code.POST, "E"): DeviceBoundKind.PRIVATE_EVENT,
    (Code.POST, "h"): DeviceBoundKind.HELLO,
    (Code.POST, "f"): DeviceBoundKind.FUNCTION_CALL,
    (Code.POST, "u"): DeviceBoundKind.UPDATE_BEGIN,
    (Code.POST, "c"): DeviceBoundKind.CHUNK,
    (Code.POST, "s"): DeviceBoundKind.SAVE_BEGIN,
    (Code.PUT, "k"): DeviceBoundKind.KEY_CHANGE,
    (Code.PUT, "u"): DeviceBoundKind.UPDATE_DONE,
    (Code.PUT, "s"): DeviceBoundKind.SIGNAL,
}


def classify_device_bound(message: CoapMessage) -> DeviceBoundKind:
    """Name a message a device received from the server, by the firmware's rules.

    Any 2.05 is a time reply (that is how the firmware treats it); other
    codes and paths are dispatched on (code, first Uri-Path character).
    """
    code = message.code
    if code == Code.CONTENT:
        return DeviceBoundKind.TIME_REPLY
    if code == Code.EMPTY:
        if message.type == _CON:
            return DeviceBoundKind.PING
        if message.type == _ACK:
            return DeviceBoundKind.EMPTY_ACK
        return DeviceBoundKind.UNKNOWN
    if message.type == _ACK:
        return DeviceBoundKind.ACK_RESPONSE
    return _TO_DEVICE_REQUESTS.get((code, message.path_char), DeviceBoundKind.UNKNOWN)


# -- parsers ------------------------------------------------------------------------


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
    if isinstance(type_code, str):
        if type_code in _TYPE_CODES:
            return _TYPE_CODES[type_code]
        try:
            return int(type_code)
        except ValueError:
            return None
    return int(type_code)


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
    """Wire bytes of a variable value (the simulator's side of L{decode_variable})."""
    code = _type_code(type_code)
    if code == 1:
        return b"\x01" if value else b"\x00"
    if code == 2:
        return struct.pack(">i", value)
    if code == 9:
        return struct.pack("<d", value)
    return _text(value)


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
    """
    kind = message.path_char
    if kind not in ("e", "E"):
        raise CoapError(f"not an event (path {kind!r})")
    name = _name_after_kind(message)
    if not name:
        raise CoapError("event has no name")
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
        if not _DEVICE_ID.fullmatch(message.payload):
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
    index: int | None
    data: bytes


def parse_chunk(message: CoapMessage) -> ChunkInfo:
    """Read POST /c?<crc>[?<index>] ff <data>.

    Like the firmware, takes the first option after the Uri-Path as the CRC
    and the second, whatever its number, as the index (a second Uri-Query
    is encoded ``02 IH IL``; PROTOCOL.md §6.2 writes ``42``, option 19).
    """
    after_path = [value for number, value in message.options if number != _PATH]
    if not after_path or len(after_path[0]) != 4:
        raise CoapError("chunk has no 4-byte CRC query")
    index = decode_uint(after_path[1]) if len(after_path) > 1 else None
    return ChunkInfo(decode_uint(after_path[0]), index, message.payload)


def parse_chunk_missed(payload: bytes) -> list[int]:
    """The uint16 BE chunk indexes listed in a ChunkMissed."""
    if not payload or len(payload) % 2:
        raise CoapError(f"chunk-missed payload of {len(payload)} bytes is not a list of uint16")
    return [int.from_bytes(payload[i : i + 2], "big") for i in range(0, len(payload), 2)]
