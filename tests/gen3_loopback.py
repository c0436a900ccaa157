"""A Gen3 cloud on loopback: the composition root's server with its UDP port, and Gen3 devices.

The server is :func:`~twisted_spark.cloud.build_cloud` with an EC key, its API
on TCP and its Gen3 port on UDP, both on 127.0.0.1:0; the devices are
:class:`~twisted_spark.sim.gen3.Gen3VirtualDevice` objects on their own UDP
sockets.  Tests drive the API with treq, as a user would.
"""

from __future__ import annotations

import hashlib

import treq
from cryptography.hazmat.primitives.asymmetric import ec
from loopback import listen, loopback_cloud, shut_down, until
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool

from twisted_spark.config import Settings
from twisted_spark.crypto.ec_keys import ec_public_key_der
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.sim.gen3 import Gen3VirtualDevice

GEN3_ID = "e00fce68f2a1b3c4d5e6f701"
TOKEN = "0123456789abcdef0123456789abcdef01234567"


def fixed_key(label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (2**255) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


SERVER_EC = fixed_key("gen3 loopback server")
DEVICE_EC = fixed_key("gen3 loopback device")


class Gen3Cloud:
    """The server on loopback with one registered Gen3 device owned by alice."""

    def __init__(self, store=None, **settings):
        self.settings = Settings(**settings)
        self.cloud = loopback_cloud(self.settings, store=store, gen3_key=SERVER_EC)
        self.store = self.cloud.store
        self.registry = self.cloud.registry
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.devices: list[Gen3VirtualDevice] = []
        self.sockets: list = []

    async def start(self, register=True):
        if register:
            await self.store.add_user(User("alice", "x"))
            await self.store.add_token(AccessToken(TOKEN, "alice", "test", 0.0))
            await self.store.put_device(DeviceRecord(
                GEN3_ID, owner="alice", public_key=ec_public_key_der(DEVICE_EC)))
        await self.cloud.start()
        self.device_port, self.api_port = await listen(self.cloud)
        self.udp = reactor.listenUDP(0, self.cloud.gen3, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.api_port.getHost().port}"
        return self

    @property
    def udp_address(self):
        return ("127.0.0.1", self.udp.getHost().port)

    async def attach(self, wait_describe=True, **options) -> Gen3VirtualDevice:
        """A Gen3 device online, its describe cached by the server (unless told not to wait)."""
        device = Gen3VirtualDevice(GEN3_ID, DEVICE_EC, SERVER_EC.public_key(), self.udp_address,
                                   reactor, **options)
        self.sockets.append(reactor.listenUDP(0, device, interface="127.0.0.1"))
        self.devices.append(device)
        await device.connect()
        await until(lambda: self.registry.local(GEN3_ID) is not None, what="device online")
        session = self.registry.local(GEN3_ID)
        if wait_describe:
            await until(lambda: session.functions, what="describe cached")
        return device

    async def request(self, method, path, **kwargs):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = await treq.request(method, self.base + path, headers=headers,
                                      pool=self.pool, **kwargs)
        return response.code, await response.json()

    async def stop(self):
        for socket in self.sockets:
            await socket.stopListening()
        await self.udp.stopListening()
        await self.pool.closeCachedConnections()
        await shut_down(self.cloud, self.device_port, self.api_port)
