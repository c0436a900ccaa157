"""Replay Device OS's own virtual device against the real Gen3 session: same replies, byte for byte.

``udp_transcripts/session-*.json`` were recorded on a development machine:
the Device OS 6.2.0 Linux virtual device (gcc platform), running an
application with a function, three variables, a subscription whose handler
publishes back and a periodic publish, against the UDP port with the real
:class:`~twisted_spark.udp.sessions.Gen3SessionFactory`, registry, router
and bus, on an injected clock advanced to the real time before each
stimulus (so timers fired as they do), every randomness fixed (DTLS, the
server's first message id, retransmission jitter).  Stimuli: a datagram,
the clock reaching a time where a timer was due (``tick``), an API call on
the device's session (``api``: its result recorded) and an event published
on the bus (``publish``), a binary given to the flash route's updater
(``flash``: the image ids fixed) and a server restart on the same store
(``restart``: its randomness labelled anew).  The replay feeds the same
stimuli at the same readings and compares every datagram the port sends, the calls' results
and the events the device published.
"""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.backends.openssl.backend import backend
from dtls_harness import FixedRandom, key
from twisted.internet import defer
from twisted.internet.task import Clock
from udp_harness import FakeUdpTransport, InlineExecutor

from twisted_spark.config import Settings
from twisted_spark.events.bus import EventBus
from twisted_spark.events.device_routing import DeviceRouter
from twisted_spark.firmware.updater import FirmwareUpdater
from twisted_spark.models import DeviceRecord, Event, User
from twisted_spark.registry import DeviceRegistry
from twisted_spark.store import MemoryStore
from twisted_spark.udp.port import build_gen3_protocol
from twisted_spark.udp.sessions import Gen3SessionFactory

TRANSCRIPTS = sorted((Path(__file__).parent / "udp_transcripts").glob("session-*.json"))
T0 = 1_800_000_000.0

pytestmark = pytest.mark.skipif(
    not backend.ecdsa_deterministic_supported(),
    reason="the recorded ServerKeyExchange signatures are RFC 6979 ones",
)


class Jitter:
    """Fixed floats in [0, 1) for the retransmission jitter, from a label."""

    def __init__(self, label):
        self.bytes = FixedRandom(label)

    def __call__(self):
        return int.from_bytes(self.bytes(4), "big") / 2**32


class FixedImages:
    """The updater's image store with ids that do not vary between recording and replay."""

    def __init__(self):
        self.images = []

    def put(self, data):
        self.images.append(data)
        return defer.succeed(f"image-{len(self.images)}")


class SessionReplay:
    def __init__(self, transcript):
        self.device_id = transcript["device_id"]
        self.server_key = key(transcript["server_key_label"])
        self.clock = Clock()
        self.clock.rightNow = T0
        self.store = MemoryStore()
        self.store.add_user(User(transcript["owner"], "x"))
        self.store._devices[self.device_id] = DeviceRecord(
            self.device_id, owner=transcript["owner"],
            public_key=bytes.fromhex(transcript["device_public_key"]))
        self.bus = EventBus()
        self.events = []
        self.bus.subscribe("", self.events.append)
        self.results = []
        self.start(transcript["rng_label"])

    def start(self, label):
        """The server's device side as ``build_cloud`` wires it, randomness fixed by ``label``."""
        self.registry = DeviceRegistry(self.clock, bus=self.bus, store=self.store)
        DeviceRouter(self.bus, self.registry)
        self.sessions = Gen3SessionFactory(
            self.store, self.registry, self.bus, Settings(), clock=self.clock,
            random_bytes=FixedRandom(label + "/coap"), rng=Jitter(label + "/jitter"))
        self.protocol = build_gen3_protocol(
            self.server_key, self.store, clock=self.clock,
            executor=InlineExecutor(), rng=FixedRandom(label), sessions=self.sessions)
        self.transport = FakeUdpTransport()
        self.protocol.makeConnection(self.transport)
        self.updater = FirmwareUpdater(Settings(), self.bus, self.registry, clock=self.clock,
                                       reactor=None, images=FixedImages())

    def restart(self, label):
        """The server stops (as ``Cloud.stop`` does) and a new one starts on the same store."""
        self.updater.close()
        self.protocol.stopProtocol()
        self.sessions.close_all("server shutting down")
        self.start(label)

    def step(self, step):
        self.transport.sent = []
        self.clock.advance(step["t"] - self.clock.seconds())
        if "data" in step:
            self.protocol.datagramReceived(bytes.fromhex(step["data"]), tuple(step["from"]))
        elif "api" in step:
            method, *args = step["api"]
            if method == "call_function":
                args[1] = args[1].encode()
            session = self.registry.local(self.device_id)
            outcome = []
            self.results.append(outcome)
            getattr(session, method)(*args).addBoth(lambda r: outcome.append(repr(r)))
        elif "flash" in step:  # PUT /v1/devices/:id with a binary: the flash route's updater
            record = self.store._devices[self.device_id]
            outcome = []
            self.results.append(outcome)
            self.updater.flash(record, bytes.fromhex(step["flash"])).addBoth(
                lambda r: outcome.append(repr(r)))
        elif "restart" in step:
            self.restart(step["restart"])
        elif "publish" in step:
            p = step["publish"]
            self.bus.publish(Event(p["name"], p["data"], 60, self.clock.seconds(), p["coreid"],
                                   False, owner=p["owner"]))
        return [{"to": list(address), "data": data.hex()} for address, data in self.transport.sent]


