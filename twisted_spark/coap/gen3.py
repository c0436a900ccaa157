# -*- test-case-name: tests.test_coap_gen3 -*-
"""Gen3 message payloads: the Hello and the describe request's parts.

Over DTLS a device opens with a confirmable ``POST h`` whose payload is
(Device OS ``communication/src/messages.cpp``, ``Messages::hello``; all
big-endian)::

    product id (2)  product version (2)  flags (2)  platform id (2)
    reserved (1)  device id length (1)  device id (12)  system version (2)
    max message size (2)  max binary size (4)  OTA chunk size (2)

39 bytes of CoAP in all.  The server only acknowledges it.  Describe is
device-initiated: ``POST d`` with a one-byte Uri-Query saying which part
(:data:`DESCRIBE_SYSTEM`: protobuf, see :mod:`twisted_spark.coap.describe_pb`;
:data:`DESCRIBE_APPLICATION`: JSON ``{"f": [...], "v": {...}}``), block-wise
when it is long (:mod:`twisted_spark.coap.blockwise`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from twisted_spark.coap.codec import CoapError, CoapMessage, Code, OptionNumber
from twisted_spark.coap.messages import parse_describe, variable_type_name

__all__ = [
    "DESCRIBE_APPLICATION",
    "DESCRIBE_METRICS",
    "DESCRIBE_SYSTEM",
    "HELLO_FLAGS",
    "ApplicationDescribe",
    "Gen3Hello",
    "describe_kind",
    "encode_gen3_hello",
    "is_hello",
    "parse_application_describe",
    "parse_gen3_hello",
]

DEVICE_ID_LENGTH = 12
_HEAD = struct.Struct(">HHHHBB")  # product id, version, flags, platform, reserved, id length
_TAIL = struct.Struct(">HHIH")  # system version, max message size, max binary size, OTA chunk

#: Hello flag bits (``communication/src/protocol.cpp``, ``enum HelloFlag``).
HELLO_FLAGS = {
    0x01: "ota_upgrade_successful",
    0x02: "diagnostics",
    0x04: "immediate_updates",
    0x10: "goodbye",
    0x20: "device_initiated_describe",
    0x40: "compressed_ota",
    0x80: "ota_v3",
}

#: Describe parts (``communication/inc/protocol_defs.h``, ``DescriptionType``).
DESCRIBE_SYSTEM = 1
DESCRIBE_APPLICATION = 2
DESCRIBE_METRICS = 4
_MAX_NAME = 64
_MAX_ENTRIES = 1000


@dataclass(frozen=True)
class Gen3Hello:
    """What a Gen3 device says about itself when its session starts."""

    product_id: int
    product_version: int
    flags: int
    platform_id: int
    device_id: str
    system_version: int
    max_message_size: int | None = None
    max_binary_size: int | None = None
    ota_chunk_size: int | None = None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return tuple(name for bit, name in HELLO_FLAGS.items() if self.flags & bit)


def is_hello(message: CoapMessage) -> bool:
    """A ``POST h`` (the path is one segment, ``h``)."""
    return message.code == Code.POST and message.uri_path == ["h"]


def parse_gen3_hello(payload: bytes) -> Gen3Hello:
    """The Hello payload, or :class:`CoapError` saying what is wrong with it.

    Device OS releases older than the size fields end after the system
    version; those fields are then None.
    """
    payload = bytes(payload)
    if len(payload) < _HEAD.size:
        raise CoapError(f"Hello payload is {len(payload)} bytes, too short for its header")
    product_id, product_version, flags, platform_id, _reserved, id_length = _HEAD.unpack_from(
        payload
    )
    if id_length != DEVICE_ID_LENGTH:
        raise CoapError(f"Hello has a device id of {id_length} bytes, not {DEVICE_ID_LENGTH}")
    position = _HEAD.size + id_length
    if len(payload) < position + 2:
        raise CoapError(f"Hello payload is {len(payload)} bytes, too short for its device id")
    device_id = payload[_HEAD.size : position].hex()
    if len(payload) >= position + _TAIL.size:
        system_version, *sizes = _TAIL.unpack_from(payload, position)
    else:
        (system_version,), sizes = struct.unpack_from(">H", payload, position), [None] * 3
    return Gen3Hello(product_id, product_version, flags, platform_id, device_id,
                     system_version, *sizes)


def encode_gen3_hello(hello: Gen3Hello) -> bytes:
    """The payload of ``hello`` (what a device sends; for simulators and tests)."""
    device_id = bytes.fromhex(hello.device_id)
    head = _HEAD.pack(
        hello.product_id,
        hello.product_version,
        hello.flags,
        hello.platform_id,
        0,
        len(device_id),
    )
    tail = struct.pack(">H", hello.system_version)
    if hello.max_message_size is not None:
        tail = _TAIL.pack(
            hello.system_version,
            hello.max_message_size,
            hello.max_binary_size or 0,
            hello.ota_chunk_size or 0,
        )
    return head + device_id + tail


def describe_kind(message: CoapMessage) -> int:
    """Which describe part a ``POST d`` carries (its one-byte Uri-Query), or CoapError."""
    queries = message.option_values(OptionNumber.URI_QUERY)
    if len(queries) != 1 or len(queries[0]) != 1:
        raise CoapError(f"describe request has Uri-Query {queries!r}, not one byte of flags")
    return queries[0][0]


@dataclass(frozen=True)
class ApplicationDescribe:
    """The application part: cloud function names and variables with their API types."""

    functions: tuple[str, ...]
    variables: dict[str, str]


def parse_application_describe(payload: bytes) -> ApplicationDescribe:
    """``{"f": [names], "v": {name: type code}}`` (``system/src/system_info.cpp``)."""
    value = parse_describe(payload)
    functions = value.get("f", [])
    variables = value.get("v", {})
    if not isinstance(functions, list) or not isinstance(variables, dict):
        raise CoapError("application describe: 'f' must be a list and 'v' an object")
    if len(functions) > _MAX_ENTRIES or len(variables) > _MAX_ENTRIES:
        raise CoapError("application describe lists too many functions or variables")
    for name in [*functions, *variables]:
        if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME:
            raise CoapError(f"application describe has a bad name {name!r}")
    for name, code in variables.items():
        if not isinstance(code, int | str) or isinstance(code, bool):
            raise CoapError(f"variable {name!r} has type {code!r}, not a type code")
    return ApplicationDescribe(
        tuple(functions), {name: variable_type_name(code) for name, code in variables.items()}
    )
