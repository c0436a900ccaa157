"""Spark message builders, classifiers and parsers (twisted_spark.coap.messages)."""

import json
import struct

import pytest
import vectors

from twisted_spark.coap import messages
from twisted_spark.coap.codec import CoapError, CoapMessage, Code, MessageType, decode
from twisted_spark.coap.messages import DeviceBoundKind, MessageKind

F = vectors.FIXTURE
T = vectors.TRANSCRIPT

# -- server -> device builders against the vectors --------------------------------------

SERVER_BUILDERS = [
    (
        "13.2 function_call",
        lambda: messages.function_call(0xABCD, 0xEF, "brew", "32,240"),
        F["function_call"].plaintext,
    ),
    ("13.2 update_begin", lambda: messages.update_begin(0xABD0, 0x33), F["update_begin"].plaintext),
    (
        "13.2 chunk",
        lambda: messages.chunk(0xABD1, 0x22, 0x01234567, vectors.CHUNK_TEXT),
        F["chunk"].plaintext,
    ),
    ("13.2 update_done", lambda: messages.update_done(0xABD2, 0x11), F["update_done"].plaintext),
    ("13.2 describe", lambda: messages.describe(0xF649, 0x28), F["describe"].plaintext),
    ("13.2 hello", lambda: messages.hello(0xF649), F["server_hello"].plaintext),
    ("13.3 describe", lambda: messages.describe(0x97B2, b"\x28"), T["describe"].plaintext),
    (
        "13.3 function_call",
        lambda: messages.function_call(0x97B2, 0xEF, b"brew", b"32,240"),
        T["function_call"].plaintext,
    ),
    (
        "13.3 variable_request",
        lambda: messages.variable_request(0x97B2, 0x88, "temperature"),
        T["variable_request"].plaintext,
    ),
    (
        "13.4 variable_request",
        lambda: messages.variable_request(0x97B3, 0x29, "temperature"),
        vectors.CHAIN_VARIABLE_REQUEST.plaintext,
    ),
    ("13.3 update_begin", lambda: messages.update_begin(0xABD0, 0x33), T["update_begin"].plaintext),
    ("13.3 update_done", lambda: messages.update_done(0xABD2, 0x11), T["update_done"].plaintext),
    ("13.3 signal start", lambda: messages.signal(0xABCD, 0xEF, True), T["signal_start"].plaintext),
    ("13.3 signal stop", lambda: messages.signal(0xABCD, 0xEF, False), T["signal_stop"].plaintext),
    (
        "13.3 time_reply",
        lambda: messages.time_reply(0x9999, 0x99, 1398367917),
        T["time_reply"].plaintext,
    ),
    ("13.3 event", lambda: messages.event(0xBBBB, "teapot-boiled"), T["event_teapot"].plaintext),
    (
        "13.3 event data",
        lambda: messages.event(0xBBBB, "teapot-boiled", "208F"),
        T["event_teapot_data"].plaintext,
    ),
    (
        "13.3 private event",
        lambda: messages.event(0xBBBC, "t", private=True),
        T["event_private_t"].plaintext,
    ),
    (
        "13.3 function 63",
        lambda: messages.function_call(0xABCD, 0xEF, "brew", vectors.ARG_63),
        T["function_call_63"].plaintext,
    ),
    (
        "13.3 function 64",
        lambda: messages.function_call(0xABCD, 0xEF, "brew", vectors.ARG_64),
        T["function_call_64"].plaintext,
    ),
    ("13.4 ping", lambda: messages.ping(0x97B3), vectors.CHAIN_PING.plaintext),
    ("ack", lambda: messages.empty_ack(0x97B2), T["function_ack"].plaintext),
]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in SERVER_BUILDERS], ids=[c[0] for c in SERVER_BUILDERS]
)
def test_server_builders_match_vectors(build, expected):
    assert build() == expected


# -- device -> server builders against the vectors --------------------------------------

