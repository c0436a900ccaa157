# -*- test-case-name: tests.test_coap_blockwise -*-
"""Block-wise transfers (RFC 7959) as Gen3 devices use them, sans-IO.

A Gen3 device sends a long describe as a series of confirmable ``POST d``
requests with a Block1 option, each after the previous one was
acknowledged, each with a new token and message id
(``communication/src/description.cpp``).  Blocks are 512 bytes, or 1024
when the device's largest message allows (its Linux build).
:class:`Block1Assembler` puts them back together, refusing anything out of
order, oversized or stale, with the response code RFC 7959 gives for it.
:class:`Block2Collector` does the same for a response the server asked for
block by block (a server-requested describe, which answers with Block2 and
an ETag).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from twisted_spark.coap.codec import CoapError, CoapMessage, Code, decode_uint, encode_uint

__all__ = [
    "BLOCK1",
    "BLOCK2",
    "CONTINUE",
    "ETAG",
    "REQUEST_ENTITY_INCOMPLETE",
    "REQUEST_ENTITY_TOO_LARGE",
    "SIZE1",
    "Block",
    "Block1Assembler",
    "Block2Collector",
    "BlockResult",
    "block_option",
]

ETAG = 4
BLOCK2 = 23
BLOCK1 = 27
SIZE1 = 60
CONTINUE = 0x5F  # 2.31
REQUEST_ENTITY_INCOMPLETE = 0x88  # 4.08
REQUEST_ENTITY_TOO_LARGE = 0x8D  # 4.13


@dataclass(frozen=True)
class Block:
    """A Block1/Block2 option value: block number, more-flag, size exponent (size 2**(szx+4))."""

    num: int
    more: bool
    szx: int

    @property
    def size(self) -> int:
        return 1 << (self.szx + 4)

    @classmethod
    def decode(cls, value: bytes) -> Block:
        if len(value) > 3:
            raise CoapError(f"block option of {len(value)} bytes (at most 3)")
        number = decode_uint(value)
        if number & 7 == 7:
            raise CoapError("block option with the reserved size exponent 7")
        return cls(number >> 4, bool(number & 8), number & 7)

    def encode(self) -> bytes:
        if not 0 <= self.num < 1 << 20 or not 0 <= self.szx < 7:
            raise CoapError(f"cannot encode block {self}")
        return encode_uint((self.num << 4) | (8 if self.more else 0) | self.szx)


def block_option(message: CoapMessage, number: int) -> Block | None:
    """The message's Block1 or Block2 option (``number``), or None; CoapError if repeated."""
    values = message.option_values(number)
    if len(values) > 1:
        raise CoapError(f"option {number} appears {len(values)} times")
    return Block.decode(values[0]) if values else None


@dataclass(frozen=True)
class BlockResult:
    """What to answer one Block1 request with, and the whole body once it is complete.

    ``code`` is 2.31 Continue, 2.04 Changed (last block), or an error code
    with ``problem`` saying why; ``block`` is the Block1 option to echo.
    """

    code: int
    block: Block
    body: bytes | None = None
    problem: str | None = None


class _Transfer:
    __slots__ = ("chunks", "length", "next", "szx", "touched")

    def __init__(self, szx: int, now: float) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.next = 0
        self.szx = szx
        self.touched = now


