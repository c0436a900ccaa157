# -*- test-case-name: tests.test_fuzz_corpus -*-
"""End-to-end fuzzing of a running server: mutated sessions on every port, then a health check.

::

    python -m fuzz.e2e --duration 600 --port tcp --port udp --port http [--seed 1]
        [--tracemalloc]

Starts ``python -m twisted_spark serve`` on loopback in another process, on a
fresh data directory (SQLite) with one user, one token, three Photons and
two Gen3 devices registered, then for ``--duration`` seconds per port:

* ``tcp``: virtual Photons (:mod:`twisted_spark.sim`) complete the real RSA
  handshake, then send mutations of valid CoAP messages (the ``tcp_session``
  and ``coap_codec`` corpora) through their AES channel, and now and then
  mutated raw bytes under it (frame lengths, padding); a closed connection
  is counted and the device reconnects;
* ``udp``: Gen3 devices (the sans-IO DTLS client) complete a DTLS handshake
  and their Hello, then send mutated CoAP messages through the record layer,
  now and then mutated records and mutated handshake flights;
* ``http``: connections send mutated real client requests (the
  ``http_api`` corpus) and read the answers; a 5xx other than 503 counts as
  a server error.

Afterwards a normal Photon connects and answers a function call made by a
normal client through the API, a Gen3 device completes a handshake and its
Hello, and the server's RSS is compared with its baseline (measured after
the same normal traffic, before fuzzing); with ``--tracemalloc`` the report
also lists the allocation sites that grew in between.  Prints one JSON report; exits 1
if the server died, logged a traceback, answered a 5xx or failed the
health check.  The server's log is kept in the data directory (``--keep``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz.harness import CORPUS, ROOT, SEPARATOR, test_keys

READY = re.compile(rb"API on \S+ \(127\.0\.0\.1:(\d+)\); devices on \S+ \(127\.0\.0\.1:(\d+)\)")
UDP = re.compile(rb"Gen3 devices on UDP \S+ \(127\.0\.0\.1:(\d+)\)")
TRACEBACK = re.compile(rb"Traceback \(most recent call last\)|Unhandled [Ee]rror|CRITICAL")
TOKEN = "e2" * 20
USER = "e2e@example.com"
PHOTONS = ("1a118ad1c886d54240ce4b17", "2a118ad1c886d54240ce4b17", "3a118ad1c886d54240ce4b17")
GEN3 = ("12ab34cd56ef7890a1b2c3d4", "22ab34cd56ef7890a1b2c3d4")
PAGE = 4096


class Server:
    """The server process, its ports and its log."""

    def __init__(self, data_dir: Path, traced: bool = False) -> None:
        self.data_dir = data_dir
        self.log = data_dir / "server.log"
        entry = ["fuzz.traced_serve", str(data_dir)] if traced else ["twisted_spark"]
        argv = [sys.executable, "-m", *entry, "serve", "--data-dir", str(data_dir),
                "--api", "tcp:0:interface=127.0.0.1", "--device", "tcp:0:interface=127.0.0.1",
                "--udp-device", "127.0.0.1:0", "--no-console"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not ((ready := READY.search(self.log.read_bytes()))
                   and (udp := UDP.search(self.log.read_bytes()))):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"the server did not start; see {self.log}")
            time.sleep(0.05)
        self.api = int(ready.group(1))
        self.device = int(ready.group(2))
        self.udp = ("127.0.0.1", int(udp.group(1)))

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def heap_growth(self, top: int = 10) -> list[str] | None:
        """The allocation sites that grew most between the first and last snapshots."""
        import tracemalloc

        snaps = sorted(self.data_dir.glob("heap-*.snap"), key=lambda p: int(p.stem[5:]))
        if len(snaps) < 2:
            return None
        first, last = (tracemalloc.Snapshot.load(str(p)) for p in (snaps[0], snaps[-1]))
        diff = last.compare_to(first, "lineno")
        total = sum(d.size_diff for d in diff)
        return [f"traced total {total / 1024:+.1f} KiB"] + [
            f"{d.size_diff / 1024:+.1f} KiB {d.count_diff:+d} blocks {d.traceback[0]}"
            for d in diff[:top]
        ]

    def tracebacks(self) -> list[str]:
        text = self.log.read_bytes()
        return [text[m.start():m.start() + 600].decode("utf-8", "replace")
                for m in TRACEBACK.finditer(text)]

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            self.process.wait(30)


def prepare(data_dir: Path) -> None:
    """The data directory: the suite's server key, a user, a token and the devices."""
    from twisted.internet import defer, reactor

    from fuzz.harness import ec_key
    from twisted_spark.crypto.ec_keys import ec_public_key_der
    from twisted_spark.crypto.keys import public_key_der
    from twisted_spark.datadir import load_or_create_server_ec_key, prepare_data_dir
    from twisted_spark.models import AccessToken, DeviceRecord, User
    from twisted_spark.passwords import hash_password
    from twisted_spark.store.sqlite import SQLiteStore

    prepare_data_dir(data_dir)
    key_file = data_dir / "server_key.pem"
    key_file.write_bytes((ROOT / "tests" / "keys" / "server.pem").read_bytes())
    key_file.chmod(0o600)
    load_or_create_server_ec_key(data_dir)
    _, device_keys = test_keys()

    async def register():
        store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
        await store.add_user(User(USER, hash_password("e2e-password")))
        await store.add_token(AccessToken(TOKEN, USER, "e2e", time.time(), None))
        for device_id, key in zip(PHOTONS, device_keys, strict=True):
            await store.put_device(DeviceRecord(device_id, owner=USER,
                                                public_key=public_key_der(key)))
        for device_id in GEN3:
            await store.put_device(DeviceRecord(
                device_id, owner=USER, public_key=ec_public_key_der(ec_key(device_id))))
        await store.close()

    outcome: list = []

    def start():
        d = defer.ensureDeferred(register())
        d.addBoth(outcome.append).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()  # once: this process has no other use for its reactor
    if outcome and hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()


