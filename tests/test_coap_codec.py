"""The CoAP codec (twisted_spark.coap.codec)."""

import aiocoap.message as aiocoap_message
import pytest
import vectors

from twisted_spark.coap.codec import (
    CoapError,
    CoapMessage,
    Code,
    MessageType,
    OptionNumber,
    decode,
    decode_uint,
    encode,
    encode_message,
    encode_uint,
)

ALL_PLAINTEXTS = [
    pytest.param(row.plaintext, id=f"13.2-{row.name}") for row in vectors.FIXTURE.values()
] + [pytest.param(row.plaintext, id=f"13.3-{row.name}") for row in vectors.TRANSCRIPT.values()]
ALL_PLAINTEXTS += [
    pytest.param(vectors.CHAIN_PING.plaintext, id="13.4-ping"),
    pytest.param(vectors.CHAIN_VARIABLE_REQUEST.plaintext, id="13.4-variable-request"),
    pytest.param(vectors.EVENT_WEATHER, id="13.5-event-weather"),
    pytest.param(vectors.SUBSCRIBE_WEATHER_DEVICE, id="13.5-subscribe"),
    pytest.param(vectors.PRESENCE_ANNOUNCEMENT, id="13.5-presence"),
]


@pytest.mark.parametrize("raw", ALL_PLAINTEXTS)
def test_every_vector_round_trips_exactly(raw):
    """decode then encode gives the same bytes (split paths, 3-byte Max-Age included)."""
    message = decode(raw)
    assert message.encode() == raw
    assert encode(message) == raw


def test_decode_function_call_fields():
    message = decode(vectors.FIXTURE["function_call"].plaintext)
    assert message == CoapMessage(
        MessageType.CON,
        Code.POST,
        0xABCD,
        b"\xef",
        ((11, b"f"), (11, b"brew"), (15, b"32,240")),
        b"",
    )
    assert message.type is MessageType.CON
    assert message.uri_path == ["f", "brew"]
    assert message.uri_query == [b"32,240"]
    assert message.path_char == "f"
    assert message.max_age is None


def test_decode_ack_with_payload():
    message = decode(vectors.FIXTURE["describe_response"].plaintext)
    assert message.type is MessageType.ACK
    assert message.code == Code.CONTENT
    assert message.message_id == 0xF649
    assert message.token == b"\x66"
    assert message.options == ()
    assert message.payload == vectors.DESCRIBE_JSON
    assert message.path_char == ""


def test_decode_split_path_and_max_age():
    message = decode(vectors.TRANSCRIPT["event_long_split_path"].plaintext)
    assert message.uri_path == ["e", "a", "long-coap-option", "another-long-path", "b"]
    assert message.max_age == 60
    assert message.payload == b"xyz"
    assert message.token == b""


def test_decode_three_byte_max_age():
    message = decode(vectors.TRANSCRIPT["publish_lake_depth"].plaintext)
    assert message.option_values(OptionNumber.MAX_AGE) == [bytes.fromhex("005460")]
    assert message.max_age == 21600


def test_decode_empty_messages():
    ping = decode(bytes.fromhex("400097b3"))
    assert (ping.type, ping.code, ping.message_id, ping.token, ping.options, ping.payload) == (
        MessageType.CON,
        Code.EMPTY,
        0x97B3,
        b"",
        (),
        b"",
    )
    rst = decode(bytes.fromhex("70001234"))
    assert rst.type is MessageType.RST


def test_decode_accepts_bytearray_and_memoryview():
    raw = vectors.FIXTURE["chunk"].plaintext
    assert decode(bytearray(raw)) == decode(raw)
    assert decode(memoryview(raw)).payload == vectors.CHUNK_TEXT
    assert isinstance(decode(memoryview(raw)).payload, bytes)


# -- option length encoding (§13.5 last line) ---------------------------------------------

HEADER = bytes.fromhex("40010000")


@pytest.mark.parametrize(
    ("option_header", "length"),
    [
        (b"\xbc", 12),
        (b"\xbd\x00", 13),
        (b"\xbd\xff", 268),
        (b"\xbe\x00\x00", 269),
        (b"\xbe\x01\x00", 525),
    ],
)
def test_option_length_decoding(option_header, length):
    value = bytes(range(256)) * 3
    raw = HEADER + option_header + value[:length]
    message = decode(raw)
    assert message.options == ((11, value[:length]),)
    assert message.encode() == raw, "encoding is minimal and matches"


def test_option_reserved_length_15():
    with pytest.raises(CoapError, match="reserved option length"):
        decode(HEADER + b"\xbf" + bytes(20))


def test_option_reserved_delta_15():
    with pytest.raises(CoapError, match="reserved option delta"):
        decode(HEADER + b"\xf1x")