DEVICE_BUILDERS = [
    ("13.2 hello", lambda: messages.device_hello(0xF649), F["device_hello"].plaintext),
    ("13.3 hello", lambda: messages.device_hello(0x97B2), T["device_hello"].plaintext),
    (
        "13.2 function_return",
        lambda: messages.function_return(0xF649, 0xC3, 42),
        F["function_return_42"].plaintext,
    ),
    (
        "13.3 function_return",
        lambda: messages.function_return(0x97B3, 0xEF, 456),
        T["function_return_456"].plaintext,
    ),
    (
        "13.2 bool",
        lambda: messages.variable_value(0xF649, 0x5F, messages.encode_variable(1, False)),
        F["variable_bool_false"].plaintext,
    ),
    (
        "13.2 int",
        lambda: messages.variable_value(0x97B2, 0x88, messages.encode_variable(2, -98765)),
        F["variable_int"].plaintext,
    ),
    (
        "13.2 double",
        lambda: messages.variable_value(0xABCE, 0x5D, messages.encode_variable(9, -104.858)),
        F["variable_double"].plaintext,
    ),
    (
        "13.2 string",
        lambda: messages.variable_value(0xF649, 0x5C, messages.encode_variable(4, "woot")),
        F["variable_string"].plaintext,
    ),
    (
        "13.2 long string",
        lambda: messages.variable_value(
            0xF649, 0x5C, messages.encode_variable("string", vectors.LONG_STRING)
        ),
        F["variable_long_string"].plaintext,
    ),
    (
        "13.2 chunk ok",
        lambda: messages.chunk_received(0xF649, 0x01),
        F["chunk_received_ok"].plaintext,
    ),
    ("13.2 update_ready", lambda: messages.update_ready(0xF649, 0x10), F["update_ready"].plaintext),
    (
        "13.2 describe",
        lambda: messages.describe_response(0xF649, 0x66, vectors.DESCRIBE_JSON),
        F["describe_response"].plaintext,
    ),
    (
        "13.2 describe dict",
        lambda: messages.describe_response(0xF649, 0x66, {"f": ["brew"], "v": {"temperature": 2}}),
        F["describe_response"].plaintext,
    ),
    (
        "13.3 describe reply",
        lambda: messages.describe_response(0x97B2, 0x28, vectors.DESCRIBE_JSON),
        T["describe_reply"].plaintext,
    ),
    (
        "13.3 variable",
        lambda: messages.variable_value(0x97B2, 0x88, struct.pack(">i", -98765)),
        T["variable_value"].plaintext,
    ),
    ("13.3 ack", lambda: messages.empty_ack(0xABD0), T["update_begin_ack"].plaintext),
    ("13.3 update_ready", lambda: messages.update_ready(0x97B3, 0x33), T["update_ready"].plaintext),
    ("13.3 chunk_missed", lambda: messages.chunk_missed(0x97B4, [0]), T["chunk_missed"].plaintext),
    (
        "13.3 chunk ok",
        lambda: messages.chunk_received(0x97B3, 0x22, ok=True),
        T["chunk_received_ok"].plaintext,
    ),
    (
        "13.3 chunk bad",
        lambda: messages.chunk_received(0x97B3, 0x22, ok=False),
        T["chunk_received_bad"].plaintext,
    ),
    (
        "13.3 update_done ack",
        lambda: messages.update_done_ack(0xABD2, 0x11),
        T["update_done_ack"].plaintext,
    ),
    (
        "13.3 publish",
        lambda: messages.device_event(0x97B3, "motion-detected"),
        T["publish_motion"].plaintext,
    ),
    (
        "13.3 publish private ttl",
        lambda: messages.device_event(0x97B3, "lake-depth/1", "28m", ttl=21600, private=True),
        T["publish_lake_depth"].plaintext,
    ),
    (
        "13.3 subscribe device",
        lambda: messages.subscribe(0x97B3, device_id=vectors.DEVICE_ID_53FF),
        T["subscribe_device"].plaintext,
    ),
    (
        "13.3 subscribe mine",
        lambda: messages.subscribe(0x97B3, "motion/open", my_devices=True),
        T["subscribe_my_devices"].plaintext,
    ),
    (
        "13.3 subscribe firehose",
        lambda: messages.subscribe(0x97B3, vectors.FIREHOSE_PREFIX),
        T["subscribe_firehose"].plaintext,
    ),
    ("13.3 get_time", lambda: messages.get_time(0x97B3, 0x98), T["get_time"].plaintext),
    ("13.5 event x", lambda: messages.device_event(0xF649, "x"), vectors.EVENT_X),
    (
        "13.5 event private",
        lambda: messages.device_event(0xF649, "front-door-unlocked", private=True),
        vectors.EVENT_FRONT_DOOR,
    ),
    (
        "13.5 event weather",
        lambda: messages.device_event(
            0x7654, "weather/us/mn/minneapolis", "t:5F,d:-2F,p:15%", ttl=3600
        ),
        vectors.EVENT_WEATHER,
    ),
    (
        "13.5 subscribe weather device",
        lambda: messages.subscribe(0x8888, "weather", device_id=vectors.DEVICE_ID_53FF),
        vectors.SUBSCRIBE_WEATHER_DEVICE,
    ),
    (
        "13.5 subscribe device only",
        lambda: messages.subscribe(0x7000, device_id=vectors.DEVICE_ID_53FF),
        vectors.SUBSCRIBE_DEVICE_ONLY,
    ),
    (
        "13.5 subscribe mine",
        lambda: messages.subscribe(0x1113, "motion/open", my_devices=True),
        vectors.SUBSCRIBE_MOTION_MY_DEVICES,
    ),
    (
        "13.5 subscribe mine only",
        lambda: messages.subscribe(0x1114, my_devices=True),
        vectors.SUBSCRIBE_MY_DEVICES_ONLY,
    ),
    (
        "13.5 subscribe firehose",
        lambda: messages.subscribe(0x1115, "China/ShenZhen/FuTianKouAn"),
        vectors.SUBSCRIBE_CHINA_FIREHOSE,
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in DEVICE_BUILDERS], ids=[c[0] for c in DEVICE_BUILDERS]
)
def test_device_builders_match_vectors(build, expected):
    assert build() == expected


