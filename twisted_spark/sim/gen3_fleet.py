# -*- test-case-name: tests.test_sim_gen3_cli -*-
"""Many virtual Gen3 devices in one process: EC keys, UDP sockets, bounded-concurrency connects."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import defer

from twisted_spark.crypto.ec_keys import (
    ec_public_key_der,
    load_ec_device_public_key,
    load_server_ec_private_key,
)
from twisted_spark.sim.gen3 import Gen3VirtualDevice

__all__ = ["Gen3Fleet", "ensure_ec_key", "load_server_ec_public_key"]


def load_server_ec_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """The server's EC public key from PEM/DER bytes (its public or private key file)."""
    try:
        return load_ec_device_public_key(data)
    except ValueError:
        return load_server_ec_private_key(data).public_key()


def ensure_ec_key(key_dir, device_id: str) -> tuple[ec.EllipticCurvePrivateKey, bool]:
    """Load ``<key_dir>/<id>.ec.pem``; generate it (and ``<id>.ec.pub.pem``) if absent.

    :return: ``(key, created)``.
    """
    key_dir = Path(key_dir)
    path = key_dir / f"{device_id}.ec.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        return key, False
    key_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    public = serialization.load_der_public_key(ec_public_key_der(key))
    (key_dir / f"{device_id}.ec.pub.pem").write_bytes(public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, True


class Gen3Fleet:
    """Gen3 devices, each on its own UDP socket, connected to one server.

    :param keys: ``[(device_id, EC private key)]``.
    :param server_public_key: the server's EC public key.
    :param server_address: ``(host, port)`` of its UDP device port.
    :param concurrency: handshakes in flight at once.
    """

    def __init__(self, reactor, keys, server_public_key, server_address, concurrency=50,
                 **options):
        self.reactor = reactor
        self.devices = [
            Gen3VirtualDevice(device_id, key, server_public_key, server_address, reactor,
                              **options)
            for device_id, key in keys
        ]
        self.concurrency = concurrency
        self.sockets: list = []
        self.failures: list[tuple[str, str]] = []

    async def connect_all(self, timeout: float = 60.0) -> list[Gen3VirtualDevice]:
        """Handshake every device; returns the devices whose Hello was acknowledged."""
        semaphore = defer.DeferredSemaphore(self.concurrency)

        async def one(device):
            await semaphore.acquire()
            try:
                self.sockets.append(self.reactor.listenUDP(0, device))
                online = device.connect()
                online.addTimeout(timeout, self.reactor)
                await online
                return device
            except Exception as error:
                self.failures.append((device.device_id, str(error) or type(error).__name__))
                return None
            finally:
                semaphore.release()

        results = await defer.gatherResults(
            [defer.ensureDeferred(one(d)) for d in self.devices], consumeErrors=True
        )
        return [d for d in results if d is not None]

    async def close(self) -> None:
        """Stop every device's socket."""
        for socket in self.sockets:
            await socket.stopListening()
        self.sockets = []