@pytest.mark.parametrize(
    ("number", "header"),
    [
        (11, b"\xb1"),
        (12, b"\xc1"),
        (13, b"\xd1\x00"),
        (268, b"\xd1\xff"),
        (269, b"\xe1\x00\x00"),
        (2000, b"\xe1" + (2000 - 269).to_bytes(2, "big")),
    ],
)
def test_option_delta_encoding(number, header):
    raw = encode_message(MessageType.CON, Code.GET, 1, b"", ((number, b"z"),))
    assert raw == HEADER[:3] + b"\x01" + header + b"z"
    assert decode(raw).options == ((number, b"z"),)


def test_repeated_options_use_delta_zero():
    """A second Uri-Query (the fast-OTA chunk index) is delta 0: header 0x02."""
    raw = encode_message(
        MessageType.CON,
        Code.POST,
        2,
        b"\x01",
        ((11, b"c"), (15, b"\x01\x02\x03\x04"), (15, b"\x00\x07")),
    )
    assert raw == bytes.fromhex("41020002 01 b163 4401020304 020007")


def test_empty_option_value():
    raw = encode_message(
        MessageType.CON, Code.POST, 3, b"\x01", ((11, b"f"), (11, b"x"), (15, b""))
    )
    assert raw.endswith(b"\x40")
    assert decode(raw).uri_query == [b""]


def test_payload_marker_only_with_payload():
    assert encode_message(MessageType.NON, Code.POST, 4, b"", ((11, b"h"),), b"") == bytes.fromhex(
        "50020004b168"
    )
    assert encode_message(MessageType.NON, Code.POST, 4, b"", ((11, b"h"),), b"!") == bytes.fromhex(
        "50020004b168ff21"
    )


# -- garbage --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "shorter than the 4-byte header"),
        (b"\x40\x01\x00", "shorter than the 4-byte header"),
        (b"\x00\x01\x00\x00", "version 0"),
        (b"\x80\x01\x00\x00", "version 2"),
        (b"\xc0\x01\x00\x00", "version 3"),
        (b"\x49\x01\x00\x00" + bytes(9), "token length 9"),
        (b"\x4f\x01\x00\x00" + bytes(15), "token length 15"),
        (b"\x41\x01\x00\x00", "token runs past"),
        (b"\x48\x01\x00\x00" + bytes(7), "token runs past"),
        (b"\x40\x01\x00\x00\xb5abc", "runs past the end"),
        (b"\x40\x01\x00\x00\xbd", "runs past the end"),
        (b"\x40\x01\x00\x00\xe1\x00", "runs past the end"),
        (b"\x40\x01\x00\x00\xbd\x05" + bytes(10), "runs past the end"),
        (b"\x40\x01\x00\x00\xb1h\xff", "payload marker with an empty payload"),
        (b"\x40\x01\x00\x00\xff", "payload marker with an empty payload"),
    ],
)
def test_garbage_raises_coap_error(raw, reason):
    with pytest.raises(CoapError, match=reason):
        decode(raw)


def test_coap_error_is_value_error():
    assert issubclass(CoapError, ValueError)


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_message(MessageType.CON, 1, 0x10000),
        lambda: encode_message(MessageType.CON, 1, -1),
        lambda: encode_message(MessageType.CON, 256, 1),
        lambda: encode_message(4, 1, 1),
        lambda: encode_message(MessageType.CON, 1, 1, bytes(9)),
        lambda: encode_message(MessageType.CON, 1, 1, b"", ((15, b"a"), (11, b"b"))),
        lambda: encode_message(MessageType.CON, 1, 1, b"", ((11, bytes(65536 + 269)),)),
    ],
    ids=[
        "mid-high",
        "mid-negative",
        "code",
        "type",
        "token-9",
        "options-descending",
        "option-too-long",
    ],
)
def test_encode_refuses_impossible_messages(call):
    with pytest.raises(CoapError):
        call()


def test_uint_helpers():
    assert encode_uint(0) == b""
    assert encode_uint(60) == b"<"
    assert encode_uint(255) == b"\xff"
    assert encode_uint(256) == b"\x01\x00"
    assert encode_uint(21600) == b"\x54\x60"
    assert encode_uint(0xFFFFFFFF) == b"\xff" * 4
    with pytest.raises(CoapError):
        encode_uint(-1)
    assert decode_uint(b"") == 0
    assert decode_uint(b"\x00\x00\x3c") == 60


# -- cross-check with aiocoap's decoder -----------------------------------------------


@pytest.mark.parametrize("raw", ALL_PLAINTEXTS)
def test_agrees_with_aiocoap(raw):
    """aiocoap reads every vector the same way our decoder does."""
    theirs = aiocoap_message.Message.decode(raw)
    ours = decode(raw)
    assert (int(theirs.mtype), int(theirs.code), theirs.mid, theirs.token, theirs.payload) == (
        ours.type,
        ours.code,
        ours.message_id,
        ours.token,
        ours.payload,
    )

    # aiocoap re-encodes uint options (Max-Age) minimally, so compare their values
    def normal(number, value):
        return (number, decode_uint(value) if number == OptionNumber.MAX_AGE else value)

    their_options = [normal(int(o.number), o.encode()) for o in theirs.opt.option_list()]
    assert their_options == [normal(number, value) for number, value in ours.options]