def test_nameless_firehose_subscription_is_refused():
    """The firmware's builder returns -1 for it (§13.5)."""
    with pytest.raises(ValueError, match="prefix, my_devices or a device id"):
        messages.subscribe(1)


def test_subscribe_refuses_bad_device_id():
    with pytest.raises(ValueError):
        messages.subscribe(1, device_id="not-a-device")


# -- exact layout rules (§5.4, §6.2) ----------------------------------------------------

SERVER_REQUESTS_WITH_TOKEN = [
    lambda: messages.describe(1, 2),
    lambda: messages.describe(1, 2, flags=3),
    lambda: messages.function_call(1, 2, "f", ""),
    lambda: messages.variable_request(1, 2, "v"),
    lambda: messages.signal(1, 2, True),
    lambda: messages.update_begin(1, 2, messages.UpdateParams(1, 512, 4096)),
    lambda: messages.chunk(1, 2, 0, b"x"),
    lambda: messages.chunk(1, 2, 0, b"x", index=7),
    lambda: messages.update_done(1, 2),
]


@pytest.mark.parametrize("build", SERVER_REQUESTS_WITH_TOKEN)
def test_server_requests_are_con_with_one_byte_token(build):
    raw = build()
    assert raw[0] == 0x41, "CON, TKL = 1"
    assert raw[5] == 0xB1, "first option: one-letter Uri-Path right after the token"


def test_events_to_devices_have_no_token():
    for raw in (messages.event(1, "a"), messages.event(1, "a/b/c", "d", ttl=5, private=True)):
        assert raw[0] == 0x50
        assert raw[4] == 0xB1


def test_event_name_is_one_uri_path_option():
    raw = messages.event(7, "a/b/c", "xyz")
    assert raw == bytes.fromhex("50020007 b165 05") + b"a/b/c" + b"\xffxyz"
    assert decode(raw).uri_path == ["e", "a/b/c"]


def test_event_long_name_uses_extended_length():
    name = "n" * 40
    raw = messages.event(7, name)
    assert raw[6:8] == bytes((0x0D, 40 - 13))
    assert raw[8:] == name.encode()


@pytest.mark.parametrize(
    ("ttl", "tail"),
    [
        (60, b""),
        (0, b"\x30"),
        (1, b"\x31\x01"),
        (255, b"\x31\xff"),
        (3600, b"\x32\x0e\x10"),
        (21600, b"\x32\x54\x60"),
        (0x10000, b"\x33\x01\x00\x00"),
        (0xFFFFFFFF, b"\x34\xff\xff\xff\xff"),
    ],
)
def test_server_event_max_age_is_minimal_and_only_when_not_60(ttl, tail):
    raw = messages.event(1, "x", ttl=ttl)
    assert raw == bytes.fromhex("50020001b1650178") + tail


def test_server_event_ttl_range():
    with pytest.raises(ValueError):
        messages.event(1, "x", ttl=-1)
    with pytest.raises(ValueError):
        messages.event(1, "x", ttl=2**32)


def test_device_event_max_age_is_three_bytes():
    assert messages.device_event(1, "x", ttl=1).endswith(b"\x33\x00\x00\x01")
    assert messages.device_event(1, "x", ttl=60) == bytes.fromhex("50020001b1650178")
    assert messages.device_event(1, "x", confirmable=True)[0] == 0x40
    with pytest.raises(ValueError):
        messages.device_event(1, "x", ttl=0x1000000)


