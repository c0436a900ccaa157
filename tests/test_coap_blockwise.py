"""RFC 7959 block-wise transfers as Gen3 describe uses them (explicit times)."""

import pytest

from twisted_spark.coap.blockwise import (
    BLOCK1,
    BLOCK2,
    CONTINUE,
    ETAG,
    REQUEST_ENTITY_INCOMPLETE,
    REQUEST_ENTITY_TOO_LARGE,
    Block,
    Block1Assembler,
    Block2Collector,
    block_option,
)
from twisted_spark.coap.codec import CoapError, CoapMessage, Code, MessageType


@pytest.mark.parametrize(
    ("block", "wire"),
    [
        (Block(0, True, 5), b"\x0d"),  # what a device sends first: 512-byte blocks, more
        (Block(1, False, 5), b"\x15"),
        (Block(2, True, 6), b"\x2e"),  # 1024-byte blocks (Device OS's Linux build)
        (Block(0, False, 0), b""),
        (Block(4096, True, 5), b"\x01\x00\x0d"),
    ],
)
def test_block_option_round_trips(block, wire):
    assert block.encode() == wire
    assert Block.decode(wire) == block
    assert Block(0, True, 5).size == 512 and Block(0, True, 6).size == 1024


@pytest.mark.parametrize(
    ("wire", "why"), [(b"\x0f", "reserved size"), (b"\x01\x02\x03\x04", "4 bytes")]
)
def test_bad_block_options(wire, why):
    with pytest.raises(CoapError, match=why):
        Block.decode(wire)


def test_a_describe_in_three_blocks():
    body = bytes(range(256)) * 4 + b"tail"
    a = Block1Assembler()
    first = a.add("system", Block(0, True, 5), body[:512], now=0.0)
    assert (first.code, first.body, first.block) == (CONTINUE, None, Block(0, True, 5))
    assert a.add("system", Block(1, True, 5), body[512:1024], now=1.0).code == CONTINUE
    last = a.add("system", Block(2, False, 5), body[1024:], now=2.0)
    assert last.code == Code.CHANGED and last.body == body and last.problem is None
    assert len(a) == 0


def test_transfers_to_different_keys_do_not_mix():
    a = Block1Assembler()
    a.add(1, Block(0, True, 5), b"s" * 512, now=0.0)
    a.add(2, Block(0, True, 5), b"a" * 512, now=0.0)
    assert a.add(1, Block(1, False, 5), b"S", now=0.1).body == b"s" * 512 + b"S"
    assert a.add(2, Block(1, False, 5), b"A", now=0.1).body == b"a" * 512 + b"A"


def test_out_of_order_block_is_request_entity_incomplete():
    a = Block1Assembler()
    a.add("k", Block(0, True, 5), b"x" * 512, now=0.0)
    result = a.add("k", Block(2, False, 5), b"y", now=0.1)
    assert result.code == REQUEST_ENTITY_INCOMPLETE and "expected block 1" in result.problem
    assert a.add("k", Block(1, False, 5), b"y", now=0.2).code == REQUEST_ENTITY_INCOMPLETE
    nothing = Block1Assembler().add("k", Block(3, False, 5), b"z", now=0.0)
    assert "expected block 0" in nothing.problem


def test_block_size_may_not_change_and_middle_blocks_must_be_full():
    a = Block1Assembler()
    a.add("k", Block(0, True, 5), b"x" * 512, now=0.0)
    assert a.add("k", Block(1, True, 4), b"x" * 256, now=0.1).code == REQUEST_ENTITY_INCOMPLETE
    short = Block1Assembler().add("k", Block(0, True, 5), b"x" * 100, now=0.0)
    assert short.code == Code.BAD_REQUEST and "has 100 bytes, not 512" in short.problem


def test_body_size_is_bounded():
    a = Block1Assembler(max_size=1024)
    a.add("k", Block(0, True, 5), b"x" * 512, now=0.0)
    a.add("k", Block(1, True, 5), b"x" * 512, now=0.0)
    result = a.add("k", Block(2, False, 5), b"!", now=0.0)
    assert result.code == REQUEST_ENTITY_TOO_LARGE and len(a) == 0


def test_block_zero_restarts_a_transfer():
    a = Block1Assembler()
    a.add("k", Block(0, True, 5), b"o" * 512, now=0.0)
    a.add("k", Block(0, True, 5), b"n" * 512, now=1.0)  # the device reconnected and began again
    assert a.add("k", Block(1, False, 5), b"!", now=2.0).body == b"n" * 512 + b"!"


def test_stale_transfers_expire_and_their_number_is_bounded():
    a = Block1Assembler(timeout=60.0, max_transfers=2)
    a.add("old", Block(0, True, 5), b"x" * 512, now=0.0)
    assert a.add("old", Block(1, False, 5), b"!", now=60.5).code == REQUEST_ENTITY_INCOMPLETE
    for key in "abc":
        a.add(key, Block(0, True, 5), b"x" * 512, now=100.0)
    assert len(a) == 2
    assert a.add("a", Block(1, False, 5), b"!", now=100.0).code == REQUEST_ENTITY_INCOMPLETE


def response(num, more, payload, etag=b"\x01", szx=5):
    options = ((ETAG, etag), (BLOCK2, Block(num, more, szx).encode()))
    return CoapMessage(MessageType.ACK, Code.CONTENT, 1, b"\x05", options, payload)


def test_block2_collector_asks_block_by_block_and_checks_the_etag():
    c = Block2Collector(512)
    assert c.request_block() == Block(0, False, 5)
    assert c.add(response(0, True, b"a" * 512)) is None
    assert c.request_block() == Block(1, False, 5)
    assert c.add(response(1, False, b"b")) == b"a" * 512 + b"b"
    changed = Block2Collector(512)
    changed.add(response(0, True, b"a" * 512))
    with pytest.raises(CoapError, match="ETag changed"):
        changed.add(response(1, False, b"b", etag=b"\x02"))
    with pytest.raises(CoapError, match="asked for 0"):
        Block2Collector(512).add(response(1, False, b"b"))
    assert (
        Block2Collector().add(CoapMessage(MessageType.ACK, Code.CONTENT, 1, payload=b"{}")) == b"{}"
    )


def test_repeated_block_option_is_an_error():
    twice = CoapMessage(
        MessageType.CON, Code.POST, 1, options=((BLOCK1, b"\x0d"), (BLOCK1, b"\x1d"))
    )
    with pytest.raises(CoapError, match="appears 2 times"):
        block_option(twice, BLOCK1)
