"""Graceful drain: the steps in order, the timeout, and a real server process on SIGTERM."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pytest
import pytest_twisted
import treq
from Crypto.PublicKey import RSA
from loopback import until
from server_process import Server
from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.web.client import HTTPConnectionPool

from twisted_spark import passwords
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.drain import SSE_RETRY, Drain
from twisted_spark.health import NotReady
from twisted_spark.models import DeviceRecord, User
from twisted_spark.sim.device import VirtualDevice, connect_device
from twisted_spark.store.sqlite import SQLiteStore

KEYS = Path(__file__).parent / "keys"
DEVICE_KEY = RSA.import_key((KEYS / "device-1.pem").read_bytes())
SERVER_PUBLIC = RSA.import_key((KEYS / "server.pem").read_bytes()).public_key()
CORE = "53ff73065067544816300187"
PASSWORD = "drain password"


class _Parts:
    """What :class:`Drain` looks at, as plain values the test changes."""

    def __init__(self):
        self.api = type("Api", (), {"in_flight": 0, "draining": False})()
        self.firmware = type("Firmware", (), {"active": {}})()
        self.closed_with = []
        self.streams = self

    def __len__(self):
        return 1 if not self.closed_with else 0

    def close_all(self, reason, retry=None):
        self.closed_with.append((reason, retry))
        return 1


def test_drain_waits_for_calls_and_flashes_then_reports_nothing_left():
    clock, cloud = Clock(), _Parts()
    cloud.api.in_flight = 1 + 2  # the event stream, and two calls
    cloud.firmware.active = {"abc": object()}
    drain = Drain(cloud, clock, timeout=30.0, poll=0.1)
    assert drain.check() == "not draining"
    stopped = []
    d = defer.ensureDeferred(drain.run(lambda: stopped.append(True)))
    assert stopped == [True] and cloud.api.draining
    with pytest.raises(NotReady):
        drain.check()
    assert cloud.closed_with == [("server draining", SSE_RETRY)]
    cloud.api.in_flight = 2  # the stream's request finished
    assert drain.in_flight() == {"API requests": 2, "firmware transfers": 1}
    clock.advance(5)
    assert not d.called
    cloud.api.in_flight = 0
    clock.advance(0.1)
    assert not d.called  # the flash is still running
    cloud.firmware.active = {}
    clock.advance(0.1)
    assert d.result == {}


def test_drain_gives_up_at_the_timeout_and_says_what_was_left():
    clock, cloud = Clock(), _Parts()
    cloud.api.in_flight = 5
    drain = Drain(cloud, clock, timeout=2.0, poll=0.5)
    d = defer.ensureDeferred(drain.run(lambda: None))
    clock.pump([0.5] * 3)
    assert not d.called
    clock.advance(0.5)
    assert d.result == {"API requests": 5}


class HeldCalls(VirtualDevice):
    """A virtual device that answers function calls, and the end of a firmware
    update, only when the test says so."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = []
        self.held_done = []

    def _function(self, msg):
        self.held.append(msg)

    def _update_done(self, msg):
        self.held_done.append(msg)

    def answer_held(self):
        held, self.held = self.held, []
        for msg in held:
            super()._function(msg)
        done, self.held_done = self.held_done, []
        for msg in done:
            super()._update_done(msg)


async def _prepared(reactor, data_dir):
    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    try:
        await store.add_user(User("alice", passwords.hash_password(PASSWORD), is_admin=True))
        await store.put_device(DeviceRecord(CORE, owner="alice",
                                            public_key=public_key_der(DEVICE_KEY)))
    finally:
        await store.close()


async def _refused(reactor, port) -> bool:
    try:
        connection = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2), Protocol())
    except error.ConnectError:
        return True
    connection.transport.loseConnection()
    return False