def seeds(target: str, split_messages: bool) -> list[bytes]:
    """The valid messages of a corpus (its seeds, not the crash inputs)."""
    out = []
    for path in sorted((CORPUS / target).glob("seed-*")):
        data = path.read_bytes()
        out.extend(data[1:].split(SEPARATOR) if split_messages else [data])
    return [message for message in out if message]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per port")
    parser.add_argument("--port", action="append", choices=("tcp", "udp", "http"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=3, help="concurrent clients per port")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the server's allocations; report the sites that grew "
                             "between the baseline and the end (slows the server)")
    options = parser.parse_args(argv)
    ports = options.port or ["tcp", "udp", "http"]
    data_dir = Path(tempfile.mkdtemp(prefix="fuzz-e2e-"))
    prepare(data_dir)
    server = Server(data_dir, traced=options.tracemalloc)
    report: dict = {"ports": {}, "data_dir": str(data_dir)}
    try:
        subprocess.run([sys.executable, "-m", "fuzz.e2e_clients", json.dumps({
            "api": server.api, "device": server.device, "udp": server.udp, "pid":
            server.process.pid, "ports": ports, "duration": options.duration,
            "seed": options.seed, "clients": options.clients, "data_dir": str(data_dir),
            "tracemalloc": options.tracemalloc,
        })], cwd=ROOT, check=False, timeout=options.duration * len(ports) + 600)
        report.update(json.loads((data_dir / "report.json").read_text()))
        report["server_alive"] = server.alive()
        report["tracebacks"] = server.tracebacks()[:5]
        if options.tracemalloc:
            report["heap_growth"] = server.heap_growth()
    finally:
        server.stop()
        if not options.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    healthy = (report["server_alive"] and not report["tracebacks"]
               and report.get("healthy") and not any(
                   p.get("server_errors") for p in report["ports"].values()))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
