# -*- test-case-name: tests.test_platforms -*-
"""What differs between device platforms, in one place.

A device states its platform id in its Hello (PROTOCOL.md §7): 6 Photon,
8 P1, 10 Electron.  A Core's 6-byte Hello has none; the session records 0.

**What a Core is.**  PROTOCOL.md §4.5 gives the 640-byte receive buffer to
"the Core and platform ids < 2", and every Core limit below follows from that
buffer, so a device is *Core-class* when its platform id is unknown
(``None``: a Hello without one is a Core's), 0 or 1.  Every other id is
*Photon-class* (800-byte buffer).  :func:`limits_for` is the only place that
decides it; nothing else compares platform ids.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Platform ids (PROTOCOL.md §7).
CORE, PHOTON, P1, ELECTRON = 0, 6, 8, 10

#: Platform id -> the name the compile command and the simulator use.
NAMES = {CORE: "core", PHOTON: "photon", P1: "p1", ELECTRON: "electron"}
#: Name -> platform id.
IDS = {name: platform_id for platform_id, name in NAMES.items()}


@dataclass(frozen=True)
class Limits:
    """The numbers a server must respect for one class of device."""

    #: Largest frame (ciphertext bytes) the device accepts (§4.5).
    buffer_size: int
    #: Longest function argument in bytes (§6.3, §14 item 8).
    argument_limit: int
    #: OTA chunk size when the device announced none (§11.2).
    default_chunk: int
    #: Largest OTA chunk the buffer takes (§11.2: 594 on a Core; on a Photon
    #: the buffer less a fast chunk's 16 header bytes and 16 of padding).
    max_chunk: int
    #: Largest firmware image when the device announced none ([BSP], §11.2).
    max_binary: int


CORE_LIMITS = Limits(
    buffer_size=640, argument_limit=63, default_chunk=256, max_chunk=594, max_binary=108_000
)
PHOTON_LIMITS = Limits(
    buffer_size=800, argument_limit=622, default_chunk=512, max_chunk=768, max_binary=384_000
)


def is_core_class(platform_id: int | None) -> bool:
    """Whether a device of ``platform_id`` has a Core's limits (see the module docstring)."""
    return platform_id is None or platform_id < 2


def limits_for(platform_id: int | None) -> Limits:
    """The :class:`Limits` of a device of ``platform_id``."""
    return CORE_LIMITS if is_core_class(platform_id) else PHOTON_LIMITS


def name_of(platform_id: int | None) -> str:
    """The platform's name (``core``, ``photon``...), its id as text if unknown, or ``""``."""
    if platform_id is None:
        return ""
    return NAMES.get(platform_id, str(platform_id))
