# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The Spark message parsers (PROTOCOL.md §7-§11, Gen3 Hello and describe).

The first byte picks the parser, the rest is its input; parsers that take a
:class:`CoapMessage` get the rest decoded as CoAP.  Contract: each returns a
value or raises ``CoapError`` (a clear protocol error), nothing else.
"""

from __future__ import annotations

from twisted_spark.coap import gen3, payloads
from twisted_spark.coap.codec import CoapError, decode


def _payload_parsers():
    return (
        payloads.parse_hello,
        payloads.parse_describe,
        lambda p: payloads.merge_describe(payloads.parse_describe(p), payloads.parse_describe(p)),
        lambda p: payloads.decode_variable(p[0] if p else 0, p[1:]),
        lambda p: payloads.decode_variable(p[:1].decode("latin-1"), p[1:]),
        payloads.parse_function_return,
        payloads.parse_time_reply,
        payloads.parse_update_ready,
        payloads.parse_update_begin,
        payloads.parse_chunk_missed,
        gen3.parse_gen3_hello,
        gen3.parse_application_describe,
    )


def _message_parsers():
    return (
        payloads.parse_event,
        payloads.parse_subscribe,
        payloads.parse_function_call,
        payloads.parse_variable_request,
        payloads.parse_signal,
        payloads.parse_chunk,
        gen3.describe_kind,
        gen3.is_hello,
    )


PAYLOAD_PARSERS = _payload_parsers()
MESSAGE_PARSERS = _message_parsers()


def one_input(data: bytes) -> None:
    if not data:
        return
    choice, rest = data[0], data[1:]
    count = len(PAYLOAD_PARSERS) + len(MESSAGE_PARSERS)
    choice %= count
    try:
        if choice < len(PAYLOAD_PARSERS):
            PAYLOAD_PARSERS[choice](rest)
        else:
            MESSAGE_PARSERS[choice - len(PAYLOAD_PARSERS)](decode(rest))
    except CoapError:
        pass
