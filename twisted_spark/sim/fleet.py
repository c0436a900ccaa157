# -*- test-case-name: tests.test_sim -*-
"""Many virtual devices in one process: keys, ids and bounded-concurrency connects."""

from __future__ import annotations

from pathlib import Path

from Crypto.PublicKey import RSA
from twisted.internet import defer

from twisted_spark.crypto.keys import load_server_private_key, public_key_pem
from twisted_spark.sim.device import VirtualDevice, connect_device
from twisted_spark.sim.keys import shared_keys


def load_server_public_key(data):
    """The server public key from PEM/DER bytes (public or private file)."""
    try:
        return RSA.import_key(data).public_key()
    except ValueError:
        return load_server_private_key(data).public_key()


def device_ids(count, prefix=""):
    """``count`` ids of 24 hex characters: ``prefix`` then a zero-padded index."""
    prefix = prefix.lower()
    width = 24 - len(prefix)
    if width < 1 or any(c not in "0123456789abcdef" for c in prefix):
        raise ValueError("the device id prefix must be at most 23 hex characters")
    if count > 16**width:
        raise ValueError(f"{count} devices do not fit a {len(prefix)}-character prefix")
    return [f"{prefix}{i:0{width}x}" for i in range(count)]


def ensure_key(key_dir, device_id, generate=True):
    """Load ``<key_dir>/<id>.pem``; generate it (and ``<id>.pub.pem``) if absent.

    :return: ``(RsaKey, created)``.
    """
    key_dir = Path(key_dir)
    path = key_dir / f"{device_id}.pem"
    if path.exists():
        return RSA.import_key(path.read_bytes()), False
    shared = key_dir / "shared.pem"
    if shared.exists():
        return RSA.import_key(shared.read_bytes()), False
    if not generate:
        raise FileNotFoundError(f"no key for {device_id} in {key_dir}")
    key_dir.mkdir(parents=True, exist_ok=True)
    key = RSA.generate(1024, e=65537)
    path.write_bytes(key.export_key("PEM", pkcs=1) + b"\n")
    path.chmod(0o600)
    (key_dir / f"{device_id}.pub.pem").write_text(public_key_pem(key))
    return key, True


class Fleet:
    """A set of :class:`VirtualDevice` connected to one server.

    :param make_device: ``make_device(index) -> VirtualDevice``.
    :param concurrency: connects in flight at once.
    """

    def __init__(self, reactor, host, port, make_device, count, concurrency=100):
        self.reactor = reactor
        self.host = host
        self.port = port
        self.devices = [make_device(i) for i in range(count)]
        self.concurrency = concurrency
        self.failures = []

    async def connect_all(self, timeout=60.0):
        """Connect every device; returns the list of devices that came online."""
        semaphore = defer.DeferredSemaphore(self.concurrency)

        async def one(device):
            await semaphore.acquire()
            try:
                await connect_device(self.reactor, self.host, self.port, device, timeout)
                return device
            except Exception as e:
                self.failures.append((device.device_id, str(e)))
                return None
            finally:
                semaphore.release()

        results = await defer.gatherResults(
            [defer.ensureDeferred(one(d)) for d in self.devices], consumeErrors=True
        )
        return [d for d in results if d is not None]

    def disconnect_all(self):
        for device in self.devices:
            device.disconnect()


def make_factory(server_public_key, keys, platform, clock, **kw):
    """A ``make_device(index)`` for :class:`Fleet` from ``[(id, key)]``."""
    share = shared_keys()

    def make_device(index):
        device_id, key = keys[index]
        key = share(key)
        chosen = platform
        if platform == "mixed":
            chosen = "core" if index % 2 else "photon"
        return VirtualDevice(device_id, key, server_public_key, platform=chosen, clock=clock, **kw)

    return make_device