class Block1Assembler:
    """Reassembles Block1 request bodies, one transfer per ``key`` (e.g. describe part).

    Bounded: a body of at most ``max_size`` bytes, at most ``max_transfers``
    at once (the oldest is dropped), each forgotten ``timeout`` seconds
    after its last block.  Blocks must come in order; the message layer
    has already removed retransmitted duplicates.
    """

    def __init__(
        self, max_size: int = 32 * 1024, timeout: float = 60.0, max_transfers: int = 4
    ) -> None:
        self.max_size = max_size
        self.timeout = timeout
        self.max_transfers = max_transfers
        self._transfers: OrderedDict[Hashable, _Transfer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._transfers)

    def add(self, key: Hashable, block: Block, payload: bytes, now: float) -> BlockResult:
        """One block of the body sent to ``key``."""
        self.expire(now)
        if block.num == 0:
            self._transfers.pop(key, None)  # a new body replaces an unfinished one
            transfer = self._transfers[key] = _Transfer(block.szx, now)
            while len(self._transfers) > self.max_transfers:
                self._transfers.popitem(last=False)
        else:
            found = self._transfers.get(key)
            if found is None or block.num != found.next or block.szx != found.szx:
                expected = "block 0" if found is None else f"block {found.next}"
                self._transfers.pop(key, None)
                return BlockResult(
                    REQUEST_ENTITY_INCOMPLETE,
                    block,
                    problem=f"got block {block.num} of {block.size} bytes, expected {expected}",
                )
            transfer = found
        if block.more and len(payload) != block.size:
            self._transfers.pop(key, None)
            return BlockResult(
                Code.BAD_REQUEST,
                block,
                problem=f"block {block.num} has {len(payload)} bytes, not {block.size}",
            )
        if transfer.length + len(payload) > self.max_size:
            self._transfers.pop(key, None)
            return BlockResult(
                REQUEST_ENTITY_TOO_LARGE,
                block,
                problem=f"the body grows past {self.max_size} bytes at block {block.num}",
            )
        transfer.chunks.append(bytes(payload))
        transfer.length += len(payload)
        transfer.next += 1
        transfer.touched = now
        self._transfers.move_to_end(key)
        if block.more:
            return BlockResult(CONTINUE, block)
        del self._transfers[key]
        return BlockResult(Code.CHANGED, block, body=b"".join(transfer.chunks))

    def expire(self, now: float) -> None:
        """Forget transfers whose last block is older than ``timeout``."""
        while self._transfers:
            key, transfer = next(iter(self._transfers.items()))
            if now - transfer.touched <= self.timeout:
                return
            del self._transfers[key]


class Block2Collector:
    """Collects a response the server asks for block by block (RFC 7959 §2.4).

    Ask with :meth:`request_block`, feed each response to :meth:`add`;
    Device OS requires the server to use the device's own block size and
    never to ask for a block twice, and tags each body with an ETag that
    must not change half-way.
    """

    def __init__(self, block_size: int = 512, max_size: int = 32 * 1024) -> None:
        if block_size not in (16, 32, 64, 128, 256, 512, 1024):
            raise ValueError(f"block size {block_size} is not a power of two from 16 to 1024")
        self.szx = block_size.bit_length() - 5
        self.max_size = max_size
        self.next = 0
        self.etag: bytes | None = None
        self._chunks: list[bytes] = []
        self._length = 0

    def request_block(self) -> Block:
        """The Block2 option for the next request."""
        return Block(self.next, False, self.szx)

    def add(self, response: CoapMessage) -> bytes | None:
        """The whole body once the last block arrived, else None; CoapError if inconsistent."""
        block = block_option(response, BLOCK2)
        if block is None:
            if self.next:
                raise CoapError("a response without Block2 in the middle of a block-wise body")
            return bytes(response.payload)
        etags = response.option_values(ETAG)
        etag = etags[0] if etags else b""
        if block.num != self.next or block.szx != self.szx:
            raise CoapError(f"got block {block.num} of {block.size} bytes, asked for {self.next}")
        if self.next == 0:
            self.etag = etag
        elif etag != self.etag:
            raise CoapError("the ETag changed half-way: the body changed, ask again from block 0")
        if block.more and len(response.payload) != block.size:
            raise CoapError(f"block {block.num} has {len(response.payload)} bytes")
        self._length += len(response.payload)
        if self._length > self.max_size:
            raise CoapError(f"the body grows past {self.max_size} bytes")
        self._chunks.append(bytes(response.payload))
        self.next += 1
        return None if block.more else b"".join(self._chunks)