def test_empty_event_data_is_no_payload():
    assert messages.event(1, "x", b"") == messages.event(1, "x", None) == messages.event(1, "x")


def test_event_needs_a_name():
    with pytest.raises(ValueError):
        messages.event(1, "")


def test_function_call_always_has_uri_query():
    """Even with no argument the Uri-Query is there (header 0x40)."""
    assert (
        messages.function_call(0x1234, 5, "go")
        == bytes.fromhex("41021234 05 b166 02") + b"go" + b"\x40"
    )


def test_function_call_long_argument_forms():
    raw = messages.function_call(1, 2, "f", b"a" * 300)
    assert raw[9:12] == b"\x4e\x00\x1f", "Uri-Query with 2-byte extended length (300 - 269)"
    assert decode(raw).uri_query == [b"a" * 300]


def test_function_argument_is_not_split_on_ampersand():
    raw = messages.function_call(1, 2, "f", "a=1&b=2")
    assert decode(raw).uri_query == [b"a=1&b=2"]


def test_describe_flags():
    assert messages.describe(0x0102, 0x03, flags=3) == bytes.fromhex("41010102 03 b164 4103")
    with pytest.raises(ValueError):
        messages.describe(1, 2, flags=256)


def test_hello_with_token():
    assert messages.hello(0x0102, 0x07) == bytes.fromhex("51020102 07 b168")


def test_chunk_with_index():
    raw = messages.chunk(0xABD1, 0x22, 0x01234567, b"data", index=0x0102)
    assert raw == bytes.fromhex("4102abd1 22 b163 4401234567 020102 ff") + b"data"


def test_update_begin_payload():
    params = messages.UpdateParams(
        flags=1, chunk_size=512, file_size=108000, destination=0, address=0
    )
    raw = messages.update_begin(0x0001, 0x02, params)
    assert raw == bytes.fromhex("41020001 02 b175 ff 01 0200 0001a5e0 00 00000000")
    assert messages.parse_update_begin(decode(raw).payload) == params
    assert params.fast_ota
    with pytest.raises(ValueError):
        messages.encode_update_begin_payload(messages.UpdateParams(0, 70000, 1))


def test_replies():
    assert messages.empty_ack(0xABCD) == bytes.fromhex("6000abcd")
    assert messages.slowdown(0xABCD) == messages.subscribe_fail(0xABCD) == bytes.fromhex("6080abcd")
    assert messages.bad_request_ack(1) == bytes.fromhex("60800001")
    assert messages.ping(0xFFFF) == bytes.fromhex("4000ffff")
    assert messages.signal_ack(0x1111, 0x22) == bytes.fromhex("6144111122")
    assert messages.update_done_ack(0x1111, 0x22, ok=False) == bytes.fromhex("6180111122")
    assert messages.update_done_ack(0x1111, 0x22, payload="{}") == bytes.fromhex("6144111122ff7b7d")
    assert messages.update_ready(1, 2, fast=True) == bytes.fromhex("5144000102ff01")
    assert messages.update_ready(1, 2, fast=False) == bytes.fromhex("5144000102ff00")
    assert messages.device_update_done(5) == bytes.fromhex("50030005b175")
    assert messages.device_update_done(5, "{}") == bytes.fromhex("50030005b175ff7b7d")
    assert messages.variable_value(1, 2, b"\x01", separate=True) == bytes.fromhex("5145000102ff01")
    assert messages.coded_ack(1, b"", Code.NOT_FOUND) == bytes.fromhex("60840001")


def test_time_reply_wraps_to_32_bits():
    assert messages.time_reply(1, b"\x05", 2**32 + 7).endswith(b"\xff\x00\x00\x00\x07")


def test_device_hello_photon():
    raw = messages.device_hello(0x0001, product_id=6, firmware_version=3, flags=1, platform_id=6)
    assert raw == bytes.fromhex("50020001b168ff 0006 0003 00 01 0006")


@pytest.mark.parametrize("token", [256, -1, b"", b"ab"])
def test_request_tokens_are_one_byte(token):
    with pytest.raises(ValueError):
        messages.variable_request(1, token, "v")


def test_reply_tokens_are_echoed():
    assert messages.time_reply(1, b"", 0) == bytes.fromhex("60450001ff00000000")
    assert messages.time_reply(1, b"ab", 0)[:6] == bytes.fromhex("624500016162")
    with pytest.raises(ValueError):
        messages.time_reply(1, bytes(9), 0)


