"""A real ``python -m twisted_spark serve --database postgresql://...`` process.

On loopback, with its own database: the administration command creates a
user in PostgreSQL, a virtual device connects over TCP, a client logs in,
lists, renames and calls it; the server is stopped and started again and
everything is still there.  PostgreSQL then refuses connections for a
while: the API answers 503 (never 500) and serves again once it is back,
without a restart.  Values PostgreSQL cannot store are 400s.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import psycopg
import pytest_twisted
import treq
from conftest import PROJECT_ROOT
from Crypto.PublicKey import RSA
from loopback import until
from pg import terminate_connections
from twisted.internet import defer, protocol, task, utils
from twisted.internet import reactor as global_reactor

from twisted_spark.crypto.keys import public_key_der
from twisted_spark.models import DeviceRecord
from twisted_spark.sim.device import VirtualDevice, connect_device
from twisted_spark.store.postgres import PostgresStore

KEYS = Path(__file__).parent / "keys"
DEVICE_KEY = RSA.import_key((KEYS / "device-1.pem").read_bytes())
SERVER_PUBLIC = RSA.import_key((KEYS / "server.pem").read_bytes()).public_key()
CORE = "53ff73065067544816300187"
PASSWORD = "loopback password"
READY = re.compile(rb"database (\S+); API on \S+ \(127\.0\.0\.1:(\d+)\); "
                   rb"devices on \S+ \(127\.0\.0\.1:(\d+)\)")


class Server(protocol.ProcessProtocol):
    """One server process; ``output`` is everything it logged."""

    def __init__(self, reactor, data_dir, url):
        self.output = b""
        self.ended = defer.Deferred()
        argv = [sys.executable, "-m", "twisted_spark", "serve", "--data-dir", str(data_dir),
                "--database", url, "--api", "tcp:0:interface=127.0.0.1",
                "--device", "tcp:0:interface=127.0.0.1", "--udp-device", "off"]
        env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
        self.process = reactor.spawnProcess(self, sys.executable, argv, env=env)

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)

    async def ready(self):
        match = await until(lambda: READY.search(self.output) or self.ended.called,
                            timeout=60, step=0.05, what="the startup line")
        assert match is not True, self.output.decode(errors="replace")
        self.api = f"http://127.0.0.1:{int(match.group(2))}"
        self.device_port = int(match.group(3))
        return match.group(1).decode()

    async def stop(self):
        if not self.ended.called:
            self.process.signalProcess(signal.SIGTERM)
        await self.ended
        assert b"Traceback" not in self.output, self.output.decode(errors="replace")

    async def call(self, method, path, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await treq.request(method, self.api + path, headers=headers,
                                      persistent=False, **kwargs)
        return response.code, await response.json(), response.headers


async def login(server, **extra):
    return await server.call("POST", "/oauth/token", auth=("spark", "spark"), data={
        "grant_type": "password", "username": "alice", "password": PASSWORD, **extra})


async def add_user_with_the_cli(reactor, tmp_path, data_dir, url):
    (tmp_path / "password").write_text(PASSWORD + "\n")
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, ["-m", "twisted_spark", "users", "add", "alice", "--password-file",
                         str(tmp_path / "password"), "--data-dir", str(data_dir),
                         "--database", url],
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)), reactor=reactor)
    assert code == 0, (out, err)


@pytest_twisted.ensureDeferred
async def test_a_server_on_postgresql_keeps_state_across_restarts(
        reactor, tmp_path, data_dir, postgres_url):
    secret_url = postgres_url.replace("postgres@", "postgres:not-needed@")  # trust auth
    await add_user_with_the_cli(reactor, tmp_path, data_dir, secret_url)
    store = await PostgresStore.open(postgres_url, reactor)
    await store.put_device(
        DeviceRecord(CORE, owner="alice", public_key=public_key_der(DEVICE_KEY)))
    await store.close()

    server = Server(reactor, data_dir, secret_url)
    device = None
    try:
        logged_url = await server.ready()
        assert "not-needed" not in server.output.decode() and ":***@" in logged_url
        status, body, _ = await login(server)
        assert status == 200
        token = body["access_token"]
        device = VirtualDevice(CORE, DEVICE_KEY, SERVER_PUBLIC)
        await connect_device(reactor, "127.0.0.1", server.device_port, device, 10)

        async def connected():
            status, devices, _ = await server.call("GET", "/v1/devices", token)
            return status == 200 and devices and devices[0]["connected"]

        await until_async(connected)
        status, body, _ = await server.call("PUT", f"/v1/devices/{CORE}", token,
                                            data={"name": "kettle"})
        assert (status, body["name"]) == (200, "kettle")
        status, body, _ = await server.call("POST", "/v1/devices/kettle/brew", token,
                                            data={"args": "four"})
        assert (status, body["return_value"]) == (200, 4)

        # Values PostgreSQL cannot hold are the client's mistake: 400, not 500.
        status, body, _ = await login(server, client_id="cli\x00ent")
        assert status == 400 and body["error"] == "invalid_request"
        status, body, _ = await server.call("GET", "/v1/devices/ket%00tle", token)
        assert status == 400 and "NUL" in body["error_description"]

        # PostgreSQL refuses connections: 503 with the error body, then it heals.
        await outage(reactor, server, postgres_url, token)
        device.disconnect()
        await device.closed
        device = None
        await server.stop()

        again = Server(reactor, data_dir, postgres_url)
        server = again
        await again.ready()
        status, devices, _ = await again.call("GET", "/v1/devices", token)  # same token
        assert status == 200
        assert [(d["id"], d["name"], d["connected"]) for d in devices] == [
            (CORE, "kettle", False)]
    finally:
        if device is not None:
            device.disconnect()
        await server.stop()


async def outage(reactor, server, url, token):
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            assert terminate_connections(url) >= 1
            status, body, headers = await server.call("GET", "/v1/devices", token)
            assert status == 503, body
            assert body["ok"] is False and body["error"] == "service_unavailable"
            assert body["error_description"]
            assert headers.getRawHeaders(b"retry-after") == [b"5"]
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    status, _, _ = await server.call("GET", "/v1/devices", token)
    assert status == 200
    assert b"is unavailable" in server.output and b"reachable again" in server.output


async def until_async(check, timeout=30.0):
    """Poll the coroutine function ``check`` until it returns something true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{check.__name__} not reached within {timeout} s"
        await task.deferLater(global_reactor, 0.05, lambda: None)
