# -*- test-case-name: tests.test_firmware_v3,tests.test_gen3_e2e -*-
"""OTA v3: how Gen3 devices (Hello flag 0x80) take firmware over DTLS.

The message set of Device OS ``communication/src/firmware_update.cpp``:

* ``CON POST S`` with a token and the options FILE_SIZE (2057), FILE_SHA256
  (2061, 32 bytes) and CHUNK_SIZE (2065, ≥ 512, a multiple of 4): the device
  acknowledges it, then answers 2.01 (a separate response with the token)
  carrying WINDOW_SIZE (2053, in chunks: 128 KiB of them) and FILE_SIZE (the
  offset it already holds of this same file, by its SHA-256: the transfer
  resumes from there);
* ``NON POST C`` without token, CHUNK_INDEX (2049, 1-based from that
  offset) and the chunk; the last one is not padded;
* the device answers chunks with ``NON POST A``: CHUNK_INDEX = how many
  arrived in order, and a bitmap (little-endian 32-bit words) of those
  received beyond it within its window;
* ``CON POST F`` with a token (CANCEL_UPDATE 2073 to cancel): acknowledged,
  then answered 2.04 with transfer stats; the device applies the update
  once the server acknowledges that answer (the session does).

:class:`FlasherV3` sends up to ``burst`` chunks beyond the acknowledged
ones (never past the device's window), resends the gaps an ``A`` reveals
(each at most once per ``resend_after`` seconds) and, when the device goes
quiet, every chunk sent and not known received; it talks to the device
only through the session's :class:`~twisted_spark.interfaces.IDeviceChannel`.
"""

from __future__ import annotations

import hashlib
import struct

from twisted.internet import defer

from twisted_spark.coap.codec import CoapError, CoapMessage, Code, MessageType, decode_uint
from twisted_spark.coap.encoding import PATH
from twisted_spark.coap.kinds import MessageKind
from twisted_spark.errors import DeviceRequestFailed
from twisted_spark.firmware.plan import FlashError, FlashOptions
from twisted_spark.firmware.transfer import Stopped, Transfer

__all__ = ["CHUNK_INDEX", "FlasherV3", "chunk_message", "finish_request", "start_request"]

CHUNK_INDEX, WINDOW_SIZE, FILE_SIZE, FILE_SHA256 = 2049, 2053, 2057, 2061
CHUNK_SIZE, DISCARD_DATA, CANCEL_UPDATE = 2065, 2069, 2073
MIN_CHUNK = 512


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def start_request(mid: int, token: int, size: int, sha256: bytes, chunk_size: int) -> bytes:
    """UpdateStart: ``CON POST S`` with the file's size, SHA-256 and the chunk size."""
    options = ((PATH, b"S"), (FILE_SIZE, _uint(size)), (FILE_SHA256, sha256),
               (CHUNK_SIZE, _uint(chunk_size)))
    return CoapMessage(MessageType.CON, Code.POST, mid, bytes((token,)), options).encode()


def chunk_message(mid: int, index: int, data: bytes) -> bytes:
    """UpdateChunk: ``NON POST C`` with the 1-based CHUNK_INDEX, no token."""
    options = ((PATH, b"C"), (CHUNK_INDEX, _uint(index)))
    return CoapMessage(MessageType.NON, Code.POST, mid, b"", options, data).encode()


def finish_request(mid: int, token: int, cancel: bool = False) -> bytes:
    """UpdateFinish: ``CON POST F`` (with CANCEL_UPDATE to cancel)."""
    options = ((PATH, b"F"),) + (((CANCEL_UPDATE, b""),) if cancel else ())
    return CoapMessage(MessageType.CON, Code.POST, mid, bytes((token,)), options).encode()


