# -*- test-case-name: tests.test_sim,tests.test_e2e_devices -*-
"""Connecting virtual devices to a server over TCP."""

from __future__ import annotations

from twisted.internet.protocol import ClientFactory


class VirtualDeviceFactory(ClientFactory):
    """Connects one :class:`VirtualDevice` (built by ``make_device()``)."""

    def __init__(self, make_device):
        self.make_device = make_device
        self.device = None

    def buildProtocol(self, addr):
        self.device = self.make_device()
        self.device.factory = self
        return self.device


async def connect_device(reactor, host, port, device, timeout=30.0):
    """Connect ``device`` to ``host:port`` and wait until it is online."""
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    await connectProtocol(endpoint, device)
    timer = reactor.callLater(timeout, _give_up, device)
    try:
        await device.online
    finally:
        if timer.active():
            timer.cancel()
    return device


def _give_up(device):
    if not device.online.called:
        device.handshake_error = device.handshake_error or "timed out waiting for the server Hello"
        device.disconnect()