@pytest_twisted.ensureDeferred
async def test_sigterm_drains_a_real_server_a_call_and_a_flash_in_flight_complete(
        reactor, data_dir, monkeypatch):
    """SIGTERM while function calls and a firmware update wait for their
    device: the server stops listening, ends event streams with a ``retry:``
    hint, answers a new request on an open connection 503, answers every
    call and the flash when the device does, then closes the device's
    connection and exits."""
    monkeypatch.setattr(passwords, "ITERATIONS", 1000)  # the hash carries its count
    await _prepared(reactor, data_dir)
    server = await Server(reactor, data_dir, "--drain-timeout", "60").start()
    device = None
    try:
        response = await treq.post(server.url + "/oauth/token", auth=("particle", "particle"),
                                   data={"grant_type": "password", "username": "alice",
                                         "password": PASSWORD}, persistent=False)
        token = (await response.json())["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        device = HeldCalls(CORE, DEVICE_KEY, SERVER_PUBLIC, platform="core")
        await connect_device(reactor, "127.0.0.1", server.device_port, device, 20)
        ready = await treq.get(server.url + "/readyz", persistent=False)
        body = await ready.json()
        assert ready.code == 200 and set(body["checks"]) == {"store", "ports", "draining"}

        stream = await treq.get(server.url + "/v1/events", headers=auth, unbuffered=True,
                                persistent=False)
        chunks = []
        stream_done = treq.collect(stream, chunks.append)
        keep_alive = HTTPConnectionPool(reactor, persistent=True)
        keep_alive.maxPersistentPerHost = 1
        warm = await treq.get(server.url + "/healthz", pool=keep_alive)
        assert warm.code == 200 and (await warm.json())["ok"]
        answers = []
        arguments = ["coffee", "tea", "espresso", "mate"]
        calls = []
        for argument in arguments:
            call = treq.post(f"{server.url}/v1/devices/{CORE}/brew", headers=auth,
                             data={"arg": argument}, persistent=False)
            call.addCallback(lambda response: answers.append(response) or response)
            calls.append(call)
        await until(lambda: len(device.held) == len(arguments), timeout=20,
                    what="the calls reaching the device")
        image = bytes(range(256)) * 8
        flash = treq.put(f"{server.url}/v1/devices/{CORE}", headers=auth, persistent=False,
                         data={"file_type": "binary"}, files={"file": ("app.bin",
                                                                  io.BytesIO(image))})
        flash.addCallback(lambda response: answers.append(response) or response)
        await until(lambda: device.held_done, timeout=20, what="the whole image sent")

        server.terminate()
        await until(lambda: b"Draining:" in server.output.data, timeout=20,
                    what="the drain to begin")
        await stream_done.addErrback(lambda _: None)
        assert b"retry: 2000\n\n" in b"".join(chunks)
        assert await _refused(reactor, server.api_port)
        assert await _refused(reactor, server.device_port)
        assert answers == []  # still waiting for the device: the server waits too
        late = await treq.get(server.url + "/healthz", pool=keep_alive)  # an open connection
        assert late.code == 503 and late.headers.getRawHeaders("retry-after") == ["1"]
        assert (await late.json())["error"] == "shutting_down"

        device.answer_held()
        for argument, call in zip(arguments, calls, strict=True):
            answered = await call
            assert answered.code == 200
            assert (await answered.json())["return_value"] == len(argument)
        flashed = await flash
        assert flashed.code == 200
        assert (await flashed.json())["status"] == "Update finished"
        assert device.firmware[: len(image)] == image
        await device.closed  # the server closed the device's session after the drain
        await keep_alive.closeCachedConnections()
    finally:
        if device is not None:
            device.answer_held()
        status = await server.stop()
    text = server.output.text()
    assert "waiting up to 60 s for 5 API requests, 1 firmware transfers" in text, text
    assert "Drained: nothing in flight" in text, text
    assert "Traceback" not in text, text
    assert status.exitCode == 0 or status.signal == signal.SIGTERM, text