def test_names_must_not_be_empty():
    with pytest.raises(ValueError):
        messages.function_call(1, 2, "")
    with pytest.raises(ValueError):
        messages.variable_request(1, 2, b"")


def test_chunk_missed_needs_indexes():
    assert messages.chunk_missed(1, [1, 2, 0x0102]).endswith(b"\xff\x00\x01\x00\x02\x01\x02")
    with pytest.raises(ValueError):
        messages.chunk_missed(1, [])


# -- classification: server receiving from a device ---------------------------------------

FROM_DEVICE = [
    (F["device_hello"].plaintext, MessageKind.HELLO),
    (bytes.fromhex("400097b3"), MessageKind.PING),
    (T["publish_motion"].plaintext, MessageKind.PUBLIC_EVENT),
    (T["publish_lake_depth"].plaintext, MessageKind.PRIVATE_EVENT),
    (messages.device_event(1, "x", confirmable=True), MessageKind.PUBLIC_EVENT),
    (T["subscribe_device"].plaintext, MessageKind.SUBSCRIBE),
    (T["subscribe_my_devices"].plaintext, MessageKind.SUBSCRIBE),
    (T["subscribe_firehose"].plaintext, MessageKind.SUBSCRIBE),
    (T["get_time"].plaintext, MessageKind.GET_TIME),
    (T["chunk_missed"].plaintext, MessageKind.CHUNK_MISSED),
    (messages.device_update_done(9), MessageKind.UPDATE_DONE),
    (T["function_ack"].plaintext, MessageKind.EMPTY_ACK),
    (T["describe_reply"].plaintext, MessageKind.ACK_RESPONSE),
    (T["variable_value"].plaintext, MessageKind.ACK_RESPONSE),
    (F["variable_double"].plaintext, MessageKind.ACK_RESPONSE),
    (T["update_done_ack"].plaintext, MessageKind.ACK_RESPONSE),
    (T["function_return_456"].plaintext, MessageKind.SEPARATE_RESPONSE),
    (T["update_ready"].plaintext, MessageKind.SEPARATE_RESPONSE),
    (T["chunk_received_ok"].plaintext, MessageKind.SEPARATE_RESPONSE),
    (T["chunk_received_bad"].plaintext, MessageKind.SEPARATE_RESPONSE),
    (F["key_changed"].plaintext, MessageKind.SEPARATE_RESPONSE),
    (messages.variable_value(1, 2, b"\x00", separate=True), MessageKind.SEPARATE_RESPONSE),
    (bytes.fromhex("70001234"), MessageKind.RST),
    (bytes.fromhex("50001234"), MessageKind.UNKNOWN),
    (bytes.fromhex("50021234b178"), MessageKind.UNKNOWN),
    (bytes.fromhex("40021234"), MessageKind.UNKNOWN),
    (bytes.fromhex("40041234b165"), MessageKind.UNKNOWN),
]


@pytest.mark.parametrize(("raw", "kind"), FROM_DEVICE, ids=[k.name for _, k in FROM_DEVICE])
def test_classify_from_device(raw, kind):
    assert messages.classify(decode(raw)) is kind


def test_is_sequenced():
    """ACKs and RSTs reuse ids; everything else takes the next one (§5.5)."""
    assert messages.is_sequenced(decode(bytes.fromhex("400097b3")))
    assert messages.is_sequenced(decode(T["function_return_456"].plaintext))
    assert not messages.is_sequenced(decode(T["function_ack"].plaintext))
    assert not messages.is_sequenced(decode(T["describe_reply"].plaintext))
    assert not messages.is_sequenced(decode(bytes.fromhex("70001234")))


# -- classification: device receiving from the server -------------------------------------

