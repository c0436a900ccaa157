"""Replay datagrams recorded from Device OS's own Linux virtual device: same replies, byte for byte.

The transcripts in udp_transcripts/ were recorded on a development machine:
the Device OS v6.2.0 virtual device (gcc platform, Particle's mbedTLS fork),
holding a P-256 key registered here and the server-key block of
``key("server")`` for 127.0.0.1:5684, against the UDP device port
(:func:`build_gen3_protocol`, MemoryStore, crypto run inline) with its
randomness fixed.  Every stimulus was recorded with the clock reading it
saw: a datagram, a timer firing (``timer``), the housekeeping tick
(``housekeep``), a datagram that arrived while the server was down
(``lost``: delivered to nothing), or a server restart (``restart``: a new
port on the same store, as after a crash).  A replay feeds the same stimuli at the
same readings and compares every datagram the port sends, and what the
stand-in CoAP session made of the device's messages.
"""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.backends.openssl.backend import backend
from dtls_harness import FixedRandom, key
from twisted.internet.task import Clock
from udp_harness import FakeUdpTransport, InlineExecutor

from twisted_spark.config import Settings
from twisted_spark.events.bus import EventBus
from twisted_spark.models import DeviceRecord
from twisted_spark.registry import DeviceRegistry
from twisted_spark.store import MemoryStore
from twisted_spark.udp.port import build_gen3_protocol
from twisted_spark.udp.sessions import Gen3SessionFactory

TRANSCRIPTS = sorted((Path(__file__).parent / "udp_transcripts").glob("vdev-*.json"))

pytestmark = pytest.mark.skipif(
    not backend.ecdsa_deterministic_supported(),
    reason="the recorded ServerKeyExchange signatures are RFC 6979 ones",
)


class Replay:
    sessions = None  # the CoAP session factory: the stand-in probe unless a subclass says

    def __init__(self, transcript):
        self.transcript = transcript
        self.clock = Clock()
        self.store = MemoryStore()
        device_id = transcript["device_id"]
        self.store._devices[device_id] = DeviceRecord(
            device_id=device_id, public_key=bytes.fromhex(transcript["device_public_key"])
        )
        self.ports = []
        self.start(transcript["rng_label"])

    def start(self, rng_label):
        """A port as the server builds it: after a restart only the store is left."""
        self.protocol = build_gen3_protocol(
            key(self.transcript["server_key_label"]),
            self.store,
            clock=self.clock,
            executor=InlineExecutor(),
            rng=FixedRandom(rng_label),
            sessions=self.sessions,
        )
        self.transport = FakeUdpTransport()
        self.protocol.makeConnection(self.transport)
        self.ports.append(self.protocol)

    def step(self, step):
        self.clock.rightNow = step["t"]
        self.transport.sent = []
        if step.get("lost"):
            pass  # the server was down: the datagram reached nothing
        elif "data" in step:
            self.protocol.datagramReceived(bytes.fromhex(step["data"]), tuple(step["from"]))
        elif step.get("timer"):
            self.protocol._fire()
        elif step.get("housekeep"):
            self.protocol._housekeep()
        elif "restart" in step:
            self.protocol.stopProtocol()
            self.start(step["restart"])
        return [{"to": list(address), "data": data.hex()} for address, data in self.transport.sent]

    def history(self):
        return [
            line
            for port in self.ports
            for session in port.sessions.sessions.values()
            for line in session.history
        ]


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_port_replies_to_the_device_os_virtual_device_byte_for_byte(path):
    transcript = json.loads(path.read_text())
    replay = Replay(transcript)
    for index, step in enumerate(transcript["steps"]):
        assert replay.step(step) == step["out"], f"step {index} at t={step['t']}"
    assert replay.history() == transcript["probe_history"]


def test_transcripts_cover_the_whole_start_of_a_session():
    histories = [json.loads(p.read_text())["probe_history"] for p in TRANSCRIPTS]
    seen = {line for history in histories for line in history}
    for expected in ("CON POST h", "CON GET t", "CON GET e/particle", "CON EMPTY"):
        assert expected in seen
    assert any(line.startswith("describe 1 complete") for line in seen)  # protobuf
    assert any(line.startswith("describe 2 complete") for line in seen)  # JSON


def test_transcripts_include_block_wise_describe_and_a_resume_after_a_restart():
    transcripts = {p.stem: json.loads(p.read_text()) for p in TRANSCRIPTS}
    blockwise = transcripts["vdev-blockwise-describe"]["probe_history"]
    assert blockwise.count("CON POST d") == 3  # two blocks of the system part, one application
    assert "describe 1 complete (1904 bytes)" in blockwise
    steps = transcripts["vdev-restart-resume"]["steps"]
    restart = next(i for i, step in enumerate(steps) if "restart" in step)
    assert any(step.get("lost") for step in steps[:restart])  # the device noticed the outage
    resumed = steps[restart + 1]
    assert bytes.fromhex(resumed["data"])[0] == 253 and resumed["out"]  # answered at once
    assert not any(bytes.fromhex(step.get("data", "00"))[0] == 22 for step in steps[restart:])


class RealSessionReplay(Replay):
    """The same stimuli into the port with the real Gen3 session, registry and bus behind it.

    The server's replies then differ where the stand-in only acknowledged
    (a time request is answered with the time): the device's recorded
    datagrams stay valid (its own records and sequence numbers), so the
    replay checks what the real session made of a real device's messages.
    """

    def __init__(self, transcript):
        self.clock = Clock()
        self.bus = EventBus()
        self.events = []
        self.bus.subscribe("", self.events.append)
        self.store = None
        self.registry = None
        self.online = []
        super().__init__(transcript)

    def start(self, rng_label):
        self.registry = DeviceRegistry(self.clock, bus=self.bus, store=self.store)
        self.sessions = Gen3SessionFactory(self.store, self.registry, self.bus, Settings(),
                                           clock=self.clock)
        super().start(rng_label)

    def step(self, step):
        out = super().step(step)
        session = self.registry.local(self.transcript["device_id"])
        if session is not None and session not in self.online:
            self.online.append(session)
        return out


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_the_real_session_serves_the_device_os_virtual_device(path):
    transcript = json.loads(path.read_text())
    device_id = transcript["device_id"]
    replay = RealSessionReplay(transcript)
    replay.store._devices[device_id] = replace(replay.store._devices[device_id], owner="alice")
    for step in transcript["steps"]:
        replay.step(step)
    first = replay.online[0]
    assert first.platform_id == first.hello.platform_id and first.hello.system_version == 6200
    assert first.system_describe is not None and first.system_describe.modules
    assert first.subscriptions == [("particle", True, None), ("spark", True, None)]
    names = [event.name for event in replay.events if event.coreid == device_id]
    assert "particle/device/updates/enabled" in names and "vdev/hello" in names
    assert all(event.owner == "alice" for event in replay.events if event.coreid == device_id)
    record = replay.store._devices[device_id]
    assert (record.functions, record.variables) == ((), {})  # its describe: {"f":[],"v":{}}
    if "restart" in path.stem:
        last = replay.online[-1]
        assert last is not first and last.transport.channel.resumed
        # it skipped its Hello on resuming: the one it started with is kept with the session
        assert last.hello == first.hello and last.transport.channel.max_message_size == 1152
        assert last.subscriptions == first.subscriptions  # kept with the persisted session
        assert last.connected and replay.registry.local(device_id) is last
