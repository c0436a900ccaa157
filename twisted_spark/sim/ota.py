# -*- test-case-name: tests.test_firmware_flasher,tests.test_sim -*-
"""The simulator's OTA receiver: what a device's firmware does with an update (PROTOCOL.md §11).

:class:`OtaReceiver` is a mixin of :class:`~twisted_spark.sim.device.VirtualDevice`:
it answers UpdateBegin (fast OTA when offered and supported), checks each
chunk's CRC (a Core reads the payload at a fixed offset, so an index option
breaks it), answers as device OS 0.4.9 or 1.5.2 does in fast mode, sends
ChunkMissed and its own UpdateDone, and keeps the image.  :class:`OtaFaults`
makes it misbehave for tests.
"""

from __future__ import annotations

import zlib

from twisted.internet import defer

from twisted_spark.coap import from_device, payloads, to_device
from twisted_spark.platforms import CORE


class OtaFaults:
    """Misbehaviour of a :class:`VirtualDevice` during OTA (tests only).

    :ivar corrupt: chunk index -> how many times its arrival fails the CRC check.
    :ivar flash_fail: chunk index -> index to restart from (Core-style flash
        verification failure answered with ChunkMissed), once.
    :ivar disconnect_after: drop the connection when this many chunks arrived.
    :ivar silent_after: answer nothing after this many chunks.
    :ivar refuse: answer UpdateBegin with this error code (0x80, 0xA3).
    :ivar ignore_begin: number of UpdateBegin requests to ignore.
    :ivar reject_done: answer UpdateDone with 4.00 in any mode.
    """

    def __init__(
        self,
        corrupt=None,
        flash_fail=None,
        disconnect_after=None,
        silent_after=None,
        refuse=None,
        ignore_begin=0,
        reject_done=False,
    ):
        self.corrupt = dict(corrupt or {})
        self.flash_fail = dict(flash_fail or {})
        self.disconnect_after = disconnect_after
        self.silent_after = silent_after
        self.refuse = refuse
        self.ignore_begin = ignore_begin
        self.reject_done = reject_done


class OtaReceiver:
    """The update half of a virtual device (see the module docstring).

    The device provides ``send``, ``_next_mid``, ``disconnect``,
    ``platform_id``, ``fast_ota``, ``fast_style`` and ``ota_faults``.
    """

    def _update_begin(self, msg):
        faults = self.ota_faults
        if faults.refuse is not None:
            self.send(from_device.coded_ack(msg.message_id, msg.token, faults.refuse))
            return
        if faults.ignore_begin:
            faults.ignore_begin -= 1
            return
        # The Core ignores the payload (§11.1); Photons read it.
        params = payloads.parse_update_begin(msg.payload) if self.platform_id != CORE else None
        fast = bool(params and params.fast_ota and self.fast_ota)
        self._ota = {
            "params": params,
            "fast": fast,
            "chunks": {},
            "next": 0,
            "chunk_size": params.chunk_size if params else None,
            "asked": False,  # fast mode: ChunkMissed sent after an UpdateDone
        }
        self.ota_stats = {"chunks": 0, "bad_crc": 0, "duplicates": 0, "missed_sent": 0}
        if self.ota_done.called:
            self.ota_done = defer.Deferred()
        self.send(to_device.empty_ack(msg.message_id))
        ready = fast if self.platform_id != CORE else None
        self.send(from_device.update_ready(self._next_mid(), msg.token, ready))

    def _chunk(self, msg):
        ota = self._ota
        faults = self.ota_faults
        if ota is None:
            self.send(to_device.empty_ack(msg.message_id))
            return
        info = payloads.parse_chunk(msg)
        stats = self.ota_stats
        stats["chunks"] += 1
        if faults.disconnect_after is not None and stats["chunks"] > faults.disconnect_after:
            self.disconnect()
            return
        if faults.silent_after is not None and stats["chunks"] > faults.silent_after:
            return
        data = info.data
        # A Core reads the payload at a fixed offset: an index option shifts it
        # and the CRC fails (§11.3).
        ok = (zlib.crc32(data) & 0xFFFFFFFF) == info.crc and not (
            self.platform_id == CORE and info.index is not None
        )
        index = info.index if ota["fast"] else ota["next"]
        if ok and faults.corrupt.get(index, 0) > 0:
            faults.corrupt[index] -= 1  # as if a bit flipped on the way: CRC mismatch
            ok = False
        if not ok:
            stats["bad_crc"] += 1
        if ota["chunk_size"] is None:
            ota["chunk_size"] = len(data)
        if ota["fast"]:
            if not ok or index is None:
                return  # both firmware versions answer nothing for a bad chunk
            if index in ota["chunks"]:
                stats["duplicates"] += 1
            ota["chunks"][index] = data
            if self.fast_style == "0.4.9":
                self.send(to_device.empty_ack(msg.message_id))
                self.send(from_device.chunk_received(self._next_mid(), msg.token, True))
                if ota["asked"] and not self._missing():
                    # [DOS 0.4.9]: the device ends the update itself.
                    self.send(from_device.device_update_done(self._next_mid()))
                    self._finish_ota()
            return
        self.send(to_device.empty_ack(msg.message_id))
        if ok and index in faults.flash_fail:
            # Core flash verification failed: rewind and ask to continue there.
            restart = faults.flash_fail.pop(index)
            for i in range(restart, index + 1):
                ota["chunks"].pop(i, None)
            ota["next"] = restart
            stats["missed_sent"] += 1
            self.send(from_device.chunk_missed(self._next_mid(), [restart]))
            return
        if ok:
            ota["chunks"][index] = data
            ota["next"] += 1
        self.send(from_device.chunk_received(self._next_mid(), msg.token, ok))

    def _missing(self):
        ota = self._ota
        params = ota["params"]
        if params is None or not ota["chunk_size"]:
            return []
        total = -(-params.file_size // ota["chunk_size"])
        return [i for i in range(total) if i not in ota["chunks"]]

    def _image(self):
        ota = self._ota
        image = b"".join(ota["chunks"][i] for i in sorted(ota["chunks"]))
        if ota["params"] is not None:
            image = image[: ota["params"].file_size]
        return image

    def _finish_ota(self):
        image = self._image()
        self.firmware = image
        self._ota = None
        if not self.ota_done.called:
            self.ota_done.callback(image)

    def _update_done(self, msg):
        ota = self._ota
        if ota is None:
            self.send(from_device.update_done_ack(msg.message_id, msg.token, ok=False))
            return
        if self.ota_faults.reject_done:
            self.send(from_device.update_done_ack(msg.message_id, msg.token, ok=False))
            return
        missing = self._missing() if ota["fast"] else []
        if missing:
            ota["asked"] = True
            self.ota_stats["missed_sent"] += 1
            limit = 50 if self.fast_style == "0.4.9" else 40
            self.send(from_device.update_done_ack(msg.message_id, msg.token, ok=False))
            self.send(from_device.chunk_missed(self._next_mid(), missing[:limit]))
            return
        self._finish_ota()
        self.send(from_device.update_done_ack(msg.message_id, msg.token, ok=True))
