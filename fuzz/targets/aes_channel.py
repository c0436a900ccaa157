# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The AES-CBC channel and its frame reader (PROTOCOL.md §4): framing, padding, IV rule.

The input is a byte stream as the device port reads it after the handshake,
cut into TCP reads at :data:`~fuzz.harness.SEPARATOR`.  Contract:
:class:`FrameReader` returns bodies of a valid length or raises
:class:`FrameError` (and keeps raising it), ``decrypt`` returns the unpadded
plaintext or raises :class:`FrameError`, nothing else.  Round trip: what one
channel encrypts, its twin decrypts back, whatever the plaintext.
"""

from __future__ import annotations

from fuzz.harness import ContractBroken, split
from twisted_spark.crypto.channel import BLOCK_SIZE, AesCbcChannel, FrameError, FrameReader

SESSION = bytes(range(40))
MAX_FRAME = 1024


def _round_trip(plaintext: bytes) -> None:
    sender, receiver = AesCbcChannel.from_session(SESSION), AesCbcChannel.from_session(SESSION)
    for _ in range(2):  # the second frame checks the IV chain
        wire = sender.encrypt_frame(plaintext)
        bodies = FrameReader(0xFFF0).feed(wire)
        if len(bodies) != 1 or receiver.decrypt(bodies[0]) != plaintext:
            raise ContractBroken(f"round trip lost {plaintext.hex()}")


def one_input(data: bytes) -> None:
    _round_trip(data[:600])
    reader = FrameReader(MAX_FRAME)
    channel = AesCbcChannel.from_session(SESSION)
    failed = None
    for chunk in split(data):
        try:
            bodies = reader.feed(chunk)
        except FrameError as error:
            failed = error
            continue
        if failed is not None:
            raise ContractBroken("the reader accepted bytes after a framing error")
        for body in bodies:
            if not body or len(body) % BLOCK_SIZE or len(body) > MAX_FRAME:
                raise ContractBroken(f"the reader returned a body of {len(body)} bytes")
            try:
                plaintext = channel.decrypt(body)
            except FrameError:
                continue
            if len(plaintext) >= len(body):
                raise ContractBroken("decrypt removed no padding")
    if reader.buffered > MAX_FRAME + 2:
        raise ContractBroken(f"{reader.buffered} bytes buffered without a complete frame")
