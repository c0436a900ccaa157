"""A real ``python -m twisted_spark`` process for tests: serve, run a command, collect output."""

from __future__ import annotations

import os
import re
import signal
import sys

from conftest import PROJECT_ROOT
from loopback import until
from twisted.internet import defer, protocol

READY = re.compile(rb"API on \S+ \(127\.0\.0\.1:(\d+)\); devices on \S+ \(127\.0\.0\.1:(\d+)\)")


class Output(protocol.ProcessProtocol):
    """Collects stdout and stderr; ``ended`` fires with the exit reason's value."""

    def __init__(self):
        self.data = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.data += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)

    def text(self) -> str:
        return self.data.decode(errors="replace")


def spawn(reactor, *argv, cwd=None):
    """Start ``python -m twisted_spark ARGV...``; ``(process, output)``."""
    output = Output()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    command = [sys.executable, "-m", "twisted_spark", *argv]
    process = reactor.spawnProcess(output, sys.executable, command, env=env,
                                   path=str(cwd or PROJECT_ROOT))
    return process, output


async def run(reactor, *argv, timeout=120.0):
    """Run a command to its end; ``(exit code, output text)``."""
    _process, output = spawn(reactor, *argv)
    reason = await output.ended.addTimeout(timeout, reactor)
    return reason.exitCode, output.text()


class Server:
    """``python -m twisted_spark serve`` on ephemeral loopback ports."""

    def __init__(self, reactor, data_dir, *options):
        self.reactor = reactor
        self.argv = ["serve", "--data-dir", str(data_dir),
                     "--api", "tcp:0:interface=127.0.0.1",
                     "--device", "tcp:0:interface=127.0.0.1", "--udp-device", "off", *options]
        self.process = None
        self.output = Output()
        self.api_port = self.device_port = None
        self.terminated = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def start(self):
        self.process, self.output = spawn(self.reactor, *self.argv)
        match = await until(lambda: READY.search(self.output.data) or self.output.ended.called,
                            timeout=60, step=0.05, what="the startup line")
        if match is True:
            raise AssertionError("the server ended:\n" + self.output.text())
        self.api_port, self.device_port = int(match.group(1)), int(match.group(2))
        return self

    def terminate(self) -> None:
        """SIGTERM, once (a second one while stopping makes Twisted log a traceback)."""
        if not self.output.ended.called and not self.terminated:
            self.terminated = True
            self.process.signalProcess(signal.SIGTERM)

    async def stop(self):
        """SIGTERM (unless sent already), then the exit reason's value."""
        self.terminate()
        return await self.output.ended.addTimeout(90, self.reactor)
