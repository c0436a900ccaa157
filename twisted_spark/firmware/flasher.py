"""The OTA state machine of PROTOCOL.md §11, driving one :class:`DeviceSession`.

:class:`Flasher` sends UpdateBegin (with the §11.1 payload; retried, then
once without payload as [SP] does), then either

* **classic** stop-and-wait (Core, and Photons that do not accept fast OTA):
  one chunk at a time through ``session.send_request``, waiting for
  ChunkReceived; 4.00 (CRC mismatch) resends the same chunk, a ChunkMissed
  from the device rewinds to the index it names; then UpdateDone and its
  2.04 ACK; or
* **fast** (Photon accepted bit 0 of UpdateReady): every chunk carries its
  index and is streamed without waiting (a CoAP ping every ``fast_window``
  chunks is the flow-control barrier), then UpdateDone; a 4.00 answer and
  the ChunkMissed lists that follow are served by resending, and the
  transfer completes on the device's own UpdateDone ([DOS 0.4.9]) or a 2.04
  answer to a repeated UpdateDone ([DOS 1.5.2]).

Every chunk has the same size; the last one is zero-padded to it and its
CRC-32 covers the padding (§11.2, §14 item 15).  All waiting uses the
injected clock; every failure raises :class:`FlashError` (``timeout`` set
when the device went silent), which the hook turns into the API answer.

Fast chunks are not sent through ``send_request`` (a device OS 1.5 Photon
answers none of them, and the session has only 256 tokens): they reuse the
UpdateBegin's token, which the session's sequential token counter will not
hand out again for the next 255 requests, and the ping barrier before every
UpdateDone guarantees that no late chunk answer is mistaken for the
UpdateDone answer.
"""

from __future__ import annotations

import zlib

from twisted.internet import defer
from twisted.logger import Logger

from twisted_spark.coap import payloads, to_device
from twisted_spark.coap.kinds import MessageKind
from twisted_spark.errors import DeviceNotConnected, DeviceRequestFailed, DeviceTimeout
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


def chunk_size_for(session, announced=None, wanted=None):
    """The chunk size to use: wanted, else announced, else the platform default,
    never more than the device's buffer takes."""
    limits = limits_for(session.platform_id)
    size = wanted or announced or limits.default_chunk
    return max(1, min(int(size), limits.max_chunk))


def max_binary_for(session, announced=None):
    """The largest image the device takes: its announcement or the [BSP] default."""
    if announced:
        return int(announced)
    return limits_for(session.platform_id).max_binary


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


class _Request:
    """The outcome of one session request, once it has one."""

    __slots__ = ("outcome",)

    def __init__(self):
        self.outcome = None


class _Stop(Exception):
    """Internal: the transfer was aborted from outside."""


