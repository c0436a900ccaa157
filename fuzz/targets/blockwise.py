# -*- test-case-name: tests.test_fuzz_corpus -*-
"""Block-wise transfers: Block1 reassembly and Block2 collection of fuzzed CoAP messages.

Each message of the input is one request or response; contract: ``CoapError``
for a bad option or an inconsistent response, bounded state (never more
transfers or bytes than configured), a body only when the last block arrived.
"""

from __future__ import annotations

from fuzz.harness import ContractBroken, split
from twisted_spark.coap.blockwise import (
    BLOCK1,
    Block1Assembler,
    Block2Collector,
    block_option,
)
from twisted_spark.coap.codec import CoapError, decode

MAX_SIZE = 4096


def one_input(data: bytes) -> None:
    assembler = Block1Assembler(max_size=MAX_SIZE, timeout=60.0, max_transfers=2)
    collector = Block2Collector(block_size=64, max_size=MAX_SIZE)
    now = 0.0
    for raw in split(data):
        try:
            message = decode(raw)
        except CoapError:
            continue
        now += (message.message_id & 0xFF) / 4
        try:
            block = block_option(message, BLOCK1)
            if block is not None:
                key = message.token[:1]
                result = assembler.add(key, block, message.payload, now)
                if result.body is not None and len(result.body) > MAX_SIZE:
                    raise ContractBroken(f"a body of {len(result.body)} bytes was assembled")
            else:
                body = collector.add(message)
                if body is not None:
                    collector = Block2Collector(block_size=64, max_size=MAX_SIZE)
        except CoapError:
            collector = Block2Collector(block_size=64, max_size=MAX_SIZE)
        if len(assembler) > assembler.max_transfers:
            raise ContractBroken(f"{len(assembler)} transfers kept")
