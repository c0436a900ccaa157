"""write_now: frames to a device sent at once when that keeps their order."""

from __future__ import annotations

import contextlib

import pytest
import pytest_twisted
from twisted.internet import defer, main, protocol
from twisted.internet import reactor as global_reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport

from twisted_spark.device.eager_write import write_now


class Receiver(protocol.Protocol):
    """The device end: collects bytes until ``expected`` of them arrived."""

    def __init__(self, expected):
        self.expected = expected
        self.received = b""
        self.complete = defer.Deferred()
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= self.expected and not self.complete.called:
            self.complete.callback(self.received)

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


class ServerEnd(protocol.Protocol):
    def __init__(self):
        self.lost = defer.Deferred()

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


async def connected_pair(expected):
    """A real loopback TCP connection: (server protocol, device protocol, cleanup)."""
    made = defer.Deferred()

    def build(_addr):
        server = ServerEnd()
        global_reactor.callLater(0, made.callback, server)
        return server

    port = await TCP4ServerEndpoint(global_reactor, 0, interface="127.0.0.1").listen(
        _factory(build)
    )
    device = Receiver(expected)
    await connectProtocol(
        TCP4ClientEndpoint(global_reactor, "127.0.0.1", port.getHost().port), device
    )
    server = await made

    async def close():
        if server.transport.connected:
            server.transport.loseConnection()
        await defer.gatherResults([server.lost, device.lost])
        await port.stopListening()

    return server, device, close


@contextlib.asynccontextmanager
async def connected(expected):
    """``connected_pair`` for an ``async with``: (server protocol, device protocol)."""
    server, device, close = await connected_pair(expected)
    try:
        yield server, device
    finally:
        await close()


def _factory(build):
    factory = protocol.Factory()
    factory.buildProtocol = build
    return factory


@pytest_twisted.ensureDeferred
async def test_sends_at_once_when_nothing_is_queued(clean_reactor):
    async with connected(5) as (server, device):
        transport = server.transport
        write_now(transport, b"hello")
        # Sent already: nothing queued, the socket is not watched for writability.
        assert not transport.dataBuffer and not transport._tempDataBuffer
        assert transport not in global_reactor.getWriters()
        assert await device.complete == b"hello"


@pytest_twisted.ensureDeferred
async def test_queued_data_keeps_its_place(clean_reactor):
    async with connected(12) as (server, device):
        transport = server.transport
        transport.write(b"first-")
        write_now(transport, b"second")
        assert transport in global_reactor.getWriters()  # queued behind the first
        assert await device.complete == b"first-second"


@pytest_twisted.ensureDeferred
async def test_rest_of_a_partial_send_is_queued_in_order(clean_reactor):
    async with connected(10) as (server, device):
        transport = server.transport
        real = transport.writeSomeData
        calls = []

        def two_bytes_first(data):
            calls.append(bytes(data))
            if len(calls) == 1:
                return real(data[:2])
            return real(data)

        transport.writeSomeData = two_bytes_first
        write_now(transport, b"0123456789")
        assert calls[0] == b"0123456789"
        assert await device.complete == b"0123456789"
        assert calls[1:] and calls[1].startswith(b"23")


@pytest_twisted.ensureDeferred
async def test_a_send_error_is_reported_by_the_transport(clean_reactor):
    async with connected(1) as (server, device):
        transport = server.transport
        transport.writeSomeData = lambda data: main.CONNECTION_LOST
        write_now(transport, b"frame")
        await server.lost  # Twisted's own write path met the error
        assert server.reason.check(ConnectionLost)


@pytest_twisted.ensureDeferred
async def test_a_closing_connection_is_left_to_write(clean_reactor):
    async with connected(1) as (server, device):
        transport = server.transport
        transport.loseConnection()  # nothing queued: only ``disconnecting`` says it
        direct = []
        transport.writeSomeData = lambda data, real=transport.writeSomeData: (
            direct.append(bytes(data)) or real(data)
        )
        write_now(transport, b"late")
        assert direct == []  # not sent eagerly: the transport decides


@pytest.mark.parametrize("frame", [b"abc", b""])
def test_other_transports_get_a_plain_write(frame):
    transport = StringTransport()
    write_now(transport, frame)
    assert transport.value() == frame
