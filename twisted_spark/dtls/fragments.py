# -*- test-case-name: tests.test_dtls_messages -*-
"""DTLS handshake message headers, fragmentation and reassembly (RFC 6347 §4.2.2-4.2.3).

Header: msg_type(1) length(3) message_seq(2) fragment_offset(3)
fragment_length(3).  The transcript hashes every message as if it had come
in one fragment (offset 0, fragment_length = length), which
:func:`encode_message` produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from twisted_spark.dtls.errors import DecodeError
from twisted_spark.dtls.wire import Reader, u8, u16, u24

__all__ = [
    "HANDSHAKE_HEADER_LENGTH",
    "Added",
    "HandshakeFragment",
    "Message",
    "Reassembler",
    "encode_message",
    "fragment_message",
    "parse_fragments",
]

HANDSHAKE_HEADER_LENGTH = 12


@dataclass(frozen=True, slots=True)
class HandshakeFragment:
    msg_type: int
    length: int
    message_seq: int
    offset: int
    data: bytes

    @property
    def complete(self) -> bool:
        return self.offset == 0 and len(self.data) == self.length


@dataclass(frozen=True, slots=True)
class Message:
    """A whole handshake message: its type, sequence number and body."""

    msg_type: int
    message_seq: int
    body: bytes

    def encode(self) -> bytes:
        return encode_message(self.msg_type, self.message_seq, self.body)


def _header(
    msg_type: int, length: int, message_seq: int, offset: int, fragment_length: int
) -> bytes:
    return u8(msg_type) + u24(length) + u16(message_seq) + u24(offset) + u24(fragment_length)


def encode_message(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """One unfragmented message with its header (also its transcript form)."""
    return _header(msg_type, len(body), message_seq, 0, len(body)) + body


def fragment_message(
    msg_type: int, message_seq: int, body: bytes, max_fragment: int
) -> list[bytes]:
    """The message cut into fragments of at most ``max_fragment`` body bytes each."""
    if len(body) <= max_fragment:
        return [encode_message(msg_type, message_seq, body)]
    return [
        _header(msg_type, len(body), message_seq, offset, len(body[offset : offset + max_fragment]))
        + body[offset : offset + max_fragment]
        for offset in range(0, len(body), max_fragment)
    ]


def parse_fragments(payload: bytes) -> list[HandshakeFragment]:
    """All handshake fragments in one record's plaintext."""
    r = Reader(payload, "handshake record")
    fragments = []
    while r.remaining:
        msg_type = r.u8()
        length = r.u24()
        message_seq = r.u16()
        offset = r.u24()
        data = r.vector(3)
        if offset + len(data) > length:
            raise DecodeError(
                f"handshake fragment {offset}+{len(data)} runs past message length {length}"
            )
        fragments.append(HandshakeFragment(msg_type, length, message_seq, offset, data))
    return fragments


class Added(Enum):
    """What :meth:`Reassembler.add` did with a fragment."""

    BUFFERED = "buffered"
    OLD = "old"  # a message already delivered: the peer is retransmitting
    IGNORED = "ignored"  # too far ahead of what we expect


class _Partial:
    __slots__ = ("buffer", "length", "msg_type", "ranges")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.buffer = bytearray(length)
        self.ranges: list[tuple[int, int]] = []

    def add(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        self.buffer[offset:end] = data
        merged: list[tuple[int, int]] = []
        for start, stop in sorted([*self.ranges, (offset, end)]):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
            else:
                merged.append((start, stop))
        self.ranges = merged

    @property
    def complete(self) -> bool:
        return self.ranges == [(0, self.length)] or self.length == 0


class Reassembler:
    """Collects the peer's handshake fragments and releases whole messages in order.

    Bounded: messages over ``max_message`` bytes are refused, fragments more
    than ``window`` messages ahead are ignored, and at most ``max_buffered``
    bytes wait for earlier messages.
    """

    __slots__ = ("_buffered", "_partials", "max_buffered", "max_message", "next_seq", "window")

    def __init__(
        self,
        next_seq: int,
        max_message: int = 4096,
        window: int = 8,
        max_buffered: int = 16384,
    ) -> None:
        self.next_seq = next_seq
        self.max_message = max_message
        self.window = window
        self.max_buffered = max_buffered
        self._partials: dict[int, _Partial] = {}
        self._buffered = 0

    def add(self, fragment: HandshakeFragment) -> Added:
        seq = fragment.message_seq
        if seq < self.next_seq:
            return Added.OLD
        if seq >= self.next_seq + self.window:
            return Added.IGNORED
        if fragment.length > self.max_message:
            raise DecodeError(
                f"handshake message {seq} of {fragment.length} bytes exceeds {self.max_message}"
            )
        partial = self._partials.get(seq)
        if partial is None:
            if self._buffered + fragment.length > self.max_buffered:
                return Added.IGNORED
            partial = self._partials[seq] = _Partial(fragment.msg_type, fragment.length)
            self._buffered += fragment.length
        elif partial.msg_type != fragment.msg_type or partial.length != fragment.length:
            raise DecodeError(f"fragments of handshake message {seq} disagree on type or length")
        partial.add(fragment.offset, fragment.data)
        return Added.BUFFERED

    def pop_ready(self) -> list[Message]:
        """The complete messages that are next in sequence, in order."""
        ready = []
        while (partial := self._partials.get(self.next_seq)) is not None and partial.complete:
            del self._partials[self.next_seq]
            self._buffered -= partial.length
            ready.append(Message(partial.msg_type, self.next_seq, bytes(partial.buffer)))
            self.next_seq += 1
        return ready