TO_DEVICE = [
    (F["server_hello"].plaintext, DeviceBoundKind.HELLO),
    (messages.hello(1, 2), DeviceBoundKind.HELLO),
    (messages.ping(1), DeviceBoundKind.PING),
    (T["describe"].plaintext, DeviceBoundKind.DESCRIBE),
    (T["function_call"].plaintext, DeviceBoundKind.FUNCTION_CALL),
    (T["variable_request"].plaintext, DeviceBoundKind.VARIABLE_REQUEST),
    (F["variable_request_malformed"].plaintext, DeviceBoundKind.VARIABLE_REQUEST),
    (T["signal_start"].plaintext, DeviceBoundKind.SIGNAL),
    (T["update_begin"].plaintext, DeviceBoundKind.UPDATE_BEGIN),
    (bytes.fromhex("41020001 02 b173"), DeviceBoundKind.SAVE_BEGIN),
    (T["chunk"].plaintext, DeviceBoundKind.CHUNK),
    (T["update_done"].plaintext, DeviceBoundKind.UPDATE_DONE),
    (bytes.fromhex("4103abcf75b16bff00"), DeviceBoundKind.KEY_CHANGE),
    (T["event_teapot"].plaintext, DeviceBoundKind.PUBLIC_EVENT),
    (T["event_private_t"].plaintext, DeviceBoundKind.PRIVATE_EVENT),
    (T["event_split_path"].plaintext, DeviceBoundKind.PUBLIC_EVENT),
    (T["time_reply"].plaintext, DeviceBoundKind.TIME_REPLY),
    (bytes.fromhex("51450001 02"), DeviceBoundKind.TIME_REPLY),
    (messages.empty_ack(5), DeviceBoundKind.EMPTY_ACK),
    (messages.slowdown(5), DeviceBoundKind.ACK_RESPONSE),
    (bytes.fromhex("50001234"), DeviceBoundKind.UNKNOWN),
    (bytes.fromhex("41010001 02 b17a"), DeviceBoundKind.UNKNOWN),
]


@pytest.mark.parametrize(("raw", "kind"), TO_DEVICE, ids=[k.name for _, k in TO_DEVICE])
def test_classify_device_bound(raw, kind):
    assert messages.classify_device_bound(decode(raw)) is kind


# -- parsers ------------------------------------------------------------------------------


def test_parse_hello_core():
    hello = messages.parse_hello(decode(F["device_hello"].plaintext).payload)
    assert hello == messages.Hello(0xFFFF, 0xFFFF, 0, None)
    assert not hello.ota_upgraded


def test_parse_hello_photon_and_extras():
    assert messages.parse_hello(bytes.fromhex("0006 0003 00 01 0006")) == messages.Hello(6, 3, 1, 6)
    assert messages.parse_hello(bytes.fromhex("0006 0003 00 01 0006")).ota_upgraded
    assert messages.parse_hello(
        bytes.fromhex("ffff ffff 00 06 0008 00 0c") + bytes(12)
    ) == messages.Hello(0xFFFF, 0xFFFF, 6, 8)
    assert messages.parse_hello(bytes.fromhex("0001 0002 00 00 07")).platform_id is None


def test_parse_hello_too_short():
    with pytest.raises(CoapError, match="5 bytes"):
        messages.parse_hello(bytes(5))


@pytest.mark.parametrize(
    ("row", "type_code", "value"),
    [
        ("variable_bool_false", 1, False),
        ("variable_int", 2, -98765),
        ("variable_double", 9, -104.858),
        ("variable_string", 4, "woot"),
        ("variable_long_string", "4", vectors.LONG_STRING.decode()),
        ("variable_int", "int32", -98765),
        ("variable_double", "double", -104.858),
    ],
)
def test_decode_variable_vectors(row, type_code, value):
    payload = decode(F[row].plaintext).payload
    decoded = messages.decode_variable(type_code, payload)
    assert decoded == value
    assert type(decoded) is type(value)


def test_decode_variable_true_and_unknown_type():
    assert messages.decode_variable(1, b"\x01") is True
    assert messages.decode_variable(7, b"caf\xc3\xa9") == "café"
    assert messages.decode_variable("mystery", b"abc") == "abc"
    assert messages.decode_variable(4, b"\xff") == "\ufffd"


@pytest.mark.parametrize(("type_code", "payload"), [(1, b""), (2, b"\x00\x00\x01"), (9, bytes(4))])
def test_decode_variable_wrong_length(type_code, payload):
    with pytest.raises(CoapError):
        messages.decode_variable(type_code, payload)


@pytest.mark.parametrize(
    ("type_code", "value"), [(1, True), (2, -(2**31)), (2, 2**31 - 1), (9, 1.5e300), (4, "héllo")]
)
def test_variable_round_trip(type_code, value):
    assert messages.decode_variable(type_code, messages.encode_variable(type_code, value)) == value


def test_double_is_little_endian():
    assert messages.encode_variable(9, -104.858) == bytes.fromhex("f4fdd478e9365ac0")


def test_variable_type_names():
    assert [messages.variable_type_name(c) for c in (1, 2, 4, 9)] == [
        "bool",
        "int32",
        "string",
        "double",
    ]
    assert messages.variable_type_name("9") == "double"
    assert messages.variable_type_name(5) == "string"


