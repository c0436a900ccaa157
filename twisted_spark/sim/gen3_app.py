# -*- test-case-name: tests.test_gen3_e2e -*-
"""The application half of a virtual Gen3 device: what it serves, and its OTA v3 receiver.

Functions and variables are the TCP simulator's
(:mod:`twisted_spark.sim.application`).  Requests are served the way Device
OS does over DTLS: a function call is acknowledged at once and answered
with a separate confirmable 2.04; a variable read, a signal and a ping are
answered in their ACK; events from the server are kept.

OTA v3 (``communication/src/firmware_update.cpp``): ``POST S`` (file size,
SHA-256, chunk size) is acknowledged, then answered 2.01 with the receive
window (128 KiB of chunks) and the offset already held (0); chunks arrive as
``NON POST C`` with a 1-based index; every second chunk, a gap, a duplicate,
the last chunk or 200 ms of quiet make the device send ``NON POST A`` with
its cumulative index and a bitmap of the chunks received beyond it;
``POST F`` checks size and hash and is answered 2.04 with transfer stats,
and when the server acknowledges that answer the image is applied
(:attr:`Gen3Application.firmware`, :attr:`Gen3Application.ota_done`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from twisted_spark.coap import payloads
from twisted_spark.coap.codec import CoapError, Code, MessageType, decode_uint
from twisted_spark.sim.application import TYPE_CODES, default_functions, default_variables

__all__ = ["CHUNK_INDEX", "FILE_SHA256", "FILE_SIZE", "Gen3Application", "OtaV3Faults"]

CON, NON = MessageType.CON, MessageType.NON
CHUNK_INDEX, WINDOW_SIZE, FILE_SIZE, FILE_SHA256 = 2049, 2053, 2057, 2061
CHUNK_SIZE, DISCARD_DATA, CANCEL_UPDATE = 2065, 2069, 2073
_WINDOW_BYTES = 128 * 1024
_ACK_DELAY = 0.2
_DESCRIBE_BLOCK = 512
ETAG, BLOCK2 = 4, 23


class OtaV3Faults:
    """Misbehaviour for tests: chunk indexes dropped the first time they arrive, chunk
    indexes stored corrupted (the SHA-256 check at UpdateFinish then fails), and
    ``silent``: chunks are taken but never acknowledged."""

    def __init__(self, drop_first=(), corrupt=(), silent=False):
        self.drop_first = set(drop_first)
        self.corrupt = set(corrupt)
        self.silent = silent


class _Update:
    __slots__ = ("size", "sha256", "chunk", "window", "count", "chunks", "cumulative", "unacked",
                 "timer", "finish_mid")

    def __init__(self, size, sha256, chunk):
        self.size = size
        self.sha256 = sha256
        self.chunk = chunk
        self.window = _WINDOW_BYTES // chunk
        self.count = (size + chunk - 1) // chunk
        self.chunks: dict[int, bytes] = {}
        self.cumulative = 0
        self.unacked = 0
        self.timer: Any = None
        self.finish_mid: int | None = None


class Gen3Application:
    """Serves the server's requests (the device provides ``request``, ``answer``, ``clock``)."""

    # provided by the device (:class:`~twisted_spark.sim.gen3.Gen3VirtualDevice`)
    clock: Any
    events: list[tuple[str, str | None, int]]
    signalling: bool
    answer: Callable[..., None]
    request: Callable[..., defer.Deferred]

    def __init__(self, functions=None, variables=None, ota_faults=None):
        self.functions = default_functions() if functions is None else dict(functions)
        self.variables = default_variables() if variables is None else dict(variables)
        self.calls: list[tuple[str, bytes]] = []
        self.ota_faults = ota_faults or OtaV3Faults()
        self.ota_stats = {"chunks": 0, "duplicates": 0, "acks": 0}
        self.firmware: bytes | None = None
        self.ota_done: defer.Deferred = defer.Deferred()
        self._update: _Update | None = None

    def application_describe(self) -> bytes:
        body = {"f": list(self.functions),
                "v": {name: TYPE_CODES[t] for name, (t, _) in self.variables.items()}}
        return json.dumps(body, separators=(",", ":")).encode()

    # -- dispatch ----------------------------------------------------------------------

    def serve(self, message) -> None:
        """One request or NON message from the server (duplicates already removed)."""
        code, path = message.code, message.path_char
        if code == Code.EMPTY and message.type == CON:
            self.answer(message)
        elif code == Code.POST and path == "f":
            self._function(message)
        elif code == Code.GET and path == "d":
            self._describe_asked(message)
        elif code == Code.GET and path == "v":
            self._variable(message)
        elif code == Code.PUT and path == "s":
            self.signalling = payloads.parse_signal(message)
            self.answer(message, Code.CHANGED)
        elif code == Code.POST and path in ("e", "E"):
            event = payloads.parse_event(message)
            self.events.append((event.name, event.data, event.ttl))
            if message.type == CON:
                self.answer(message)
        elif code == Code.POST and path in ("S", "C", "F"):
            getattr(self, "_ota_" + path)(message)
        elif message.type == CON:
            self.answer(message, Code.NOT_FOUND)

    def _function(self, message) -> None:
        name, argument = payloads.parse_function_call(message)
        self.calls.append((name, argument))
        function = self.functions.get(name)
        self.answer(message)
        value = function(argument) if function is not None else -1
        self.request(CON, Code.CHANGED, "", payload=struct.pack(">i", int(value)),
                     token=message.token)

    def _describe_asked(self, message) -> None:
        """``GET d?2`` [Block2]: acknowledged, then 2.05 (in 512-byte Block2 blocks with an
        ETag when longer), as ``description.cpp`` answers."""
        body = self.application_describe()
        blocks = message.option_values(BLOCK2)
        number = decode_uint(blocks[0]) >> 4 if blocks else 0
        self.answer(message)
        if len(body) <= _DESCRIBE_BLOCK and not blocks:
            self.request(CON, Code.CONTENT, "", payload=body, token=message.token)
            return
        part = body[number * _DESCRIBE_BLOCK:(number + 1) * _DESCRIBE_BLOCK]
        more = (number + 1) * _DESCRIBE_BLOCK < len(body)
        block = (number << 4) | (8 if more else 0) | 5
        options = ((ETAG, b"\x01"), (BLOCK2, _uint(block)))
        self.request(CON, Code.CONTENT, "", payload=part, options=options, token=message.token)

    def _variable(self, message) -> None:
        name = payloads.parse_variable_request(message)
        entry = self.variables.get(name)
        if entry is None:
            self.answer(message, Code.NOT_FOUND)
            return
        type_name, value = entry
        if callable(value):
            value = value()
        self.answer(message, Code.CONTENT, payloads.encode_variable(type_name, value))

    # -- OTA v3 ---------------------------------------------------------------------------

    def _ota_S(self, message) -> None:
        try:
            size = decode_uint(_option(message, FILE_SIZE))
            chunk = decode_uint(_option(message, CHUNK_SIZE))
        except CoapError:
            self.answer(message, Code.BAD_REQUEST)
            return
        hashes = message.option_values(FILE_SHA256)
        if not size or chunk < 512 or chunk % 4 or (hashes and len(hashes[0]) != 32):
            self.answer(message, Code.BAD_REQUEST)
            return
        self._stop_update()
        self._update = update = _Update(size, hashes[0] if hashes else None, chunk)
        self.answer(message)
        options = ((WINDOW_SIZE, _uint(update.window)), (FILE_SIZE, b""))
        self.request(CON, Code.CREATED, "", options=options, token=message.token)

    def _ota_C(self, message) -> None:
        update = self._update
        if update is None:
            return
        try:
            index = decode_uint(_option(message, CHUNK_INDEX))
        except CoapError:
            return
        if index in self.ota_faults.drop_first:
            self.ota_faults.drop_first.discard(index)
            return
        self.ota_stats["chunks"] += 1
        if not 1 <= index <= update.count:
            return
        duplicate = index <= update.cumulative or index in update.chunks
        if duplicate:
            self.ota_stats["duplicates"] += 1
        elif index <= update.cumulative + update.window:
            data = bytes(message.payload)
            if index in self.ota_faults.corrupt:
                data = bytes((data[0] ^ 0xFF,)) + data[1:]
            update.chunks[index] = data
            while update.cumulative + 1 in update.chunks:
                update.cumulative += 1
        update.unacked += 1
        if self.ota_faults.silent:
            return
        gaps = any(i > update.cumulative for i in update.chunks)
        if duplicate or gaps or update.cumulative == update.count or update.unacked >= 2:
            self._send_chunk_ack()
        elif update.timer is None:
            update.timer = self.clock.callLater(_ACK_DELAY, self._ack_timer)

    def _ack_timer(self) -> None:
        if self._update is not None:
            self._update.timer = None
            if self._update.unacked:
                self._send_chunk_ack()

    def _send_chunk_ack(self) -> None:
        update = self._update
        assert update is not None
        update.unacked = 0
        if update.timer is not None and update.timer.active():
            update.timer.cancel()
        update.timer = None
        bits = 0
        for index in update.chunks:
            if index > update.cumulative:
                bits |= 1 << (index - update.cumulative - 1)
        words = (bits.bit_length() + 31) // 32
        bitmap = b"".join(struct.pack("<I", (bits >> (32 * i)) & 0xFFFFFFFF)
                          for i in range(words))
        self.ota_stats["acks"] += 1
        self.request(NON, Code.POST, "A", payload=bitmap,
                     options=((CHUNK_INDEX, _uint(update.cumulative)),))

    def _ota_F(self, message) -> None:
        update = self._update
        self.answer(message)
        if message.option_values(CANCEL_UPDATE):
            self._stop_update()
            self.request(CON, Code.CHANGED, "", token=message.token)
            return
        if update is None:
            self.request(CON, Code.BAD_REQUEST, "", token=message.token)
            return
        image = b"".join(update.chunks[i] for i in range(1, update.cumulative + 1))
        if update.cumulative != update.count or len(image) != update.size or (
                update.sha256 is not None and hashlib.sha256(image).digest() != update.sha256):
            self._stop_update()
            self.request(CON, Code.BAD_REQUEST, "", payload=b"file incomplete or corrupt",
                         token=message.token)
            return
        stats = json.dumps({"recv_chunks": self.ota_stats["chunks"],
                            "dup_chunks": self.ota_stats["duplicates"],
                            "sent_acks": self.ota_stats["acks"]}).encode()
        done = self.request(CON, Code.CHANGED, "", payload=stats, token=message.token)
        done.addCallback(lambda _: self._apply(image))

    def _apply(self, image: bytes) -> None:
        """The server acknowledged the UpdateFinish answer: the new firmware is in."""
        self._stop_update()
        self.firmware = image
        if not self.ota_done.called:
            self.ota_done.callback(image)

    def _stop_update(self) -> None:
        update, self._update = self._update, None
        if update is not None and update.timer is not None and update.timer.active():
            update.timer.cancel()

    def stop_application(self) -> None:
        self._stop_update()


def _option(message, number: int) -> bytes:
    values = message.option_values(number)
    if len(values) != 1:
        raise CoapError(f"option {number} appears {len(values)} times")
    return values[0]


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
