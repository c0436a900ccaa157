# -*- test-case-name: tests.test_firmware_flasher -*-
"""Planning an OTA transfer: its options, chunk size, image limit and chunks (PROTOCOL.md §11).

Every chunk has the same size; the last one is zero-padded to it and its
CRC-32 covers the padding (§11.2, §14 item 15).  Sizes and limits come from
:mod:`twisted_spark.platforms` unless the device announced its own
(``spark/hardware/ota_chunk_size``, ``spark/hardware/max_binary``).
"""

from __future__ import annotations

import zlib

from twisted_spark.platforms import CORE_LIMITS, PHOTON_LIMITS, limits_for

#: [SP]/[BSP] default chunk size, used for a Core that announced nothing.
CORE_CHUNK = CORE_LIMITS.default_chunk
#: Photon default (``HAL_OTA_ChunkSize``); also forced when no payload is sent.
PHOTON_CHUNK = PHOTON_LIMITS.default_chunk


class FlashError(Exception):
    """The update failed; ``str(error)`` is the sentence the API returns."""

    def __init__(self, message, timeout=False):
        super().__init__(message)
        self.timeout = timeout


class FlashOptions:
    """Timing and limits of one transfer (defaults follow §11.2's guidance)."""

    def __init__(
        self,
        chunk_size=None,
        fast=True,
        begin_attempts=3,
        begin_interval=6.0,
        begin_last_wait=90.0,
        chunk_timeout=15.0,
        max_bad_crc=10,
        max_chunk_missed=10,
        done_timeout=30.0,
        fast_window=64,
        fast_quiet=5.0,
        max_done_rounds=10,
        transfer_timeout=600.0,
        progress_every=10,
    ):
        #: Chunk size; ``None`` = the device's announced size or the default.
        self.chunk_size = chunk_size
        #: Offer fast OTA to Photon-class devices.
        self.fast = fast
        #: UpdateBegin tries with payload, seconds apart ([SP]: 3 × 6 s).
        self.begin_attempts = begin_attempts
        self.begin_interval = begin_interval
        #: Wait of the final UpdateBegin without payload (0 = do not try it).
        self.begin_last_wait = begin_last_wait
        #: Seconds a classic chunk may wait for its ChunkReceived.
        self.chunk_timeout = chunk_timeout
        #: CRC-mismatch answers tolerated for one chunk.
        self.max_bad_crc = max_bad_crc
        #: ChunkMissed rewinds tolerated in classic mode ([SP]: 10).
        self.max_chunk_missed = max_chunk_missed
        #: Seconds to wait for the UpdateDone answer (and each ping barrier).
        self.done_timeout = done_timeout
        #: Fast mode: chunks between two ping barriers.
        self.fast_window = fast_window
        #: Fast mode: quiet seconds after resends before UpdateDone again (§11.3).
        self.fast_quiet = fast_quiet
        #: Fast mode: UpdateDone rounds before giving up.
        self.max_done_rounds = max_done_rounds
        #: Seconds the whole transfer may take ([SP]: 600).
        self.transfer_timeout = transfer_timeout
        #: Log progress every this many percent (transfers of 16+ chunks).
        self.progress_every = progress_every


def chunk_size_for(device, announced=None, wanted=None):
    """The chunk size to use: wanted, else announced, else the platform default,
    never more than the device's buffer takes (``device`` has a ``platform_id``)."""
    limits = limits_for(device.platform_id)
    size = wanted or announced or limits.default_chunk
    return max(1, min(int(size), limits.max_chunk))


def max_binary_for(device, announced=None):
    """The largest image the device takes: its announcement or the [BSP] default."""
    if announced:
        return int(announced)
    return limits_for(device.platform_id).max_binary


def split(image, chunk_size):
    """Chunks of exactly ``chunk_size`` bytes, the last one zero-padded."""
    chunks = []
    for start in range(0, len(image), chunk_size):
        piece = image[start : start + chunk_size]
        chunks.append(piece + b"\x00" * (chunk_size - len(piece)))
    return chunks


def crc32(data):
    """CRC-32 (IEEE, zlib) as an unsigned int."""
    return zlib.crc32(data) & 0xFFFFFFFF