EVENTS = [
    (T["event_teapot"].plaintext, messages.Event("teapot-boiled", None, 60, False)),
    (T["event_teapot_data"].plaintext, messages.Event("teapot-boiled", "208F", 60, False)),
    (T["event_private_t"].plaintext, messages.Event("t", None, 60, True)),
    (T["event_max_age_3_bytes"].plaintext, messages.Event("teacup-overflow", "11404", 60, False)),
    (T["event_split_path"].plaintext, messages.Event("a/b/c/d", "xyz", 60, False)),
    (
        T["event_long_split_path"].plaintext,
        messages.Event("a/long-coap-option/another-long-path/b", "xyz", 60, False),
    ),
    (T["publish_motion"].plaintext, messages.Event("motion-detected", None, 60, False)),
    (T["publish_lake_depth"].plaintext, messages.Event("lake-depth/1", "28m", 21600, True)),
    (
        vectors.EVENT_WEATHER,
        messages.Event("weather/us/mn/minneapolis", "t:5F,d:-2F,p:15%", 3600, False),
    ),
    (vectors.EVENT_FRONT_DOOR, messages.Event("front-door-unlocked", None, 60, True)),
    (messages.event(1, "zero", "d", ttl=0), messages.Event("zero", "d", 60, False)),
    (messages.event(1, "bytes", b"\xff\xfe"), messages.Event("bytes", "\ufffd\ufffd", 60, False)),
]


@pytest.mark.parametrize(("raw", "event"), EVENTS, ids=[e.name for _, e in EVENTS])
def test_parse_event(raw, event):
    assert messages.parse_event(decode(raw)) == event


def test_parse_event_refuses_a_max_age_over_four_bytes():
    """Found by fuzz/e2e.py: a 16-byte Max-Age became a ttl no device can be sent,
    and delivering the event to a subscribed device raised ValueError."""
    options = ((11, b"e"), (11, b"temp"), (14, b"\x01" * 5))
    with pytest.raises(CoapError, match="Max-Age is 5 bytes"):
        messages.parse_event(CoapMessage(MessageType.NON, 2, 1, b"", options, b"x"))
    options = ((11, b"e"), (11, b"temp"), (14, b"\xff" * 4))
    assert messages.parse_event(CoapMessage(MessageType.NON, 2, 1, b"", options)).ttl == 2**32 - 1


def test_parse_event_refuses_non_events():
    with pytest.raises(CoapError, match="not an event"):
        messages.parse_event(decode(T["get_time"].plaintext))
    with pytest.raises(CoapError, match="no name"):
        messages.parse_event(decode(bytes.fromhex("50020001b165")))


SUBSCRIPTIONS = [
    (T["subscribe_device"].plaintext, messages.Subscription("", False, vectors.DEVICE_ID_53FF)),
    (T["subscribe_my_devices"].plaintext, messages.Subscription("motion/open", True, None)),
    (
        T["subscribe_firehose"].plaintext,
        messages.Subscription(vectors.FIREHOSE_PREFIX.decode(), False, None),
    ),
    (
        vectors.SUBSCRIBE_WEATHER_DEVICE,
        messages.Subscription("weather", False, vectors.DEVICE_ID_53FF),
    ),
    (vectors.SUBSCRIBE_MY_DEVICES_ONLY, messages.Subscription("", True, None)),
    (
        vectors.SUBSCRIBE_CHINA_FIREHOSE,
        messages.Subscription("China/ShenZhen/FuTianKouAn", False, None),
    ),
    (
        bytes.fromhex("40010001b165ff") + vectors.DEVICE_ID_53FF.upper().encode(),
        messages.Subscription("", False, vectors.DEVICE_ID_53FF),
    ),
]


@pytest.mark.parametrize(("raw", "subscription"), SUBSCRIPTIONS)
def test_parse_subscribe(raw, subscription):
    assert messages.parse_subscribe(decode(raw)) == subscription


def test_parse_subscribe_bad_device_id():
    with pytest.raises(CoapError, match="device id"):
        messages.parse_subscribe(decode(bytes.fromhex("40010001b165ff") + b"123"))
    with pytest.raises(CoapError):
        messages.parse_subscribe(decode(T["get_time"].plaintext))


def test_parse_requests_device_side():
    assert messages.parse_function_call(decode(T["function_call"].plaintext)) == ("brew", b"32,240")
    assert messages.parse_function_call(decode(T["function_call_63"].plaintext)) == (
        "brew",
        vectors.ARG_63,
    )
    assert messages.parse_function_call(decode(messages.function_call(1, 2, "go"))) == ("go", b"")
    assert messages.parse_variable_request(decode(T["variable_request"].plaintext)) == "temperature"
    assert messages.parse_signal(decode(T["signal_start"].plaintext)) is True
    assert messages.parse_signal(decode(T["signal_stop"].plaintext)) is False
    with pytest.raises(CoapError):
        messages.parse_signal(decode(bytes.fromhex("41030001 02 b173")))
    with pytest.raises(CoapError):
        messages.parse_variable_request(decode(bytes.fromhex("41010001 02 b176")))