class Flasher:
    """Send ``image`` to ``session`` (see the module docstring).

    Install :meth:`message_received` as the session's ``message_handler``
    and call :meth:`abort` when the device disconnects (the hook does both);
    :meth:`run` returns a summary dict or raises :class:`FlashError`.
    """

    log = Logger()

    def __init__(self, session, image, clock, options=None, chunk_size=None):
        if not image:
            raise ValueError("empty image")
        self.session = session
        self.image = bytes(image)
        self.clock = clock
        self.options = options or FlashOptions()
        self.chunk_size = chunk_size or chunk_size_for(session, wanted=self.options.chunk_size)
        self.fast = False
        self.resent = 0
        self.bad_crc = 0
        self.chunk_missed = 0
        self._chunks = None
        self._crcs = None
        self._token = None
        self._notify = None
        self._missed = []  # ChunkMissed index lists not yet served
        self._device_done = False
        self._error = None
        self._deadline = None
        self._logged = -1

    # -- inputs from outside ------------------------------------------------------

    def message_received(self, kind, msg):
        """The channel's update handler: ChunkMissed and the device's UpdateDone
        (already acknowledged by the session)."""
        if kind is MessageKind.CHUNK_MISSED:
            try:
                indexes = payloads.parse_chunk_missed(msg.payload)
            except Exception:
                self.log.info("Ignoring a malformed ChunkMissed from {id}",
                              id=self.session.device_id)
                return
            self._missed.append(indexes)
            self._wake()
        elif kind is MessageKind.UPDATE_DONE:
            self._device_done = True
            self._wake()

    def abort(self, error):
        """Stop the transfer with ``error`` (a :class:`FlashError`)."""
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self):
        notify, self._notify = self._notify, None
        if notify is not None and not notify.called:
            notify.callback(("notify", None))

    # -- waiting ----------------------------------------------------------------

    def _check(self):
        if self._error is not None:
            raise _Stop()
        if not self.session.connected:
            self._error = FlashError("The device disconnected during the update.")
            raise _Stop()

    def _track(self, d):
        """Follow session Deferred ``d``: its outcome is kept and wakes a waiter.

        ``d`` is never cancelled (the session owns it); a result nobody waits
        for any more is simply kept.
        """
        req = _Request()

        def done(result):
            req.outcome = ("reply", result)
            self._wake()

        def failed(failure):
            req.outcome = ("error", failure.value)
            self._wake()

        d.addCallbacks(done, failed)
        return req

    async def _wait(self, req=None, timeout=None):
        """Wait for ``req``, a notification (message, abort) or ``timeout`` seconds.

        Returns ``("reply", result)`` or ``("error", exception)`` once ``req``
        has an outcome, else ``("notify", None)`` or ``("timeout", None)``.
        """
        self._check()
        if req is not None and req.outcome is not None:
            return req.outcome
        self._notify = notify = defer.Deferred()
        timer = None
        if timeout is not None:
            timer = self.clock.callLater(timeout, self._timeout, notify)
        try:
            kind, _ = await notify
        finally:
            if timer is not None and timer.active():
                timer.cancel()
            if self._notify is notify:
                self._notify = None
        self._check()
        if req is not None and req.outcome is not None:
            return req.outcome
        return kind, None

    def _timeout(self, notify):
        if self._notify is notify:
            self._notify = None
        if not notify.called:
            notify.callback(("timeout", None))

    # -- the transfer -----------------------------------------------------------------

    def run(self):
        """Do the whole update -> Deferred[summary dict] or :class:`FlashError`."""
        return defer.ensureDeferred(self._run())

    async def _run(self):
        started = self.clock.seconds()
        self._deadline = self.clock.callLater(
            self.options.transfer_timeout,
            self.abort,
            FlashError(
                f"The update did not finish within {self.options.transfer_timeout:g} seconds.",
                timeout=True,
            ),
        )
        try:
            await self._begin()
            self._chunks = split(self.image, self.chunk_size)
            self._crcs = [crc32(c) for c in self._chunks]
            if self.fast:
                await self._fast()
            else:
                await self._classic()
        except _Stop:
            raise self._error from None
        finally:
            if self._deadline.active():
                self._deadline.cancel()
        elapsed = self.clock.seconds() - started
        return {
            "mode": "fast" if self.fast else "classic",
            "bytes": len(self.image),
            "chunk_size": self.chunk_size,
            "chunks": len(self._chunks),
            "resent": self.resent,
            "seconds": elapsed,
        }

    def _failure(self, error, what):
        """A FlashError for ``error`` raised by a session request."""
        if isinstance(error, DeviceNotConnected):
            return FlashError(f"The device disconnected during the update ({what}).")
        if isinstance(error, (DeviceTimeout, defer.TimeoutError)):
            return FlashError(f"The device did not answer the {what}.", timeout=True)
        return FlashError(f"The {what} failed: {error}")

    async def _begin(self):
        session = self.session
        opts = self.options
        offer_fast = opts.fast and not session.is_core
        params = payloads.UpdateParams(1 if offer_fast else 0, self.chunk_size, len(self.image))
        attempts = [(params, opts.begin_interval)] * max(1, opts.begin_attempts)
        if opts.begin_last_wait:
            attempts.append((None, opts.begin_last_wait))
        for params_now, wait in attempts:
            if params_now is None and not session.is_core:
                # Without the payload a Photon assumes 512-byte chunks (§11.1).
                self.chunk_size = PHOTON_CHUNK
            tokens = []

            def build(mid, token, params_now=params_now, tokens=tokens):
                tokens.append(token)
                return to_device.update_begin(mid, token, params_now)

            req = self._track(session.send_request(build, timeout=wait))
            kind, value = await self._wait(req)
            while kind == "notify":  # an early ChunkMissed/UpdateDone is noise here
                self._missed = []
                kind, value = await self._wait(req)
            if kind == "reply":
                self._token = tokens[0]
                self.fast = bool(
                    params_now is not None
                    and params_now.fast_ota
                    and payloads.parse_update_ready(value.payload)
                )
                self.log.info(
                    "Device {id} is ready for the update ({size} bytes, {mode}, "
                    "{chunk}-byte chunks)",
                    id=session.device_id,
                    size=len(self.image),
                    mode="fast OTA" if self.fast else "stop-and-wait",
                    chunk=self.chunk_size,
                )
                return
            if isinstance(value, DeviceRequestFailed):
                raise FlashError(f"The device refused the update ({value}).")
            if isinstance(value, DeviceTimeout):
                self.log.info(
                    "Device {id} did not answer the update request within {wait:g} s",
                    id=session.device_id,
                    wait=wait,
                )
                continue
            raise self._failure(value, "update request")
        raise FlashError("The device did not accept the update request.", timeout=True)

    def _progress(self, done_chunks):
        total = len(self._chunks)
        if total < 16:
            return
        percent = done_chunks * 100 // total
        step = self.options.progress_every
        bucket = percent // step * step
        if bucket > self._logged:
            self._logged = bucket
            self.log.info(
                "Flashing {id}: {percent}% ({sent} of {size} bytes)",
                id=self.session.device_id,
                percent=bucket,
                sent=min(done_chunks * self.chunk_size, len(self.image)),
                size=len(self.image),
            )

    # -- classic ------------------------------------------------------------------------

    async def _classic(self):
        session = self.session
        opts = self.options
        total = len(self._chunks)
        k = 0
        bad = 0
        sent = set()
        while True:
            if self._missed:
                k = self._rewind(k, total)
                bad = 0
            if k >= total:
                break
            data, crc = self._chunks[k], self._crcs[k]
            if k in sent:
                self.resent += 1
            sent.add(k)
            req = self._track(
                session.send_request(
                    lambda mid, tok, crc=crc, data=data: to_device.chunk(mid, tok, crc, data),
                    timeout=opts.chunk_timeout,
                )
            )
            kind, value = await self._wait(req)
            while kind == "notify" and not self._missed:
                kind, value = await self._wait(req)
            if kind == "notify":
                continue  # a ChunkMissed: rewind at the top; that chunk's request is dropped
            if kind == "reply":
                k += 1
                bad = 0
                self._progress(k)
                continue
            if isinstance(value, DeviceRequestFailed) and getattr(value, "code", None) == 0x80:
                bad += 1
                self.bad_crc += 1
                self.log.info(
                    "Device {id} reports a CRC mismatch on chunk {k}; resending",
                    id=session.device_id,
                    k=k,
                )
                if bad > opts.max_bad_crc:
                    raise FlashError(f"Chunk {k} failed its CRC check {bad} times.")
                continue
            raise self._failure(value, f"chunk {k}")
        await self._done_classic()

    def _rewind(self, k, total):
        """Serve queued ChunkMissed messages in classic mode: the new position."""
        lists, self._missed = self._missed, []
        for indexes in lists:
            self.chunk_missed += 1
            if self.chunk_missed > self.options.max_chunk_missed:
                raise FlashError(
                    f"The device reported missed chunks {self.chunk_missed} times; giving up."
                )
            target = indexes[0]
            if target > total:
                raise FlashError(f"The device asked for chunk {target} of {total}.")
            self.log.info(
                "Device {id} asks to continue from chunk {target} (was at {k})",
                id=self.session.device_id,
                target=target,
                k=k,
            )
            k = target
        return k

    async def _done_classic(self):
        req = self._track(
            self.session.send_request(
                lambda mid, tok: to_device.update_done(mid, tok), timeout=self.options.done_timeout
            )
        )
        while True:
            kind, value = await self._wait(req)
            if kind == "reply":
                return
            if kind == "notify":
                if self._device_done:
                    return
                if self._missed:
                    # A ChunkMissed after the last chunk: the flash write failed.
                    raise FlashError("The device lost chunks after the last one was sent.")
                continue
            if isinstance(value, DeviceRequestFailed):
                raise FlashError(f"The device rejected the finished image ({value}).")
            raise self._failure(value, "update-done request")

    # -- fast -----------------------------------------------------------------------------

    def _send_fast(self, index):
        crc, data, token = self._crcs[index], self._chunks[index], self._token
        self.session.send_message(lambda mid: to_device.chunk(mid, token, crc, data, index))

    async def _barrier(self):
        """A ping the device answers after every earlier message (flow control)."""
        req = self._track(self.session.ping())
        timer_at = self.clock.seconds() + self.options.done_timeout
        while True:
            left = timer_at - self.clock.seconds()
            kind, value = await self._wait(req, timeout=max(0.0, left))
            if kind == "notify":
                self._serve_missed()
                continue
            if kind == "reply":
                return
            if kind == "timeout":
                raise FlashError("The device stopped answering during the update.", timeout=True)
            raise self._failure(value, "ping")

    def _serve_missed(self):
        """Resend the chunks listed in queued ChunkMissed messages; True if any."""
        lists, self._missed = self._missed, []
        total = len(self._chunks)
        wanted = []
        for indexes in lists:
            self.chunk_missed += 1
            for i in indexes:
                if i < total and i not in wanted:
                    wanted.append(i)
        for i in wanted:
            self._send_fast(i)
            self.resent += 1
        if wanted:
            self.log.info(
                "Device {id} missed {n} chunks; resent", id=self.session.device_id, n=len(wanted)
            )
        return bool(lists)

    async def _fast(self):
        total = len(self._chunks)
        window = max(1, self.options.fast_window)
        for k in range(total):
            self._check()
            self._send_fast(k)
            if (k + 1) % window == 0 and k + 1 < total:
                await self._barrier()
                self._progress(k + 1)
        self._progress(total)
        for _round in range(self.options.max_done_rounds):
            if self._device_done:
                return
            self._serve_missed()
            await self._barrier()
            if self._device_done:
                return
            req = self._track(
                self.session.send_request(to_device.update_done, timeout=self.options.done_timeout)
            )
            kind, value = await self._wait(req)
            while kind == "notify":
                if self._device_done:
                    return
                kind, value = await self._wait(req)
            if kind == "reply":
                return
            if not (isinstance(value, DeviceRequestFailed) and getattr(value, "code", 0) == 0x80):
                raise self._failure(value, "update-done request")
            # 4.00: chunks are missing and ChunkMissed lists follow.  Serve them
            # until the device is quiet for fast_quiet seconds, then UpdateDone again.
            while True:
                self._serve_missed()
                kind, _ = await self._wait(timeout=self.options.fast_quiet)
                if self._device_done:
                    return
                if kind == "timeout" and not self._missed:
                    break
        raise FlashError(
            f"The device still misses chunks after {self.options.max_done_rounds} rounds."
        )
