# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The client side of ``fuzz/e2e.py``: fuzzing clients, health checks, memory figures.

Run by ``fuzz/e2e.py`` in its own process (it needs a reactor of its own)
with one JSON argument naming the server's ports and pid; writes
``report.json`` into the data directory.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.internet.task import deferLater

from fuzz.e2e import GEN3, PHOTONS, TOKEN, seeds
from fuzz.harness import FixedRandom, ec_key, renumber, sequenced, test_keys
from fuzz.mutate import Mutator
from fuzz.targets.udp_session import hello as gen3_hello
from twisted_spark.coap.codec import CoapError, decode
from twisted_spark.crypto.ec_keys import load_server_ec_private_key
from twisted_spark.dtls import ApplicationData, ClientConfig, ClientHandshake
from twisted_spark.dtls.errors import StateError
from twisted_spark.sim.connect import connect_device
from twisted_spark.sim.device import VirtualDevice

STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def sleep(seconds: float) -> defer.Deferred:
    return deferLater(reactor, seconds, lambda: None)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- HTTP ------------------------------------------------------------------------------------


class _Exchange(Protocol):
    """Write one request, collect everything until the server closes or time is up."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = bytearray()
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        if len(self.data) < 1 << 20:
            self.data += data

    def connectionLost(self, reason=None) -> None:
        if not self.done.called:
            self.done.callback(bytes(self.data))


async def exchange(port: int, request: bytes, wait: float = 2.0) -> bytes:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    protocol = _Exchange(request)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), protocol)
    timer = reactor.callLater(wait, protocol.transport.abortConnection)
    data = await protocol.done
    if timer.active():
        timer.cancel()
    return data


async def http_client(options, mutator: Mutator, deadline: float, stats: dict) -> None:
    while time.monotonic() < deadline:
        request = mutator.mutated() if mutator.random.random() < 0.9 else mutator.valid()
        try:
            answer = await exchange(options["api"], request, wait=0.5)
        except Exception:
            stats["connect_failures"] += 1
            await sleep(0.05)
            continue
        stats["requests"] += 1
        for status in STATUS.findall(answer):
            stats["statuses"][status.decode()] = stats["statuses"].get(status.decode(), 0) + 1
            if status.startswith(b"5") and status != b"503":
                stats["server_errors"] += 1
                if len(stats["examples"]) < 3:
                    stats["examples"].append({"request": request[:300].hex(),
                                              "answer": answer[:300].decode("latin-1")})


def closing(request: bytes) -> bytes:
    """The request with ``Connection: close``, so the answer ends with the connection."""
    line, _, rest = request.partition(b"\r\n")
    return line + b"\r\nConnection: close\r\n" + rest


# -- TCP devices ------------------------------------------------------------------------------


async def tcp_client(index, options, mutator: Mutator, deadline: float, stats: dict) -> None:
    server_key, device_keys = test_keys()
    while time.monotonic() < deadline:
        device = VirtualDevice(PHOTONS[index % 3], device_keys[index % 3],
                               server_key.public_key(), platform="photon")
        try:
            await connect_device(reactor, "127.0.0.1", options["device"], device, timeout=10)
        except Exception:
            stats["connect_failures"] += 1
            await sleep(0.1)
            continue
        stats["sessions"] += 1
        for _ in range(mutator.random.randint(1, 40)):
            if device.closed.called:
                break
            if mutator.random.random() < 0.08:
                frame = device._channel.encrypt_frame(mutator.valid())
                device.transport.write(Mutator([frame], mutator.random.randrange(1 << 30))
                                       .mutated())
                stats["raw_writes"] += 1
            else:
                structured = mutator.random.random() < 0.7
                message = mutator.coap_mutated() if structured else mutator.mutated()
                if sequenced(message) and mutator.random.random() < 0.95:
                    message = renumber(message, device._next_mid())  # as a device counts
                device.send(message)
                stats["messages"] += 1
            await sleep(0.002)
        await sleep(0.02)
        if device.closed.called:
            stats["closed_by_server"] += 1
        else:
            device.disconnect()
        await device.closed


# -- UDP devices ------------------------------------------------------------------------------


class Gen3Client(DatagramProtocol):
    """One Gen3 device over a real UDP socket (the sans-IO DTLS client)."""

    def __init__(self, device_id: str, server, server_public, rng: str, spoil=None) -> None:
        self.device_id = device_id
        self.server = server
        self.config = ClientConfig(ec_key(device_id), server_public, rng=FixedRandom(rng))
        self.spoil = spoil  # a Mutator: spoil handshake datagrams now and then
        self.side = None
        self.ready: defer.Deferred = defer.Deferred()
        self.answers: list[bytes] = []

    def start(self) -> None:
        self.side = ClientHandshake(self.config, self.server, reactor.seconds())
        self.send(self.side.start(reactor.seconds()))

    def send(self, out) -> None:
        now = reactor.seconds()
        pending = list(out.work)
        datagrams, events = list(out.datagrams), list(out.events)
        while pending:
            work = pending.pop(0)
            more = self.side.work_done(work, work.run(), now)
            datagrams += more.datagrams
            events += more.events
            pending += more.work
        for _, event in events:
            if isinstance(event, ApplicationData):
                self.answers.append(event.data)
        for _, datagram in datagrams:
            if (self.spoil is not None and isinstance(self.side, ClientHandshake)
                    and self.spoil.random.random() < 0.5):
                datagram = Mutator([datagram], self.spoil.random.randrange(1 << 30)).mutated()
            self.transport.write(datagram, self.server)

    def datagramReceived(self, data, addr) -> None:
        try:
            self.send(self.side.datagram_received(data, addr, reactor.seconds()))
        except StateError:
            return
        if isinstance(self.side, ClientHandshake) and self.side.connection is not None:
            self.side = self.side.connection
            self.ready.callback(self)

    def request(self, coap: bytes) -> None:
        self.send(self.side.send(coap, reactor.seconds()))


async def gen3_session(options, device_id, rng, spoil=None, timeout=3.0):
    client = Gen3Client(device_id, tuple(options["udp"]), options["server_public"], rng, spoil)
    port = reactor.listenUDP(0, client, interface="127.0.0.1")
    client.start()
    try:
        await client.ready.addTimeout(timeout, reactor)
    except defer.TimeoutError:
        await port.stopListening()
        return None, None
    return client, port


async def udp_client(index, options, mutator: Mutator, deadline: float, stats: dict) -> None:
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        spoil = mutator if mutator.random.random() < 0.2 else None
        client, port = await gen3_session(options, GEN3[index % 2], f"e2e/{index}/{rounds}",
                                          spoil=spoil, timeout=1.0 if spoil else 5.0)
        if client is None:
            stats["handshakes_failed" if spoil is None else "spoiled_handshakes_refused"] += 1
            continue
        stats["sessions"] += 1
        client.request(gen3_hello(1))
        try:
            for _ in range(mutator.random.randint(1, 40)):
                if mutator.random.random() < 0.08:
                    raw = Mutator([bytes(8)], 0)
                    out = client.side.send(mutator.valid()[:900], reactor.seconds())
                    for _, datagram in out.datagrams:
                        raw.seeds = [datagram]
                        client.transport.write(raw.mutated(), client.server)
                    stats["raw_datagrams"] += 1
                else:
                    structured = mutator.random.random() < 0.7
                    message = mutator.coap_mutated() if structured else mutator.mutated()
                    client.request(message[:900])
                    stats["messages"] += 1
                await sleep(0.002)
            client.send(client.side.close(reactor.seconds()))
        except StateError:
            stats["closed_by_server"] += 1
        await port.stopListening()


# -- health ------------------------------------------------------------------------------------


async def health(options) -> dict:
    """A normal Photon answers a function call from a normal client; a Gen3 device is admitted."""
    result: dict = {}
    server_key, device_keys = test_keys()
    device = VirtualDevice(PHOTONS[0], device_keys[0], server_key.public_key(), platform="photon")
    try:
        await connect_device(reactor, "127.0.0.1", options["device"], device, timeout=10)
        await sleep(0.3)
        body = b"arg=hello"
        answer = await exchange(options["api"], (
            f"POST /v1/devices/{PHOTONS[0]}/brew HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body, wait=10)
        result["tcp_function_call"] = b" 200 " in answer[:20] and b'"return_value":5' in answer
    except Exception as error:
        result["tcp_function_call"] = False
        result["tcp_error"] = repr(error)
    finally:
        device.disconnect()
    client, port = await gen3_session(options, GEN3[0], f"health/{time.time()}")
    if client is None:
        result["gen3_hello"] = False
    else:
        client.request(gen3_hello(7))
        for _ in range(100):
            if client.answers:
                break
            await sleep(0.05)
        try:
            result["gen3_hello"] = any(decode(a).message_id == 7 for a in client.answers)
        except CoapError:
            result["gen3_hello"] = False
        client.send(client.side.close(reactor.seconds()))
        await port.stopListening()
    result["healthy"] = bool(result["tcp_function_call"] and result["gen3_hello"])
    return result


async def heap_snapshot(options) -> None:
    """With ``tracemalloc``, have the server write its next heap snapshot and wait for it."""
    if not options.get("tracemalloc"):
        return
    data_dir = Path(options["data_dir"])
    n = len(list(data_dir.glob("heap-*.done")))
    os.kill(options["pid"], signal.SIGUSR2)
    for _ in range(1200):
        if (data_dir / f"heap-{n}.done").exists():
            return
        await sleep(0.05)
    raise RuntimeError(f"the server wrote no heap snapshot {n} within 60 s")


async def run(options) -> None:
    data_dir = Path(options["data_dir"])
    options["server_public"] = load_server_ec_private_key(
        (data_dir / "server_key_ec.pem").read_bytes()).public_key()
    pid = options["pid"]
    report: dict = {"before": await health(options)}
    await health(options)
    await sleep(2)
    report["rss_baseline_kib"] = rss_kib(pid)
    await heap_snapshot(options)
    peak = [0]

    def sample():
        peak[0] = max(peak[0], rss_kib(pid))

    sampler = task.LoopingCall(sample)
    sampler.start(1.0)
    pools = {"tcp": seeds("tcp_session", True) + seeds("coap_codec", False),
             "udp": seeds("udp_session", True) + seeds("coap_codec", False),
             "http": [closing(request) for request in seeds("http_api", False)]}
    clients = {"tcp": tcp_client, "udp": udp_client}
    report["ports"] = {}
    for port in options["ports"]:
        stats: dict = {"seconds": options["duration"], "connect_failures": 0, "sessions": 0,
                       "messages": 0, "raw_writes": 0, "raw_datagrams": 0,
                       "closed_by_server": 0, "handshakes_failed": 0,
                       "spoiled_handshakes_refused": 0, "requests": 0, "statuses": {},
                       "server_errors": 0, "examples": []}
        deadline = time.monotonic() + options["duration"]
        work = []
        for index in range(options["clients"]):
            mutator = Mutator(pools[port], seed=options["seed"] * 1000 + index)
            if port == "http":
                work.append(http_client(options, mutator, deadline, stats))
            else:
                work.append(clients[port](index, options, mutator, deadline, stats))
        await defer.gatherResults([defer.ensureDeferred(w) for w in work])
        report["ports"][port] = {k: v for k, v in stats.items() if v or k == "server_errors"}
    sampler.stop()
    await sleep(5)
    report["after"] = await health(options)
    await sleep(5)
    report["rss_peak_kib"] = peak[0]
    report["rss_after_kib"] = rss_kib(pid)
    await heap_snapshot(options)
    report["healthy"] = report["before"]["healthy"] and report["after"]["healthy"]
    (data_dir / "report.json").write_text(json.dumps(report))


def main(argv: list[str]) -> None:
    options = json.loads(argv[0])
    random.seed(options["seed"])
    task.react(lambda _: defer.ensureDeferred(run(options)))


if __name__ == "__main__":
    main(sys.argv[1:])
