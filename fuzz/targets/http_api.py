# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The whole HTTP API: raw request bytes into the real site of a composition-root cloud.

The input is what a client writes on one connection, cut into TCP reads at
the separator; the site (``SparkSite`` over the Klein app, with its body
limits, head deadline, auth, routes, body parsers and SSE) answers into a
string transport on the cloud's clock, which then runs past every timeout
before the connection is lost.  The cloud holds the token ``f0f0...`` of a
user owning two devices, so requests reach the authenticated routes.
Contract: no response is a 500, nothing is logged as an internal error, no
timer outlives the connection, and the output is bounded.
"""

from __future__ import annotations

import re

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from fuzz.cloud import device_cloud
from fuzz.harness import ContractBroken, FailureLog, connection_done, split

FAILURES = FailureLog().start()
ADDRESS = IPv4Address("TCP", "192.0.2.80", 40080)
SERVER_ERROR = re.compile(rb"HTTP/1\.[01] 5\d\d ")
MAX_WRITTEN = 256 * 1024


def one_input(data: bytes) -> None:
    FAILURES.clear()
    harness = device_cloud()
    clock = harness.clock
    timers = len(clock.getDelayedCalls())
    channel = harness.cloud.site.buildProtocol(ADDRESS)
    transport = StringTransport(peerAddress=ADDRESS)
    channel.makeConnection(transport)
    for chunk in split(data):
        if transport.disconnecting:
            break
        channel.dataReceived(chunk)
    clock.advance(0.5)
    written = transport.value()
    if len(written) > MAX_WRITTEN:
        raise ContractBroken(f"{len(written)} bytes written for a {len(data)}-byte input")
    match = SERVER_ERROR.search(written)
    if match is not None and b"503 " not in match.group(0):
        raise ContractBroken(f"server error: {written[match.start():match.start() + 400]!r}")
    for _ in range(36):  # the idle and head timeouts of a connection left open
        if transport.disconnecting:
            break  # a real transport reports the close once its buffer is flushed
        clock.advance(5)
    channel.connectionLost(connection_done())
    clock.advance(1)
    harness.restore()
    FAILURES.check()
    left = len(clock.getDelayedCalls())
    if left > timers:
        raise ContractBroken(f"{left - timers} timers outlived the connection")
