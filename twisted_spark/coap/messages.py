# -*- test-case-name: tests.test_coap_messages -*-
"""The Spark message catalogue on top of the CoAP codec (PROTOCOL.md §6-§9, §11).

One import for tools and tests; the parts live in modules with one job each:

* :mod:`~twisted_spark.coap.to_device`: builders of what the server sends
  (:func:`hello` ... :func:`time_reply`);
* :mod:`~twisted_spark.coap.from_device`: builders of what a device sends
  (:func:`device_hello` ... :func:`update_done_ack`), for the simulator;
* :mod:`~twisted_spark.coap.payloads`: payload and option codecs (parsers
  raise :class:`~twisted_spark.coap.codec.CoapError` on malformed input);
* :mod:`~twisted_spark.coap.kinds`: the one table naming a message
  (:func:`classify`, :func:`classify_device_bound`);
* :mod:`~twisted_spark.coap.encoding`: the token and text rules they share.
"""

from __future__ import annotations

from twisted_spark.coap.encoding import (
    DEFAULT_TTL,
)
from twisted_spark.coap.from_device import (
    chunk_missed,
    chunk_received,
    coded_ack,
    describe_response,
    device_event,
    device_hello,
    device_update_done,
    function_return,
    get_time,
    signal_ack,
    subscribe,
    update_done_ack,
    update_ready,
    variable_value,
)
from twisted_spark.coap.kinds import (
    DeviceBoundKind,
    MessageKind,
    classify,
    classify_device_bound,
    is_sequenced,
)
from twisted_spark.coap.payloads import (
    VARIABLE_TYPES,
    ChunkInfo,
    Event,
    Hello,
    Subscription,
    UpdateParams,
    decode_variable,
    encode_update_begin_payload,
    encode_variable,
    merge_describe,
    parse_chunk,
    parse_chunk_missed,
    parse_describe,
    parse_event,
    parse_function_call,
    parse_function_return,
    parse_hello,
    parse_signal,
    parse_subscribe,
    parse_time_reply,
    parse_update_begin,
    parse_update_ready,
    parse_variable_request,
    variable_type_name,
)
from twisted_spark.coap.to_device import (
    bad_request_ack,
    chunk,
    describe,
    empty_ack,
    event,
    function_call,
    hello,
    ping,
    signal,
    slowdown,
    subscribe_fail,
    time_reply,
    update_begin,
    update_done,
    variable_request,
)

__all__ = [
    "DEFAULT_TTL",
    "VARIABLE_TYPES",
    "ChunkInfo",
    "DeviceBoundKind",
    "Event",
    "Hello",
    "MessageKind",
    "Subscription",
    "UpdateParams",
    "bad_request_ack",
    "chunk",
    "chunk_missed",
    "chunk_received",
    "classify",
    "classify_device_bound",
    "coded_ack",
    "decode_variable",
    "describe",
    "describe_response",
    "device_event",
    "device_hello",
    "device_update_done",
    "empty_ack",
    "encode_update_begin_payload",
    "encode_variable",
    "event",
    "function_call",
    "function_return",
    "get_time",
    "hello",
    "is_sequenced",
    "merge_describe",
    "parse_chunk",
    "parse_chunk_missed",
    "parse_describe",
    "parse_event",
    "parse_function_call",
    "parse_function_return",
    "parse_hello",
    "parse_signal",
    "parse_subscribe",
    "parse_time_reply",
    "parse_update_begin",
    "parse_update_ready",
    "parse_variable_request",
    "ping",
    "signal",
    "signal_ack",
    "slowdown",
    "subscribe",
    "subscribe_fail",
    "time_reply",
    "update_begin",
    "update_done",
    "update_done_ack",
    "update_ready",
    "variable_request",
    "variable_type_name",
    "variable_value",
]
