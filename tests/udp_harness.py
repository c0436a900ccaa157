"""The UDP device port under test: a Clock, a fake socket, inline crypto, phase-1 DTLS devices.

``Port`` wraps one :class:`Gen3DeviceProtocol` over a :class:`MemoryStore`;
``Device`` is a Gen3 device built from the sans-IO DTLS client, speaking
CoAP messages the tests write by hand.  Datagrams move only when the test
calls ``pump``; time only when it advances the clock.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from dtls_harness import FixedRandom, key, run_work
from twisted.internet import defer
from twisted.internet.task import Clock

from twisted_spark.coap.codec import CoapMessage, Code, MessageType, OptionNumber
from twisted_spark.coap.gen3 import Gen3Hello, encode_gen3_hello
from twisted_spark.crypto.ec_keys import ec_public_key_der
from twisted_spark.dtls import ApplicationData, ClientConfig, ClientHandshake, resume
from twisted_spark.models import DeviceRecord
from twisted_spark.store import MemoryStore
from twisted_spark.udp.port import build_gen3_protocol

SERVER_ADDRESS = ("127.0.0.1", 5684)
DEVICE_ID = "0123456789abcdef01234567"


class InlineExecutor:
    """Runs crypto work at once (an ``IExecutor`` for tests), counting the calls."""

    pending = 0

    def __init__(self):
        self.calls = 0

    def run(self, function, *args):
        self.calls += 1
        return defer.maybeDeferred(function, *args)


class FakeUdpTransport:
    def __init__(self):
        self.sent: list[tuple[tuple, bytes]] = []

    def write(self, data, address):
        self.sent.append((address, data))


def hello_message(device_id=DEVICE_ID, message_id=1, max_message_size=1152, **changes):
    values = dict(
        product_id=12,
        product_version=3,
        flags=0x36,
        platform_id=12,
        device_id=device_id,
        system_version=6200,
        max_message_size=max_message_size,
        max_binary_size=983040,
        ota_chunk_size=512,
    )
    values.update(changes)
    payload = encode_gen3_hello(Gen3Hello(**values))
    return CoapMessage(
        MessageType.CON, Code.POST, message_id, b"", ((OptionNumber.URI_PATH, b"h"),), payload
    ).encode()


class Port:
    """The protocol with its collaborators, all in memory."""

    def __init__(self, store=None, seed="udp", sessions_builder=None, **options):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = store or MemoryStore()
        self.server_key = key("server")
        self.executor = InlineExecutor()
        if sessions_builder is not None:  # (store, clock) -> the CoAP session factory
            options["sessions"] = sessions_builder(self.store, self.clock)
        self.protocol = build_gen3_protocol(
            self.server_key,
            self.store,
            clock=self.clock,
            executor=self.executor,
            rng=FixedRandom(seed + "/server"),
            **options,
        )
        self.transport = FakeUdpTransport()
        self.protocol.makeConnection(self.transport)

    def register(self, device_id=DEVICE_ID, device_key: ec.EllipticCurvePrivateKey = None):
        device_key = device_key or key("device")
        self.store._devices[device_id] = DeviceRecord(
            device_id=device_id, public_key=ec_public_key_der(device_key)
        )

    def advance(self, seconds):
        self.clock.advance(seconds)


class Device:
    """One Gen3 device's DTLS side, talking to ``port`` from ``address``."""

    def __init__(self, port: Port, address=("192.0.2.20", 40000), device_key=None, seed="dev"):
        self.port = port
        self.address = address
        self.key = device_key or key("device")
        self.seed = seed
        self.side = None  # a ClientHandshake, then a Connection
        self.received: list[bytes] = []  # application data from the server
        self.events: list = []

    @property
    def now(self):
        return self.port.clock.seconds()

    def _send(self, out):
        out = run_work(self.side, out, self.now)
        self.events.extend(out.events)
        for address, datagram in out.datagrams:
            assert address == SERVER_ADDRESS
            self.port.protocol.datagramReceived(datagram, self.address)

    def pump(self, rounds=20):
        """Deliver what the port sent to this device until nothing moves."""
        for _ in range(rounds):
            mine = [d for a, d in self.port.transport.sent if a == self.address]
            self.port.transport.sent = [(a, d) for a, d in self.port.transport.sent
                                        if a != self.address]
            if not mine:
                return
            for datagram in mine:
                out = self.side.datagram_received(datagram, SERVER_ADDRESS, self.now)
                for _, event in out.events:
                    if isinstance(event, ApplicationData):
                        self.received.append(event.data)
                self._send(out)
        raise AssertionError("the exchange did not settle")

    def handshake(self):
        config = ClientConfig(self.key, self.port.server_key.public_key(),
                              rng=FixedRandom(self.seed))
        self.side = ClientHandshake(config, SERVER_ADDRESS, self.now)
        self._send(self.side.start(self.now))
        self.pump()
        assert self.side.connection is not None, self.events
        self.side = self.side.connection
        return self.side

    def send(self, coap: bytes):
        self._send(self.side.send(coap, self.now))
        self.pump()

    def sleep_and_resume(self, new_address=None):
        """What a device does on waking: rebuild the session from its saved state."""
        saved = self.side.snapshot()
        self.side = resume(saved)
        if new_address is not None:
            self.address = new_address
