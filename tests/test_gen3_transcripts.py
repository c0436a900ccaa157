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
on the bus (``publish``).  The replay feeds the same stimuli at the same
readings and compares every datagram the port sends, the calls' results
and the events the device published.
"""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.backends.openssl.backend import backend
from dtls_harness import FixedRandom, key
from twisted.internet.task import Clock
from udp_harness import FakeUdpTransport, InlineExecutor

from twisted_spark.config import Settings
from twisted_spark.events.bus import EventBus
from twisted_spark.events.device_routing import DeviceRouter
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


class SessionReplay:
    def __init__(self, transcript):
        label = transcript["rng_label"]
        self.device_id = transcript["device_id"]
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
        self.registry = DeviceRegistry(self.clock, bus=self.bus, store=self.store)
        DeviceRouter(self.bus, self.registry)
        sessions = Gen3SessionFactory(self.store, self.registry, self.bus, Settings(),
                                      clock=self.clock, random_bytes=FixedRandom(label + "/coap"),
                                      rng=Jitter(label + "/jitter"))
        self.protocol = build_gen3_protocol(
            key(transcript["server_key_label"]), self.store, clock=self.clock,
            executor=InlineExecutor(), rng=FixedRandom(label), sessions=sessions)
        self.transport = FakeUdpTransport()
        self.protocol.makeConnection(self.transport)
        self.results = []

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
        elif "publish" in step:
            p = step["publish"]
            self.bus.publish(Event(p["name"], p["data"], 60, self.clock.seconds(), p["coreid"],
                                   False, owner=p["owner"]))
        return [{"to": list(address), "data": data.hex()} for address, data in self.transport.sent]


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
    (transcript,) = [json.loads(p.read_text()) for p in TRANSCRIPTS]
    assert [s["api"][0] for s in transcript["steps"] if "api" in s] == [
        "call_function", "read_variable", "read_variable", "read_variable", "ping", "signal"]
    assert transcript["results"] == [["6"], ["-5"], ["'hi'"], ["1.5"], ["True"], ["True"]]
    assert ["got/order", "42"] in transcript["events"]  # its subscription's handler answered
