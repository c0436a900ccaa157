"""An in-memory network for the DTLS tests: one DtlsServer, devices, explicit time.

Datagrams only move when the test says so (``pump``); ``drop`` decides which
ones are lost; crypto work runs inline.  Time is a plain number advanced by
the test, so retransmission tests never sleep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from twisted_spark.dtls import (
    ClientConfig,
    ClientHandshake,
    DtlsServer,
    Output,
    ServerConfig,
)

SERVER_ADDRESS = ("203.0.113.5", 5684)
DEVICE_ADDRESS = ("198.51.100.7", 40001)


def key(label: str) -> ec.EllipticCurvePrivateKey:
    """A fixed P-256 key per label (cheap, reproducible)."""
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (2**255) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


class FixedRandom:
    """A reproducible byte source: SHA-256 in counter mode over a label."""

    def __init__(self, label: str) -> None:
        self.label = label.encode()
        self.counter = 0

    def __call__(self, count: int) -> bytes:
        out = b""
        while len(out) < count:
            out += hashlib.sha256(self.label + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        return out[:count]


def run_work(owner, out: Output, now: float) -> Output:
    """Run every CryptoWork inline, feeding results back, until none is left."""
    result = Output(list(out.datagrams), list(out.events), [])
    pending = list(out.work)
    while pending:
        work = pending.pop(0)
        more = owner.work_done(work, work.run(), now)
        result.datagrams.extend(more.datagrams)
        result.events.extend(more.events)
        pending.extend(more.work)
    return result


class Network:
    """A server and one device side (a handshake or a resumed connection)."""

    def __init__(
        self,
        server: DtlsServer | None = None,
        server_key: ec.EllipticCurvePrivateKey | None = None,
        device_key: ec.EllipticCurvePrivateKey | None = None,
        seed: str = "test",
    ) -> None:
        self.server_key = server_key or key("server")
        self.device_key = device_key or key("device")
        self.server = server or DtlsServer(
            ServerConfig(self.server_key, rng=FixedRandom(seed + "/server")),
        )
        self.now = 0.0
        self.device_address = DEVICE_ADDRESS
        self.device = None
        self.to_server: list[bytes] = []
        self.to_device: list[bytes] = []
        self.server_events: list = []
        self.device_events: list = []
        self.drop: Callable[[str, bytes], bool] = lambda direction, datagram: False
        self.log: list[tuple[str, bytes]] = []

    def client_config(self, **options) -> ClientConfig:
        options.setdefault("rng", FixedRandom("device"))
        return ClientConfig(self.device_key, self.server_key.public_key(), **options)

    def start_handshake(self, **options) -> ClientHandshake:
        handshake = ClientHandshake(self.client_config(**options), SERVER_ADDRESS, self.now)
        self.device = handshake
        self._from_device(handshake.start(self.now))
        return handshake

    def _from_device(self, out: Output) -> None:
        out = run_work(self.device, out, self.now)
        self.device_events.extend(out.events)
        for address, datagram in out.datagrams:
            assert address == SERVER_ADDRESS
            self.to_server.append(datagram)

    def _from_server(self, out: Output) -> None:
        out = run_work(self.server, out, self.now)
        self.server_events.extend(out.events)
        for address, datagram in out.datagrams:
            assert address == self.device_address, (address, self.device_address)
            self.to_device.append(datagram)

    def device_output(self, out: Output) -> None:
        """Queue what a device-side call returned (e.g. connection.send)."""
        self._from_device(out)

    def server_output(self, out: Output) -> None:
        self._from_server(out)

    def step(self) -> None:
        """Deliver what is queued now, both ways, once."""
        to_server, self.to_server = self.to_server, []
        for datagram in to_server:
            self.log.append(("to_server", datagram))
            if not self.drop("to_server", datagram):
                self._from_server(
                    self.server.datagram_received(datagram, self.device_address, self.now)
                )
        to_device, self.to_device = self.to_device, []
        for datagram in to_device:
            self.log.append(("to_device", datagram))
            if not self.drop("to_device", datagram):
                self._from_device(self.device.datagram_received(datagram, SERVER_ADDRESS, self.now))

    def pump(self, rounds: int = 20) -> None:
        """Deliver queued datagrams both ways until both queues are empty."""
        for _ in range(rounds):
            if not self.to_server and not self.to_device:
                return
            self.step()
        raise AssertionError("the network did not settle")

    def advance(self, now: float) -> None:
        """Move time to ``now`` and fire whatever timers are due on both sides."""
        self.now = now
        self._from_server(self.server.timer_expired(now))
        if hasattr(self.device, "timer_expired"):
            self._from_device(self.device.timer_expired(now))

    def handshake(self, **options):
        """A complete handshake; returns (device connection, server connection)."""
        handshake = self.start_handshake(**options)
        self.pump()
        assert handshake.connection is not None, self.device_events
        self.device = handshake.connection
        server_connection = self.server.sessions.get(handshake.connection.cid)
        assert server_connection is not None
        return handshake.connection, server_connection

    def events_of(self, side: str, kind: type) -> list:
        events = self.server_events if side == "server" else self.device_events
        return [event for _, event in events if isinstance(event, kind)]