def test_parse_chunk():
    assert messages.parse_chunk(decode(T["chunk"].plaintext)) == messages.ChunkInfo(
        0x01234567, None, vectors.CHUNK_TEXT
    )
    assert messages.parse_chunk(
        decode(messages.chunk(1, 2, 0xDEADBEEF, b"abc", index=513))
    ) == messages.ChunkInfo(0xDEADBEEF, 513, b"abc")
    # the §6.2 spelling of the index header (42 = option 19) reads the same way
    spelled = bytes.fromhex("41020001 02 b163 44deadbeef 420201 ff") + b"abc"
    assert messages.parse_chunk(decode(spelled)) == messages.ChunkInfo(0xDEADBEEF, 513, b"abc")
    with pytest.raises(CoapError):
        messages.parse_chunk(decode(bytes.fromhex("41020001 02 b163 42 0001")))


def test_parse_chunk_missed():
    assert messages.parse_chunk_missed(decode(T["chunk_missed"].plaintext).payload) == [0]
    assert messages.parse_chunk_missed(bytes.fromhex("0001 0203 ffff")) == [1, 0x0203, 0xFFFF]
    for bad in (b"", b"\x00"):
        with pytest.raises(CoapError):
            messages.parse_chunk_missed(bad)


def test_parse_replies():
    assert messages.parse_time_reply(decode(T["time_reply"].plaintext).payload) == 1398367917
    with pytest.raises(CoapError):
        messages.parse_time_reply(b"\x00\x01")
    assert messages.parse_function_return(decode(T["function_return_456"].plaintext).payload) == 456
    assert messages.parse_function_return(b"\xff\xff\xff\xfe") == -2
    with pytest.raises(CoapError):
        messages.parse_function_return(b"\x00")
    assert messages.parse_update_ready(b"") is False
    assert messages.parse_update_ready(b"\x00") is False
    assert messages.parse_update_ready(b"\x01") is True
    assert messages.parse_update_begin(b"") is None
    with pytest.raises(CoapError):
        messages.parse_update_begin(bytes(11))


def test_parse_describe():
    payload = decode(F["describe_response"].plaintext).payload
    assert messages.parse_describe(payload) == {"f": ["brew"], "v": {"temperature": 2}}
    assert messages.parse_describe(payload + b"\x00") == {"f": ["brew"], "v": {"temperature": 2}}
    for bad in (b"{", b"[1, 2]", b"\xff\xfe", b"", b"[" * 1500 + b"]" * 1500):
        with pytest.raises(CoapError):
            messages.parse_describe(bad)


@pytest.mark.parametrize("code", [float("inf"), float("nan"), None, [2], {"x": 1}, "1e999"])
def test_a_type_code_that_is_no_number_is_a_string(code):
    """JSON's 1e999 is infinity, and int(inf) raised OverflowError (a crash of the fuzz target)."""
    assert messages.variable_type_name(code) == "string"
    assert messages.decode_variable(code, b"ok") == "ok"


def test_merge_describe_photon_two_parts():
    """Photon 0.4.9 answers with a system part, then the application part (§8.1)."""
    system = {"p": 6, "m": [{"s": 262144, "l": "m", "f": "b", "n": "0", "v": 7}], "f": [], "v": {}}
    application = {"f": ["brew", "clean"], "v": {"temperature": 2, "message": 4}}
    first = messages.merge_describe(None, system)
    merged = messages.merge_describe(first, application)
    assert merged == {
        "p": 6,
        "m": system["m"],
        "f": ["brew", "clean"],
        "v": {"temperature": 2, "message": 4},
    }
    assert first == system, "merge returns a new dict and leaves its inputs alone"


def test_merge_describe_unions_functions_in_order():
    merged = messages.merge_describe(
        {"f": ["a", "b"], "v": {"x": 1}}, {"f": ["b", "c"], "v": {"y": 9}}
    )
    assert merged == {"f": ["a", "b", "c"], "v": {"x": 1, "y": 9}}
    assert messages.merge_describe({}, json.loads(vectors.DESCRIBE_JSON)) == json.loads(
        vectors.DESCRIBE_JSON
    )
