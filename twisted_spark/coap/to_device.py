# -*- test-case-name: tests.test_coap_messages -*-
"""Builders of the messages the server sends a device (PROTOCOL.md §6-§9, §11).

Each returns the plaintext CoAP bytes of one message, laid out exactly as
§6.2 says (the device firmware reads fixed offsets, §5.4).
"""

from __future__ import annotations

from twisted_spark.coap.codec import Code, encode_message, encode_uint
from twisted_spark.coap.encoding import (
    ACK,
    CON,
    DEFAULT_TTL,
    NON,
    PATH,
    QUERY,
    Text,
    Token,
    echo_token,
    event_options,
    name_bytes,
    payload_bytes,
    request_token,
    text_bytes,
)
from twisted_spark.coap.payloads import UpdateParams, encode_update_begin_payload


def hello(message_id: int, token: Token | None = None) -> bytes:
    """Server Hello: NON POST /h, no payload (``50 02 II II b1 68``)."""
    raw_token = b"" if token is None else request_token(token)
    return encode_message(NON, Code.POST, message_id, raw_token, ((PATH, b"h"),))


def describe(message_id: int, token: Token, flags: int | None = None) -> bytes:
    """Describe: CON GET /d [?FL] (FL 1 = system, 2 = application, 3 = both)."""
    options: list[tuple[int, bytes]] = [(PATH, b"d")]
    if flags is not None:
        if not 0 <= flags <= 0xFF:
            raise ValueError(f"describe flags must fit one byte, got {flags}")
        options.append((QUERY, bytes((flags,))))
    return encode_message(CON, Code.GET, message_id, request_token(token), options)


def function_call(message_id: int, token: Token, name: Text, argument: Text = b"") -> bytes:
    """FunctionCall: CON POST /f/<name>?<argument>.

    The Uri-Query is always present, even when empty (the device would
    otherwise read a padding byte as the argument length); the argument is
    one option of raw bytes, never split on ``&``.
    """
    return encode_message(
        CON,
        Code.POST,
        message_id,
        request_token(token),
        ((PATH, b"f"), (PATH, name_bytes(name, "function")), (QUERY, text_bytes(argument))),
    )


def variable_request(message_id: int, token: Token, name: Text) -> bytes:
    """VariableRequest: CON GET /v/<name>."""
    options = ((PATH, b"v"), (PATH, name_bytes(name, "variable")))
    return encode_message(CON, Code.GET, message_id, request_token(token), options)


def signal(message_id: int, token: Token, on: bool) -> bytes:
    """Signal ("raise your hand"): CON PUT /s?01 to start, ?00 to stop."""
    return encode_message(
        CON,
        Code.PUT,
        message_id,
        request_token(token),
        ((PATH, b"s"), (QUERY, b"\x01" if on else b"\x00")),
    )

def update_begin(message_id: int, token: Token, params: UpdateParams | None = None) -> bytes:
    """UpdateBegin: CON POST /u [ff 12-byte payload]."""
    payload = b"" if params is None else encode_update_begin_payload(params)
    token_bytes = request_token(token)
    return encode_message(CON, Code.POST, message_id, token_bytes, ((PATH, b"u"),), payload)


def chunk(
    message_id: int, token: Token, crc: int, data: bytes, index: int | None = None
) -> bytes:
    """Chunk: CON POST /c?<crc32 BE>[?<index BE16>] ff <data>.

    Give ``index`` only in fast-OTA mode (never to a Core).  The index is a
    second Uri-Query, so its header is ``02`` (delta 0) where PROTOCOL.md
    §6.2 shows ``42``; the firmware reads only the length nibble, so both
    work, and ``02`` is the valid CoAP form.
    """
    options: list[tuple[int, bytes]] = [(PATH, b"c"), (QUERY, crc.to_bytes(4, "big"))]
    if index is not None:
        options.append((QUERY, index.to_bytes(2, "big")))
    return encode_message(CON, Code.POST, message_id, request_token(token), options, bytes(data))


def update_done(message_id: int, token: Token) -> bytes:
    """Server UpdateDone: CON PUT /u."""
    return encode_message(CON, Code.PUT, message_id, request_token(token), ((PATH, b"u"),))


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
        NON, Code.POST, message_id, b"", event_options(name, max_age, private), payload_bytes(data)
    )


def ping(message_id: int) -> bytes:
    """Ping (either direction): CON 0.00, ``40 00 II II``."""
    return encode_message(CON, Code.EMPTY, message_id)


def empty_ack(message_id: int) -> bytes:
    """Empty ACK (ping/event/subscribe/chunk-missed ACK): ``60 00 SS SS``."""
    return encode_message(ACK, Code.EMPTY, message_id)


def bad_request_ack(message_id: int) -> bytes:
    """ACK 4.00 without token: EventSlowdown / SubscribeFail, ``60 80 SS SS``."""
    return encode_message(ACK, Code.BAD_REQUEST, message_id)


slowdown = bad_request_ack
subscribe_fail = bad_request_ack


def time_reply(message_id: int, token: Token, unix_seconds: int) -> bytes:
    """GetTime reply: ``61 45 SS SS TT ff`` + uint32 BE Unix seconds."""
    return encode_message(
        ACK,
        Code.CONTENT,
        message_id,
        echo_token(token),
        (),
        (int(unix_seconds) & 0xFFFFFFFF).to_bytes(4, "big"),
    )

