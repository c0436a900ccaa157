"""Gen3 Hello and describe payloads, from bytes captured from Device OS's Linux virtual device.

The captures are the decrypted CoAP messages of tests/udp_transcripts/vdev-connect.json
(Device OS v6.2.0, gcc platform run with ``-p udp``; its application has
function ``bump`` and variable ``counter``).
"""

import pytest

from twisted_spark.coap.codec import CoapError, decode
from twisted_spark.coap.describe_pb import FirmwareModule, parse_system_describe
from twisted_spark.coap.gen3 import (
    DESCRIBE_APPLICATION,
    DESCRIBE_SYSTEM,
    ApplicationDescribe,
    Gen3Hello,
    describe_kind,
    encode_gen3_hello,
    is_hello,
    parse_application_describe,
    parse_gen3_hello,
)

HELLO = bytes.fromhex(
    "40020001b168ff0003ffff00360003000c12ab34cd56ef7890a1b2c3d41838048000a000000200"
)
SYSTEM_DESCRIBE = bytes.fromhex(
    "4102000207b164112a3101ff0a19080218e8072880808005351e0000003d1e00000058848080050a2008"
    "0318b8302880808005351e0000003d1e0000004a05080218e8075884808005"
)
APPLICATION_DESCRIBE = bytes.fromhex(
    "4102000609b1644102ff7b2266223a5b2262756d70225d2c2276223a7b22636f756e746572223a327d7d"
)


def test_the_virtual_devices_hello():
    message = decode(HELLO)
    assert len(HELLO) == 39 and is_hello(message) and message.token == b""
    hello = parse_gen3_hello(message.payload)
    assert hello == Gen3Hello(
        product_id=3,
        product_version=0xFFFF,
        flags=0x36,
        platform_id=3,
        device_id="12ab34cd56ef7890a1b2c3d4",
        system_version=6200,
        max_message_size=1152,
        max_binary_size=10 * 1024 * 1024,
        ota_chunk_size=512,
    )
    assert hello.flag_names == (
        "diagnostics",
        "immediate_updates",
        "goodbye",
        "device_initiated_describe",
    )
    assert encode_gen3_hello(hello) == message.payload


def test_a_hello_without_the_size_fields_still_parses():
    old = decode(HELLO).payload[:-8]  # Device OS before the sizes were added
    hello = parse_gen3_hello(old)
    assert hello.system_version == 6200 and hello.max_message_size is None
    assert encode_gen3_hello(hello) == old


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x00" * 9, "too short for its header"),
        (bytes.fromhex("0003ffff00360003000812ab34cd56ef7890"), "device id of 8 bytes"),
        (decode(HELLO).payload[:20], "too short for its device id"),
    ],
)
def test_bad_hellos_say_why(payload, why):
    with pytest.raises(CoapError, match=why):
        parse_gen3_hello(payload)


def test_the_virtual_devices_system_describe_is_protobuf():
    message = decode(SYSTEM_DESCRIBE)
    assert describe_kind(message) == DESCRIBE_SYSTEM
    assert message.option_values(12) == [b"\x2a"]  # application/octet-stream
    describe = parse_system_describe(message.payload)
    bootloader, system = describe.modules
    assert bootloader == FirmwareModule(
        type=2,
        index=0,
        version=1000,
        store=0,
        max_size=10485760,
        size=10485764,
        checked_flags=30,
        passed_flags=30,
    )
    assert (system.type_name, system.version, system.dependencies) == (
        "monolithic",
        6200,
        ((2, 0, 1000),),
    )
    assert system.valid and describe.system_version == 6200
    assert describe.imei is None and describe.protected_state is False


def test_system_describe_reads_cellular_fields_and_skips_unknown_ones():
    payload = (
        b"\x12\x0f356726100000000"  # 2: imei
        b"\x1a\x048901"  # 3: iccid
        b"\x22\x05R01.0"  # 4: modem firmware
        b"\x30\x01"  # 6: protected_state
        b"\x7a\x03abc"  # 15: unknown, length-delimited
        b"\x7d\x01\x02\x03\x04"  # 15: unknown fixed32
    )
    describe = parse_system_describe(payload)
    assert (describe.imei, describe.iccid, describe.modem_firmware_version) == (
        "356726100000000",
        "8901",
        "R01.0",
    )
    assert describe.protected_state and describe.modules == ()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x0a\x05\x08", "runs past the end"),
        (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x00\x00", "field number 0"),
        (b"\x12\x02\xff\xfe", "imei is not UTF-8"),
        (b"\x0a\x00" * 65, "more than 64 modules"),
        (b"\x00" * 17000, "at most 16384"),
    ],
)
def test_bad_system_describes_say_why(payload, why):
    with pytest.raises(CoapError, match=why):
        parse_system_describe(payload)


def test_the_virtual_devices_application_describe():
    message = decode(APPLICATION_DESCRIBE)
    assert describe_kind(message) == DESCRIBE_APPLICATION
    assert parse_application_describe(message.payload) == ApplicationDescribe(
        ("bump",), {"counter": "int32"}
    )


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"not json", "not JSON"),
        (b'{"f": {}, "v": {}}', "'f' must be a list"),
        (b'{"f": [""], "v": {}}', "bad name ''"),
        (b'{"f": [], "v": {"x": true}}', "not a type code"),
        (b'{"f": [' + b",".join([b'"f"'] * 1001) + b"]}", "too many"),
    ],
)
def test_bad_application_describes_say_why(payload, why):
    with pytest.raises(CoapError, match=why):
        parse_application_describe(payload)


def test_describe_kind_needs_one_byte_of_flags():
    no_query = decode(bytes.fromhex("40020001b164"))
    with pytest.raises(CoapError, match="not one byte of flags"):
        describe_kind(no_query)
