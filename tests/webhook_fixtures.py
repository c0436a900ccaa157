"""A webhook receiver (a twisted.web Site on 127.0.0.1) and a loopback cloud
with users, tokens and a device, for the webhook end-to-end tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import treq
from device_fixtures import DEVICE_KEYS, SERVER_PUBLIC
from loopback import listen, loopback_cloud, shut_down, until
from twisted.internet import defer, reactor, tcp
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twisted_spark.config import Settings
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.sim.device import VirtualDevice, connect_device

CORE = "53ff73065067544816300187"
TOKENS = {"alice": "a" * 40, "bob": "b" * 40}


@dataclass
class Received:
    method: str
    path: str
    args: dict
    headers: dict
    body: bytes
    at: float = 0.0


@dataclass
class Script:
    """How the receiver answers one path: statuses in turn (the last repeats)."""

    statuses: list = field(default_factory=lambda: [200])
    body: bytes = b"ok"
    delay: float = 0.0
    content_type: str = "text/plain"


class Receiver(Resource):
    """Records every request; answers as the path's :class:`Script` says."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.received: list[Received] = []
        self.scripts: dict[str, Script] = {}
        self._pending = []

    def on(self, path, *statuses, body=b"ok", delay=0.0):
        self.scripts[path] = Script(list(statuses) or [200], body, delay)

    def at(self, path):
        return [r for r in self.received if r.path == path]

    def render(self, request):
        path = request.path.decode()
        self.received.append(Received(
            request.method.decode(), path,
            {k.decode(): [x.decode() for x in v] for k, v in request.args.items()},
            {k.decode().lower(): v[0].decode()
             for k, v in request.requestHeaders.getAllRawHeaders()},
            request.content.read(), reactor.seconds()))
        script = self.scripts.get(path, Script())
        status = script.statuses.pop(0) if len(script.statuses) > 1 else script.statuses[0]
        request.setResponseCode(status)
        request.setHeader(b"content-type", script.content_type.encode())
        if not script.delay:
            return script.body

        def answer():
            self._pending.remove(call)
            if not request._disconnected:
                request.write(script.body)
                request.finish()

        call = reactor.callLater(script.delay, answer)
        self._pending.append(call)
        return NOT_DONE_YET

    def cancel_pending(self):
        for call in self._pending:
            call.cancel()
        self._pending.clear()


class StreamCollector(Protocol):
    def __init__(self):
        self.chunks = []
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.chunks.append(data)

    def connectionLost(self, reason):
        self.done.callback(None)

    def events(self):
        """(name, data) of every complete SSE event so far (a big event may
        still be arriving: what follows the last blank line is not parsed)."""
        out, name = [], None
        received = b"".join(self.chunks)
        complete = received[:received.rfind(b"\n\n") + 1]
        for line in complete.decode().split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name is not None:
                out.append((name, json.loads(line[6:])["data"]))
                name = None
        return out


class HookCloud:
    """A loopback cloud with alice (owning CORE) and bob, plus a receiver."""

    def __init__(self, store=None, **settings):
        settings.setdefault("webhook_allow", ("loopback",))
        self.settings = Settings(**settings)
        self.cloud = loopback_cloud(self.settings, store=store)
        self.store = self.cloud.store
        self.receiver = Receiver()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.devices = []
        self.streams = []

    async def start(self, with_users=True):
        if with_users:
            for name, token in TOKENS.items():
                await self.store.add_user(User(name, "x"))
                await self.store.add_token(AccessToken(token, name, "spark", 0.0))
            await self.store.put_device(DeviceRecord(
                CORE, owner="alice", name="kitchen", public_key=public_key_der(DEVICE_KEYS[0])))
        await self.cloud.start()
        self.device_port, self.api_port = await listen(self.cloud)
        self.target_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(self.receiver))
        self.base = f"http://127.0.0.1:{self.api_port.getHost().port}"
        self.target = f"http://127.0.0.1:{self.target_port.getHost().port}"
        return self

    async def api(self, method, path, user="alice", **kwargs):
        response = await treq.request(
            method, self.base + path, headers={"Authorization": f"Bearer {TOKENS[user]}"},
            pool=self.pool, **kwargs)
        return response.code, await response.json()

    async def create(self, user="alice", **definition):
        code, body = await self.api("POST", "/v1/webhooks", user, json=definition)
        assert code == 200, body
        return body["id"]

    async def stream(self, path="/v1/devices/events", user="alice"):
        response = await treq.get(self.base + path,
                                  headers={"Authorization": f"Bearer {TOKENS[user]}"},
                                  pool=self.pool, unbuffered=True)
        collector = StreamCollector()
        response.deliverBody(collector)
        self.streams.append(collector)
        await until(lambda: collector.chunks, what="stream open")
        return collector

    async def device(self):
        device = VirtualDevice(CORE, DEVICE_KEYS[0], SERVER_PUBLIC, platform="core")
        await connect_device(reactor, "127.0.0.1", self.device_port.getHost().port, device, 10)
        self.devices.append(device)
        await until(lambda: self.cloud.registry.get(CORE) is not None, what="device online")
        return device

    async def stop(self):
        for device in self.devices:
            device.disconnect()
        await defer.DeferredList([d.closed for d in self.devices])
        self.receiver.cancel_pending()
        await self.target_port.stopListening()
        await shut_down(self.cloud, self.device_port, self.api_port)
        await defer.DeferredList([s.done for s in self.streams])
        await self.pool.closeCachedConnections()
        # Connections close a moment after their last response (both ends): let them go.
        await until(lambda: not [s for s in reactor.getReaders() + reactor.getWriters()
                                 if isinstance(s, (tcp.Client, tcp.Server))],
                    what="connections closed")
