# -*- test-case-name: tests.test_fuzz_corpus -*-
"""CoAP codec: ``decode`` raises only ``CoapError``, and ``encode(decode(x)) == x``.

The codec writes every option delta and length in its one minimal form and
refuses an empty payload after ``0xFF``, so a message it accepts has exactly
one encoding: re-encoding what it decoded must give the input back.
"""

from __future__ import annotations

from fuzz.harness import ContractBroken
from twisted_spark.coap import kinds
from twisted_spark.coap.codec import CoapError, decode


def one_input(data: bytes) -> None:
    try:
        message = decode(data)
    except CoapError:
        return
    again = message.encode()
    if again != data:
        raise ContractBroken(f"encode(decode(x)) != x: {data.hex()} -> {again.hex()}")
    # What every received message goes through next: the properties and the dispatch.
    message.uri_path, message.uri_query, message.max_age, message.path_char  # noqa: B018
    kinds.classify(message)
    kinds.classify_device_bound(message)
