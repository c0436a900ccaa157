# -*- test-case-name: tests.test_coap_messages -*-
"""What a message is, by the one table of (code, first Uri-Path letter) (PROTOCOL.md §5-§6).

:func:`classify` names a message the server received from a device; the
device session dispatches on its answer and hands OTA messages to the
flasher.  :func:`classify_device_bound` names one a device received from
the server (the simulator dispatches on it).
"""

from __future__ import annotations

from enum import Enum

from twisted_spark.coap.codec import CoapMessage, Code, MessageType
from twisted_spark.coap.encoding import ACK, CON


class MessageKind(Enum):
    """What a message from a device is, as the server sees it."""

    # Members are singletons compared by identity: the C-level identity hash
    # keeps the per-message dispatch lookups cheap (Enum's own is Python code).
    __hash__ = object.__hash__

    HELLO = "hello"
    PING = "ping"
    PUBLIC_EVENT = "public_event"
    PRIVATE_EVENT = "private_event"
    SUBSCRIBE = "subscribe"
    GET_TIME = "get_time"
    CHUNK_MISSED = "chunk_missed"
    UPDATE_DONE = "update_done"
    UPDATE_ACK = "update_ack"  # Gen3 OTA v3 ``POST A`` (the Gen3 session routes it)
    EMPTY_ACK = "empty_ack"
    ACK_RESPONSE = "ack_response"  # ACK with a code: piggy-backed response, match by token
    SEPARATE_RESPONSE = "separate_response"  # NON/CON with a response code: match by token
    RST = "rst"
    UNKNOWN = "unknown"


_FROM_DEVICE_REQUESTS: dict[tuple[int, str], MessageKind] = {
    (Code.POST, "h"): MessageKind.HELLO,
    (Code.POST, "e"): MessageKind.PUBLIC_EVENT,
    (Code.POST, "E"): MessageKind.PRIVATE_EVENT,
    (Code.GET, "e"): MessageKind.SUBSCRIBE,
    (Code.GET, "t"): MessageKind.GET_TIME,
    (Code.GET, "c"): MessageKind.CHUNK_MISSED,
    (Code.PUT, "u"): MessageKind.UPDATE_DONE,
}


def classify(message: CoapMessage) -> MessageKind:
    """Name a message the server received from a device (§5, §6.1)."""
    mtype = message.type
    code = message.code
    if mtype == ACK:
        return MessageKind.EMPTY_ACK if code == Code.EMPTY else MessageKind.ACK_RESPONSE
    if mtype == MessageType.RST:
        return MessageKind.RST
    if code == Code.EMPTY:
        return MessageKind.PING if mtype == CON else MessageKind.UNKNOWN
    if code >= 0x40:
        return MessageKind.SEPARATE_RESPONSE
    return _FROM_DEVICE_REQUESTS.get((code, message.path_char), MessageKind.UNKNOWN)


def is_sequenced(message: CoapMessage) -> bool:
    """Whether the message takes the next device message id (§5.5): not ACK/RST."""
    return message.type != ACK and message.type != MessageType.RST


class DeviceBoundKind(Enum):
    """What a message from the server is, as the device firmware sees it (§5.4)."""

    __hash__ = object.__hash__  # identity, as MessageKind

    HELLO = "hello"
    PING = "ping"
    DESCRIBE = "describe"
    FUNCTION_CALL = "function_call"
    VARIABLE_REQUEST = "variable_request"
    SIGNAL = "signal"
    UPDATE_BEGIN = "update_begin"
    SAVE_BEGIN = "save_begin"
    CHUNK = "chunk"
    UPDATE_DONE = "update_done"
    KEY_CHANGE = "key_change"
    PUBLIC_EVENT = "public_event"
    PRIVATE_EVENT = "private_event"
    TIME_REPLY = "time_reply"
    EMPTY_ACK = "empty_ack"
    ACK_RESPONSE = "ack_response"  # e.g. 60 80 EventSlowdown / SubscribeFail
    UNKNOWN = "unknown"


_TO_DEVICE_REQUESTS: dict[tuple[int, str], DeviceBoundKind] = {
    (Code.GET, "v"): DeviceBoundKind.VARIABLE_REQUEST,
    (Code.GET, "d"): DeviceBoundKind.DESCRIBE,
    (Code.POST, "e"): DeviceBoundKind.PUBLIC_EVENT,
    (Code.POST, "E"): DeviceBoundKind.PRIVATE_EVENT,
    (Code.POST, "h"): DeviceBoundKind.HELLO,
    (Code.POST, "f"): DeviceBoundKind.FUNCTION_CALL,
    (Code.POST, "u"): DeviceBoundKind.UPDATE_BEGIN,
    (Code.POST, "c"): DeviceBoundKind.CHUNK,
    (Code.POST, "s"): DeviceBoundKind.SAVE_BEGIN,
    (Code.PUT, "k"): DeviceBoundKind.KEY_CHANGE,
    (Code.PUT, "u"): DeviceBoundKind.UPDATE_DONE,
    (Code.PUT, "s"): DeviceBoundKind.SIGNAL,
}


def classify_device_bound(message: CoapMessage) -> DeviceBoundKind:
    """Name a message a device received from the server, by the firmware's rules.

    Any 2.05 is a time reply (that is how the firmware treats it); other
    codes and paths are dispatched on (code, first Uri-Path character).
    """
    code = message.code
    if code == Code.CONTENT:
        return DeviceBoundKind.TIME_REPLY
    if code == Code.EMPTY:
        if message.type == CON:
            return DeviceBoundKind.PING
        if message.type == ACK:
            return DeviceBoundKind.EMPTY_ACK
        return DeviceBoundKind.UNKNOWN
    if message.type == ACK:
        return DeviceBoundKind.ACK_RESPONSE
    return _TO_DEVICE_REQUESTS.get((code, message.path_char), DeviceBoundKind.UNKNOWN)

