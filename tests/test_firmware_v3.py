"""OTA v3 messages as Device OS reads and writes them (``firmware_update.cpp``)."""

from __future__ import annotations

import struct

import pytest

from twisted_spark.coap.codec import CoapError, CoapMessage, Code, MessageType, decode
from twisted_spark.firmware.v3 import (
    CHUNK_INDEX,
    chunk_message,
    finish_request,
    parse_chunk_ack,
    start_request,
)


def test_update_start_carries_size_hash_and_chunk_size_with_a_token():
    message = decode(start_request(0x1234, 7, 70000, b"\xab" * 32, 512))
    assert (message.type, message.code, message.token, message.uri_path) == (
        MessageType.CON, Code.POST, b"\x07", ["S"])
    assert message.option_values(2057) == [(70000).to_bytes(3, "big")]
    assert message.option_values(2061) == [b"\xab" * 32]
    assert message.option_values(2065) == [b"\x02\x00"]


def test_a_chunk_is_non_confirmable_without_token_and_indexed_from_one():
    message = decode(chunk_message(9, 300, b"data"))
    assert (message.type, message.token, message.uri_path, message.payload) == (
        MessageType.NON, b"", ["C"], b"data")
    assert message.option_values(CHUNK_INDEX) == [b"\x01\x2c"]


def test_update_finish_and_its_cancel_form():
    assert decode(finish_request(1, 2)).option_values(2073) == []
    assert decode(finish_request(1, 2, cancel=True)).option_values(2073) == [b""]


def test_an_update_ack_names_the_chunks_beyond_the_cumulative_index():
    bits = (1 << 0) | (1 << 2) | (1 << 33)  # chunks 11, 13 and 44 beyond 10
    payload = struct.pack("<II", bits & 0xFFFFFFFF, bits >> 32)
    ack = CoapMessage(MessageType.NON, Code.POST, 5, b"",
                      ((11, b"A"), (CHUNK_INDEX, b"\x0a")), payload)
    assert parse_chunk_ack(ack) == (10, {11, 13, 44})


def test_an_update_ack_without_its_index_is_refused():
    with pytest.raises(CoapError):
        parse_chunk_ack(CoapMessage(MessageType.NON, Code.POST, 5, b"", ((11, b"A"),)))
