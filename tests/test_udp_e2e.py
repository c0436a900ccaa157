"""The whole server with its UDP device port: real sockets on loopback, real SQLite, a restart.

A Gen3 device built from the sans-IO DTLS client talks to ``SparkService``
over a UDP socket: it handshakes with the EC key the service generated, says
Hello, is acknowledged; the service stops and a new one starts on the same
data directory; the device, which never noticed, sends its next message on
the same DTLS session and is answered (the session came back from SQLite).
"""

import pytest_twisted
from dtls_harness import FixedRandom, key, run_work
from loopback import until
from twisted.internet.protocol import DatagramProtocol
from udp_harness import DEVICE_ID, hello_message

from twisted_spark.coap.codec import CoapMessage, Code, MessageType, decode
from twisted_spark.config import Settings
from twisted_spark.crypto.ec_keys import ec_public_key_der, load_server_ec_private_key
from twisted_spark.dtls import ApplicationData, ClientConfig, ClientHandshake
from twisted_spark.models import DeviceRecord
from twisted_spark.service import SparkService


class UdpDevice(DatagramProtocol):
    """A Gen3 device's socket: datagrams go through the sans-IO DTLS side."""

    def __init__(self, reactor, server_address):
        self.reactor = reactor
        self.server_address = server_address
        self.side = None
        self.received = []

    def now(self):
        return self.reactor.seconds()

    def send_output(self, out):
        out = run_work(self.side, out, self.now())
        for _, event in out.events:
            if isinstance(event, ApplicationData):
                self.received.append(decode(event.data))
        for _, datagram in out.datagrams:
            self.transport.write(datagram, self.server_address)

    def datagramReceived(self, data, addr):
        self.send_output(self.side.datagram_received(data, addr, self.now()))
        if isinstance(self.side, ClientHandshake) and self.side.connection is not None:
            self.side = self.side.connection


async def start(reactor, data_dir):
    settings = Settings(
        data_dir=data_dir,
        api_endpoint="tcp:0:interface=127.0.0.1",
        device_endpoint="tcp:0:interface=127.0.0.1",
        udp_device="127.0.0.1:0",
    )
    service = SparkService(settings, reactor)
    service.startService()
    await service.ready
    return service


@pytest_twisted.ensureDeferred
async def test_a_gen3_device_over_real_udp_survives_a_server_restart(reactor, data_dir):
    service = await start(reactor, data_dir)
    device_key = key("e2e device")
    record = DeviceRecord(DEVICE_ID, public_key=ec_public_key_der(device_key))
    await service.store.put_device(record)
    server_key = load_server_ec_private_key((data_dir / "server_key_ec.pem").read_bytes())
    port = service.udp_port.getHost().port
    device = UdpDevice(reactor, ("127.0.0.1", port))
    socket = reactor.listenUDP(0, device, interface="127.0.0.1")
    try:
        config = ClientConfig(device_key, server_key.public_key(), rng=FixedRandom("e2e"))
        device.side = ClientHandshake(config, device.server_address, device.now())
        device.send_output(device.side.start(device.now()))
        await until(lambda: not isinstance(device.side, ClientHandshake), what="the handshake")
        device.send_output(device.side.send(hello_message(), device.now()))
        await until(lambda: device.received, what="the Hello's ACK")
        assert device.received == [CoapMessage(MessageType.ACK, Code.EMPTY, 1)]
        await until(lambda: service.cloud.registry.local(DEVICE_ID), what="the device online")
        metrics = service.cloud.metrics
        assert metrics.value("spark_dtls_handshakes_completed_total") == 1

        await service.stopService()
        service = await start(reactor, data_dir)  # same data dir, same EC key
        device.server_address = ("127.0.0.1", service.udp_port.getHost().port)
        ping = CoapMessage(MessageType.CON, Code.EMPTY, 2).encode()
        device.send_output(device.side.send(ping, device.now()))
        await until(lambda: len(device.received) == 2, what="the ping's ACK after the restart")
        assert device.received[1] == CoapMessage(MessageType.ACK, Code.EMPTY, 2)
        await until(lambda: service.cloud.registry.local(DEVICE_ID), what="online again")
        assert service.cloud.registry.local(DEVICE_ID).transport.channel.resumed
    finally:
        await socket.stopListening()
        await service.stopService()
