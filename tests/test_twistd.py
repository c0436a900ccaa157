"""A real ``twistd -n spark`` process: starts, answers on both ports, stops cleanly."""

import os
import signal
import sys
from pathlib import Path

import pytest_twisted
import treq
from conftest import PROJECT_ROOT
from loopback import until
from server_process import READY, Output
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol


class NonceReader(protocol.Protocol):
    def __init__(self):
        self.received = b""
        self.got_nonce = defer.Deferred()

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= 40 and not self.got_nonce.called:
            self.got_nonce.callback(self.received)


def twistd_command():
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


@pytest_twisted.ensureDeferred
async def test_twistd_spark_serves_both_ports_and_stops(reactor, tmp_path, data_dir):
    output = Output()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    argv = twistd_command() + [
        "-n", "--pidfile", str(tmp_path / "twistd.pid"), "--logfile", "-",
        "spark", "--data-dir", str(data_dir),
        "--api", "tcp:0:interface=127.0.0.1", "--device", "tcp:0:interface=127.0.0.1",
        "--udp-device", "127.0.0.1:0",
    ]
    process = reactor.spawnProcess(output, argv[0], argv, env=env, path=str(tmp_path))
    try:
        match = await until(lambda: READY.search(output.data), timeout=60, step=0.05,
                            what="the startup line")
        api_port, device_port = int(match.group(1)), int(match.group(2))
        assert str(data_dir).encode() in output.data
        assert b"fingerprint SHA256:" in output.data

        response = await treq.get(f"http://127.0.0.1:{api_port}/healthz", persistent=False)
        assert response.code == 200
        assert await response.json() == {"ok": True, "devices_online": 0}

        reader = NonceReader()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", device_port)
        await connectProtocol(endpoint, reader)
        nonce = await reader.got_nonce
        assert len(nonce) == 40
        reader.transport.loseConnection()
    finally:
        if output.ended.called is False:
            process.signalProcess(signal.SIGTERM)
    status = await output.ended
    # twistd ends by re-raising the signal it was stopped with, after a clean shutdown.
    assert status.exitCode == 0 or status.signal == signal.SIGTERM, output.data.decode(
        errors="replace")
    assert b"Traceback" not in output.data, output.data.decode(errors="replace")
    assert b"Server Shut Down." in output.data
    assert not (tmp_path / "twistd.pid").exists()