def load(stem):
    return json.loads((Path(__file__).parent / "udp_transcripts" / f"{stem}.json").read_text())


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_the_real_session_replies_to_the_virtual_device_byte_for_byte(path):
    transcript = json.loads(path.read_text())
    replay = SessionReplay(transcript)
    for index, step in enumerate(transcript["steps"]):
        assert replay.step(step) == step["out"], f"step {index} at t={step['t'] - T0:.3f}"
    assert replay.results == transcript["results"]
    published = [[e.name, e.data] for e in replay.events if e.coreid == replay.device_id]
    assert published == transcript["events"]


def test_the_session_transcripts_cover_calls_variables_and_events_both_ways():
    transcript = load("session-functions-events")
    assert [s["api"][0] for s in transcript["steps"] if "api" in s] == [
        "call_function", "read_variable", "read_variable", "read_variable", "ping", "signal"]
    assert transcript["results"] == [["6"], ["-5"], ["'hi'"], ["1.5"], ["True"], ["True"]]
    assert ["got/order", "42"] in transcript["events"]  # its subscription's handler answered


def test_a_device_without_ota_v3_is_flashed_with_the_classic_transfer_and_comes_back():
    """The Linux build has no OTA v3 (its Hello lacks flag 0x80): fast OTA, then it restarts."""
    transcript = load("session-ota-classic")
    replay = SessionReplay(transcript)
    sessions = []
    for step in transcript["steps"]:
        replay.step(step)
        session = replay.registry.local(replay.device_id)
        if session is not None and session not in sessions:
            sessions.append(session)
    first, second = sessions  # the device restarted into the new module: a new handshake
    assert not first.ota_v3 and first.hello.flags & 0x80 == 0
    summary = replay.updater.last_summary
    assert (summary["mode"], summary["bytes"], summary["chunks"], summary["resent"]) == (
        "fast", 36000, 71, 0)  # past one 64-chunk window: a flow-control ping between
    assert replay.results == [["'image-1'"], ["3"]]  # flashed, then brew("ota") on the new session
    names = [name for name, _ in transcript["events"]]
    assert names.index("spark/flash/status") < names.index("spark/status", 1)
    assert ["spark/flash/status", "success"] in transcript["events"]
    assert second.connected and transcript["events"][-1] == ["vdev/brewed", "ota"]


def test_after_a_restart_the_resumed_session_keeps_the_hello_and_takes_1000_byte_arguments():
    """The device carried on after the restart without a handshake or a Hello: the new
    process kept the Hello's limits with the DTLS session, so the 1000-byte call that
    fit its 1152-byte messages before the restart fits after it."""
    transcript = load("session-restart-resume")
    replay = SessionReplay(transcript)
    sessions = []
    for step in transcript["steps"]:
        replay.step(step)
        session = replay.registry.local(replay.device_id)
        if session is not None and session not in sessions:
            sessions.append(session)
    first, resumed = sessions
    restart = next(i for i, step in enumerate(transcript["steps"]) if "restart" in step)
    after = [bytes.fromhex(s["data"])[0] for s in transcript["steps"][restart:] if "data" in s]
    assert after and 22 not in after  # no handshake record after the restart
    assert resumed.transport.channel.resumed and resumed.hello == first.hello
    assert resumed.transport.channel.max_message_size == 1152
    assert resumed.argument_limit("brew") == 1024 and not resumed.ota_v3
    assert replay.results == [["1000"], ["1000"], ["2"]]  # brew twice (its length), counter
