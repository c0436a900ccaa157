# -*- test-case-name: tests.test_coap_gen3 -*-
"""The Gen3 system describe: a protobuf ``particle.cloud.SystemDescribe``.

Schema: ``proto_defs/shared/cloud/describe.proto`` in Device OS (the
``device-os-protobuf`` repository).  The server needs little of it (the
firmware modules with their versions, and the cellular identifiers), so
this is a small reader of the protobuf wire format rather than a
dependency on ``protobuf`` and generated code: varints, fixed32/64 and
length-delimited fields, unknown fields skipped, everything bounded.

Field numbers used (``SystemDescribe``): 1 firmware_modules (repeated
``FirmwareModule``), 2 imei, 3 iccid, 4 modem_firmware_version, 6
protected_state.  ``FirmwareModule``: 1 type, 2 index, 3 version, 4 store,
5 max_size, 6 checked_flags (fixed32), 7 passed_flags (fixed32), 8 hash,
9 dependencies (repeated ``FirmwareModuleDependency``: 1 type, 2 index,
3 version), 11 size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from twisted_spark.coap.codec import CoapError

__all__ = ["MODULE_TYPES", "FirmwareModule", "SystemDescribe", "parse_system_describe"]

#: ``FirmwareModuleType`` names, by number.
MODULE_TYPES = {
    0: "invalid",
    1: "resource",
    2: "bootloader",
    3: "monolithic",
    4: "system",
    5: "user",
    6: "settings",
    7: "ncp",
    8: "radio_stack",
    9: "asset",
}
MAX_DESCRIBE = 16 * 1024
MAX_MODULES = 64
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class FirmwareModule:
    """One module the device reports: what it is, its version, and its checks."""

    type: int
    index: int = 0
    version: int = 0
    store: int = 0
    max_size: int = 0
    size: int = 0
    checked_flags: int = 0
    passed_flags: int = 0
    dependencies: tuple[tuple[int, int, int], ...] = ()  # (type, index, version)

    @property
    def type_name(self) -> str:
        return MODULE_TYPES.get(self.type, f"type {self.type}")

    @property
    def valid(self) -> bool:
        """Every check performed passed."""
        return self.checked_flags & self.passed_flags == self.checked_flags


@dataclass(frozen=True)
class SystemDescribe:
    modules: tuple[FirmwareModule, ...] = ()
    imei: str | None = None
    iccid: str | None = None
    modem_firmware_version: str | None = None
    protected_state: bool = False

    @property
    def system_version(self) -> int | None:
        """The version of the system firmware (monolithic or system part 1), if reported."""
        for module in self.modules:
            if module.type in (3, 4) and module.index in (0, 1):
                return module.version
        return None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise CoapError("system describe: a varint runs past the end")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift >= 64:
            raise CoapError("system describe: a varint is longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field of one message."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise CoapError("system describe: field number 0")
        if wire == _VARINT:
            value, position = _varint(data, position)
            yield number, wire, value
        elif wire in (_FIXED32, _FIXED64):
            width = 4 if wire == _FIXED32 else 8
            if position + width > len(data):
                raise CoapError("system describe: a fixed-width field runs past the end")
            yield number, wire, int.from_bytes(data[position : position + width], "little")
            position += width
        elif wire == _BYTES:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise CoapError("system describe: a length-delimited field runs past the end")
            yield number, wire, data[position : position + length]
            position += length
        else:
            raise CoapError(f"system describe: unsupported wire type {wire}")


def _ints(data: bytes, names: dict[int, str]) -> dict[str, int]:
    values: dict[str, int] = {}
    for number, wire, value in _fields(data):
        if number in names and wire in (_VARINT, _FIXED32, _FIXED64):
            assert isinstance(value, int)
            values[names[number]] = value
    return values


_MODULE_INTS = {
    1: "type",
    2: "index",
    3: "version",
    4: "store",
    5: "max_size",
    6: "checked_flags",
    7: "passed_flags",
    11: "size",
}
_DEPENDENCY_INTS = {1: "type", 2: "index", 3: "version"}


def _module(data: bytes) -> FirmwareModule:
    values: dict = _ints(data, _MODULE_INTS)
    values.setdefault("type", 0)
    dependencies: list[tuple[int, int, int]] = []
    for number, wire, value in _fields(data):
        if number == 9 and wire == _BYTES:
            assert isinstance(value, bytes)
            dependency = _ints(value, _DEPENDENCY_INTS)
            dependencies.append((dependency.get("type", 0), dependency.get("index", 0),
                                 dependency.get("version", 0)))
            if len(dependencies) > MAX_MODULES:
                raise CoapError("system describe: too many module dependencies")
    return FirmwareModule(dependencies=tuple(dependencies), **values)


def _text(value: int | bytes, name: str) -> str:
    if not isinstance(value, bytes):
        raise CoapError(f"system describe: {name} is not a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise CoapError(f"system describe: {name} is not UTF-8") from None


def parse_system_describe(payload: bytes) -> SystemDescribe:
    """Decode the protobuf system describe, or raise :class:`CoapError` saying why not."""
    data = bytes(payload)
    if len(data) > MAX_DESCRIBE:
        raise CoapError(f"system describe is {len(data)} bytes (at most {MAX_DESCRIBE})")
    modules = []
    strings: dict[str, str] = {}
    protected = False
    for number, wire, value in _fields(data):
        if number == 1 and wire == _BYTES:
            assert isinstance(value, bytes)
            modules.append(_module(value))
            if len(modules) > MAX_MODULES:
                raise CoapError(f"system describe lists more than {MAX_MODULES} modules")
        elif number in (2, 3, 4) and wire == _BYTES:
            name = ("imei", "iccid", "modem_firmware_version")[number - 2]
            strings[name] = _text(value, name)
        elif number == 6 and wire == _VARINT:
            protected = bool(value)
    return SystemDescribe(tuple(modules), protected_state=protected, **strings)
