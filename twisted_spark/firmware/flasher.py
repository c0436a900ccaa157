# -*- test-case-name: tests.test_firmware_flasher -*-
"""The OTA transfer of PROTOCOL.md §11, driving one device through its channel.

:class:`Flasher` sends UpdateBegin (with the §11.1 payload; retried, then
once without payload as [SP] does), plans the chunks
(:mod:`~twisted_spark.firmware.plan`) and sends them the way the device
accepted: :mod:`~twisted_spark.firmware.classic` stop-and-wait, or
:mod:`~twisted_spark.firmware.fast` streaming.  It talks to the device only
through an :class:`~twisted_spark.interfaces.IDeviceChannel` (the session's
request table: nothing is sent behind its back), waits on the injected clock
(:mod:`~twisted_spark.firmware.transfer`), and every failure raises
:class:`~twisted_spark.firmware.plan.FlashError` (``timeout`` set when the
device went silent), which the updater turns into a domain error.

Importing this module imports neither Klein nor twisted.web.
"""

from __future__ import annotations

from twisted.internet import defer

from twisted_spark.coap import to_device
from twisted_spark.coap.payloads import UpdateParams, parse_update_ready
from twisted_spark.errors import DeviceBusy, DeviceRequestFailed, DeviceTimeout
from twisted_spark.firmware.classic import send_classic
from twisted_spark.firmware.fast import send_fast
from twisted_spark.firmware.plan import (
    CORE_CHUNK,
    PHOTON_CHUNK,
    FlashError,
    FlashOptions,
    chunk_size_for,
    crc32,
    max_binary_for,
    split,
)
from twisted_spark.firmware.transfer import Stopped, Transfer

__all__ = [
    "CORE_CHUNK",
    "PHOTON_CHUNK",
    "FlashError",
    "FlashOptions",
    "Flasher",
    "chunk_size_for",
    "crc32",
    "max_binary_for",
    "split",
]


class Flasher(Transfer):
    """Send ``image`` to the device behind ``channel`` (see the module docstring).

    Install :meth:`message_received` as the channel's update handler and
    call :meth:`abort` when the device disconnects (the updater does both);
    :meth:`run` returns a summary dict or raises :class:`FlashError`.
    """

    def __init__(self, channel, image, clock, options=None, chunk_size=None):
        if not image:
            raise ValueError("empty image")
        options = options or FlashOptions()
        super().__init__(channel, image, clock, options)
        self.chunk_size = chunk_size or chunk_size_for(channel, wanted=options.chunk_size)
        self.fast = False
        self._deadline = None

    def run(self):
        """Do the whole update -> Deferred[summary dict] or :class:`FlashError`."""
        return defer.ensureDeferred(self._run())

    async def _run(self):
        started = self.clock.seconds()
        self._deadline = deadline = self.clock.callLater(
            self.options.transfer_timeout,
            self.abort,
            FlashError(
                f"The update did not finish within {self.options.transfer_timeout:g} seconds.",
                timeout=True,
            ),
        )
        try:
            await self._begin()
            self.chunks = split(self.image, self.chunk_size)
            self.crcs = [crc32(c) for c in self.chunks]
            await (send_fast if self.fast else send_classic)(self)
        except Stopped:
            raise self.error from None
        finally:
            if deadline.active():
                deadline.cancel()
            if self.token is not None:
                self.channel.release_token(self.token)
                self.token = None
        return {
            "mode": "fast" if self.fast else "classic",
            "bytes": len(self.image),
            "chunk_size": self.chunk_size,
            "chunks": len(self.chunks),
            "resent": self.resent,
            "seconds": self.clock.seconds() - started,
        }

    async def _begin(self):
        """UpdateBegin until the device is ready; decides classic or fast."""
        channel = self.channel
        opts = self.options
        offer_fast = opts.fast and not channel.is_core
        params = UpdateParams(1 if offer_fast else 0, self.chunk_size, len(self.image))
        attempts = [(params, opts.begin_interval)] * max(1, opts.begin_attempts)
        if opts.begin_last_wait:
            attempts.append((None, opts.begin_last_wait))
        for params_now, wait in attempts:
            if params_now is None and not channel.is_core:
                # Without the payload a Photon assumes 512-byte chunks (§11.1).
                self.chunk_size = PHOTON_CHUNK
            # Fast chunks will carry this UpdateBegin's token: reserve it first.
            try:
                self.token = token = channel.reserve_token()
            except DeviceBusy as error:
                raise self.failure(error, "update request") from None
            tracked = self.track(
                channel.send_request(
                    lambda mid, tok, p=params_now: to_device.update_begin(mid, tok, p),
                    timeout=wait,
                    token=token,
                )
            )
            kind, value = await self.wait(tracked)
            while kind == "notify":  # an early ChunkMissed/UpdateDone is noise here
                self.missed = []
                kind, value = await self.wait(tracked)
            if kind == "reply":
                self.fast = bool(
                    params_now is not None
                    and params_now.fast_ota
                    and parse_update_ready(value.payload)
                )
                if not self.fast:
                    self._release_token()
                self.log.info(
                    "Device {id} is ready for the update ({size} bytes, {mode}, "
                    "{chunk}-byte chunks)",
                    id=channel.device_id,
                    size=len(self.image),
                    mode="fast OTA" if self.fast else "stop-and-wait",
                    chunk=self.chunk_size,
                )
                return
            self._release_token()
            if isinstance(value, DeviceRequestFailed):
                raise FlashError(f"The device refused the update ({value}).")
            if isinstance(value, DeviceTimeout):
                self.log.info(
                    "Device {id} did not answer the update request within {wait:g} s",
                    id=channel.device_id,
                    wait=wait,
                )
                continue
            raise self.failure(value, "update request")
        raise FlashError("The device did not accept the update request.", timeout=True)

    def _release_token(self):
        self.channel.release_token(self.token)
        self.token = None
