# -*- test-case-name: tests.test_fuzz_corpus -*-
"""A device session on the TCP port after a correct handshake (PROTOCOL.md §4-§11).

Every input opens a new connection to the real device factory of a cloud
from the composition root, completes the RSA handshake as the registered
Photon, then sends the input.  The first byte says how:

* bit 0 clear: the rest is CoAP plaintexts cut at the separator, each
  encrypted and framed by the device's own channel, so the fuzzer reaches
  the session's parsers (events, subscriptions, describe and variable
  replies, OTA answers, time requests) through the encrypted layer;
  bit 1 set: the first of them replaces the harness's Hello;
* bit 0 set: the rest is raw bytes after the Hello (frame reader, padding);
* bit 3 clear: the harness numbers CON and NON messages from the device's
  counter, as a device does (a wrong counter closes the connection, which
  bit 3 set leaves to the input);
* bit 2 set: an OTA update (a 1 KiB image, through the cloud's firmware
  updater) starts after the Hello, so the messages answer the flasher.

Afterwards the clock runs past every request timeout and the connection is
lost.  Contract: nothing is logged as an internal error, no timer outlives
the connection, and the server writes a bounded amount per input.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from fuzz.cloud import DEVICE_ID, device_cloud
from fuzz.harness import (
    ContractBroken,
    FailureLog,
    connection_done,
    renumber,
    sequenced,
    split,
)
from twisted_spark.coap import from_device
from twisted_spark.crypto.channel import AesCbcChannel
from twisted_spark.crypto.handshake import session_seeds
from twisted_spark.errors import SparkError

FAILURES = FailureLog().start()
PHOTON = 6
IMAGE = bytes(range(256)) * 4
#: How an update may end when the device does not play along (the API's errors).
FLASH_ERRORS = (SparkError,)
#: Bytes the server may write per message it receives (answers, describe, pings).
MAX_WRITTEN_PER_MESSAGE = 4096


def _hello(mid: int) -> bytes:
    return from_device.device_hello(mid, 0xFFFF, 0xFFFF, 0, PHOTON)


def one_input(data: bytes) -> None:
    FAILURES.clear()
    if not data:
        return
    harness = device_cloud()
    clock = harness.clock
    timers = len(clock.getDelayedCalls())
    protocol = harness.cloud.devices.buildProtocol(harness.address)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(harness.identity_blob)
    channel = AesCbcChannel.from_session(harness.session)
    mid = session_seeds(harness.session)[0]
    mode, messages = data[0], split(data[1:])
    if not mode & 2:
        mid += 1
        protocol.dataReceived(channel.encrypt_frame(_hello(mid & 0xFFFF)))
    if mode & 4 and protocol.session is not None:
        record = harness.store._devices[DEVICE_ID]
        updating = harness.cloud.firmware.flash(record, IMAGE)
        updating.addErrback(lambda failure: failure.trap(*FLASH_ERRORS))
    for message in messages:
        if transport.disconnecting:
            break
        if mode & 1:
            protocol.dataReceived(message)
            continue
        if not mode & 8 and sequenced(message):
            mid += 1
            message = renumber(message, mid)
        protocol.dataReceived(channel.encrypt_frame(message))
        clock.advance(0.25)
    written = len(transport.value())
    if written > MAX_WRITTEN_PER_MESSAGE * (len(messages) + 2):
        raise ContractBroken(f"the server wrote {written} bytes for {len(messages)} messages")
    for _ in range(4):
        clock.advance(31)
    protocol.connectionLost(connection_done())
    clock.advance(1)
    harness.restore()
    FAILURES.check()
    left = len(clock.getDelayedCalls())
    if left > timers:
        raise ContractBroken(f"{left - timers} timers outlived the connection")