def parse_chunk_ack(message) -> tuple[int, set[int]]:
    """``POST A``: (chunks received in order, indexes received beyond them)."""
    values = message.option_values(CHUNK_INDEX)
    if len(values) != 1:
        raise CoapError("UpdateAck without one CHUNK_INDEX")
    cumulative = decode_uint(values[0])
    payload = bytes(message.payload)
    beyond = set()
    for word_index in range(len(payload) // 4):
        (word,) = struct.unpack_from("<I", payload, word_index * 4)
        while word:
            bit = (word & -word).bit_length() - 1
            beyond.add(cumulative + 1 + word_index * 32 + bit)
            word &= word - 1
    return cumulative, beyond


class FlasherV3(Transfer):
    """Send ``image`` to a Gen3 device over OTA v3 (see the module docstring).

    Install :meth:`message_received` as the channel's update handler (the
    updater does), then :meth:`run` -> Deferred[summary] or :class:`FlashError`.
    """

    burst = 32
    max_quiet_rounds = 8

    def __init__(self, channel, image, clock, options=None, chunk_size=None):
        if not image:
            raise ValueError("empty image")
        super().__init__(channel, image, clock, options or FlashOptions())
        size = int(chunk_size or getattr(channel, "ota_chunk_size", MIN_CHUNK) or MIN_CHUNK)
        self.chunk_size = max(MIN_CHUNK, size - size % 4)
        self.window = 0
        self.offset = 0
        self.acked = 0
        self.beyond: set[int] = set()
        self.quiet_rounds = 0
        self.rtt = 0.5  # smoothed chunk -> UpdateAck round trip (seconds)
        self._sent_at: dict[int, float] = {}
        self._resent: set[int] = set()

    @property
    def resend_after(self) -> float:
        """Seconds before a chunk a gap reveals is sent again (acks of later chunks repeat it)."""
        return max(0.02, 2 * self.rtt)

    @property
    def quiet(self) -> float:
        """Seconds without an UpdateAck after which every unacknowledged chunk is resent."""
        return min(3.0, max(0.2, 4 * self.rtt))

    def message_received(self, kind, msg):
        """The channel's update handler: UpdateAck (``POST A``) moves the transfer on."""
        if kind is not MessageKind.UPDATE_ACK:
            return super().message_received(kind, msg)
        try:
            cumulative, beyond = parse_chunk_ack(msg)
        except CoapError:
            self.log.info("Ignoring a malformed UpdateAck from {id}", id=self.channel.device_id)
            return None
        newest = max(beyond | {cumulative})  # the chunk whose arrival this ack answers
        sent = self._sent_at.get(newest)
        if sent is not None and newest not in self._resent:  # Karn: no samples of resends
            self.rtt = 0.8 * self.rtt + 0.2 * (self.clock.seconds() - sent)
        if cumulative >= self.acked:
            self.acked = cumulative
            self.beyond = {i for i in self.beyond | beyond if i > cumulative}
        self.wake()
        return None

    def run(self):
        """Do the whole update -> Deferred[summary dict] or :class:`FlashError`."""
        return defer.ensureDeferred(self._run())

    async def _run(self):
        started = self.clock.seconds()
        deadline = self.clock.callLater(
            self.options.transfer_timeout, self.abort,
            FlashError(f"The update did not finish within "
                       f"{self.options.transfer_timeout:g} seconds.", timeout=True),
        )
        try:
            await self._start()
            await self._send_chunks()
            await self._finish()
        except Stopped:
            raise self.error from None
        finally:
            if deadline.active():
                deadline.cancel()
        return {
            "mode": "v3",
            "bytes": len(self.image),
            "chunk_size": self.chunk_size,
            "chunks": len(self.chunks),
            "resent": self.resent,
            "seconds": self.clock.seconds() - started,
        }

    async def _ask(self, build, what):
        """Send a tokened request; its answer (a CoapMessage) or FlashError."""
        tracked = self.track(self.channel.send_request(build, timeout=self.options.done_timeout))
        kind, value = await self.wait(tracked)
        while kind == "notify":
            kind, value = await self.wait(tracked)
        if kind == "error":
            if isinstance(value, DeviceRequestFailed) and getattr(value, "code", None):
                raise FlashError(f"The device refused the {what} ({value}).")
            raise self.failure(value, what)
        return value

    async def _start(self):
        image, size = self.image, self.chunk_size
        digest = hashlib.sha256(image).digest()
        answer = await self._ask(
            lambda mid, tok: start_request(mid, tok, len(image), digest, size), "update request")
        if answer.code != Code.CREATED:
            raise FlashError(f"The device refused the update ({_code(answer.code)}).")
        try:
            self.window = decode_uint(_one(answer, WINDOW_SIZE))
            offsets = answer.option_values(FILE_SIZE)
            self.offset = decode_uint(offsets[0]) if offsets else 0
        except CoapError as error:
            raise FlashError(
                f"The device's answer to the update request is malformed: {error}") from None
        if self.window < 1 or not 0 <= self.offset <= len(image):
            raise FlashError(f"The device offered window {self.window} at offset {self.offset}.")
        rest = image[self.offset:]
        self.chunks = [rest[i:i + size] for i in range(0, len(rest), size)]
        self.log.info("Device {id} is ready for the update ({size} bytes, OTA v3, {chunk}-byte "
                      "chunks, window {window}, from offset {offset})", id=self.channel.device_id,
                      size=len(image), chunk=size, window=self.window, offset=self.offset)

    async def _send_chunks(self):
        total = len(self.chunks)
        following = 1  # the next chunk never sent yet
        while self.acked < total:
            limit = self.acked + min(self.window, self.burst)
            while following <= total and following <= limit:
                self._send(following)
                following += 1
            kind, _ = await self.wait(timeout=self.quiet)
            now = self.clock.seconds()
            if kind == "timeout":
                self.quiet_rounds += 1
                if self.quiet_rounds > self.max_quiet_rounds:
                    raise FlashError("The device stopped acknowledging chunks.", timeout=True)
                self._resend(range(self.acked + 1, following), now, force=True)
                continue
            self.quiet_rounds = 0
            if self.beyond:  # a gap: what lies below the highest chunk received is missing
                self._resend(range(self.acked + 1, max(self.beyond)), now)
            self.progress(self.acked)

    def _send(self, index):
        data = self.chunks[index - 1]
        self._sent_at[index] = self.clock.seconds()
        self.channel.send_message(lambda mid: chunk_message(mid, index, data))

    def _resend(self, indexes, now, force=False):
        for index in indexes:
            if index in self.beyond or index <= self.acked:
                continue
            if not force and now - self._sent_at.get(index, 0.0) < self.resend_after:
                continue
            self.resent += 1
            self._resent.add(index)
            self._send(index)

    async def _finish(self):
        answer = await self._ask(lambda mid, tok: finish_request(mid, tok), "update finish")
        if answer.code != Code.CHANGED:
            detail = bytes(answer.payload).decode("utf-8", "replace")
            raise FlashError(f"The device did not accept the firmware ({_code(answer.code)}"
                             f"{': ' + detail if detail else ''}).")


def _one(message, number):
    values = message.option_values(number)
    if len(values) != 1:
        raise CoapError(f"option {number} appears {len(values)} times")
    return values[0]


def _code(code: int) -> str:
    return f"{code >> 5}.{code & 31:02d}"
