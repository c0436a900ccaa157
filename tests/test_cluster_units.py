"""Cluster parts with fakes: the URL, the codec, the relay, call routing, the
registry's presence table (the real Redis side is in test_cluster_e2e)."""

from __future__ import annotations

import json

import pytest
from test_registry import FakeSession, FakeStore
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from twisted_spark import errors
from twisted_spark.cluster.address import RedisAddress
from twisted_spark.cluster.calls import CallRouter, RemoteDevice
from twisted_spark.cluster.codec import decode_error, decode_event, encode_error, encode_event
from twisted_spark.cluster.registry import ClusterRegistry, RemoteEntry
from twisted_spark.cluster.relay import EventRelay
from twisted_spark.events.bus import EventBus
from twisted_spark.interfaces import IDeviceRegistry, IDeviceSession
from twisted_spark.models import Event

DEVICE = "0123456789abcdef01234567"


def event(name="temp", data="21", origin=None):
    return Event(name, data, 60, 1000.5, DEVICE, True, "alice", origin)


class FakeLink:
    """Channels in memory: ``publish`` hands the message to whoever listens."""

    namespace = "ns"

    def __init__(self, listeners=None):
        self.listeners = listeners if listeners is not None else {}
        self.sent = []

    def key(self, *parts):
        return ":".join((self.namespace, *parts))

    def publish(self, channel, message):
        self.sent.append((channel, message))
        handler = self.listeners.get(channel)
        if handler is not None:
            handler(message)
        return defer.succeed(1 if handler is not None else 0)


def test_redis_urls():
    assert RedisAddress.parse("redis://10.0.0.5") == RedisAddress("10.0.0.5")
    assert RedisAddress.parse("redis://:pw@r:6380/2") == RedisAddress("r", 6380, 2, None, "pw")
    for bad in ("http://r", "redis://", "redis://r/x"):
        with pytest.raises(ValueError):
            RedisAddress.parse(bad)


def test_events_and_errors_cross_intact():
    relayed = decode_event(encode_event(event(), "node-a"))
    assert relayed == event(origin="node-a")
    with pytest.raises(ValueError):
        decode_event("[1, 2]")
    busy = decode_error(encode_error(errors.DeviceBusy("x")))
    assert isinstance(busy, errors.DeviceBusy)
    strange = decode_error(encode_error(KeyError("boom")))
    assert type(strange) is errors.DeviceRequestFailed
    failed = decode_error(encode_error(errors.UpdateFailed("silent", "img", timeout=True)))
    assert (failed.image_id, failed.timeout) == ("img", True)


def test_relay_sends_local_events_once_and_never_relayed_ones():
    bus, link = EventBus(), FakeLink()
    relay = EventRelay(bus, link, "node-a")
    relay.start()
    seen = []
    bus.subscribe("", seen.append)
    bus.publish(event())
    assert [json.loads(m)[0] for _, m in link.sent] == ["node-a"]
    relay.received(encode_event(event("other"), "node-b"))
    relay.received(encode_event(event("mine"), "node-a"))  # our own, echoed
    relay.received("not json")
    assert [(e.name, e.origin) for e in seen] == [("temp", None), ("other", "node-b")]
    relay.publish_locally(event("status"))
    assert len(link.sent) == 1 and seen[-1].name == "status"
    relay.stop()
    bus.publish(event())
    assert len(link.sent) == 1


class LocalSession:
    def __init__(self, answer=None, error=None):
        self.device_id = DEVICE
        self.answer, self.error = answer, error
        self.calls = []

    def call_function(self, name, argument):
        self.calls.append((name, argument))
        return defer.fail(self.error) if self.error else defer.succeed(self.answer)


class Registry:
    def __init__(self, session=None):
        self.session = session

    def local(self, device_id):
        return self.session


def pair(session):
    """Node A (holding ``session``) and node B, talking through one FakeLink."""
    listeners = {}
    link = FakeLink(listeners)
    clock = Clock()
    holder = CallRouter(link, "a", Registry(session), clock, 5)
    caller = CallRouter(link, "b", Registry(), clock, 5)
    listeners[holder.inbox] = holder.received
    listeners[caller.inbox] = caller.received
    remote = RemoteDevice(DEVICE, RemoteEntry("a", 1, {"functions": ["brew"]}), caller)
    return remote, caller, clock, listeners


def test_a_call_runs_once_at_the_holder_and_answers():
    session = LocalSession(answer=7)
    remote, *_ = pair(session)
    verifyObject(IDeviceSession, remote)
    results = []
    remote.call_function("brew", "é").addCallback(results.append)
    assert results == [7] and session.calls == [("brew", "é".encode())]


def test_holder_errors_come_back_as_themselves():
    remote, *_ = pair(LocalSession(error=errors.DeviceBusy(DEVICE)))
    failures = []
    remote.call_function("brew", b"").addErrback(failures.append)
    assert failures[0].check(errors.DeviceBusy)
    remote, *_ = pair(None)  # the holder no longer has it
    remote.call_function("brew", b"").addErrback(failures.append)
    assert failures[1].check(errors.DeviceNotConnected)


def test_nobody_listening_is_404_and_silence_is_408():
    remote, caller, clock, listeners = pair(LocalSession(answer=1))
    listeners.pop(caller.inbox_of("a"))
    failures = []
    remote.call_function("brew", b"").addErrback(failures.append)
    assert failures[0].check(errors.DeviceNotConnected)
    listeners[caller.inbox_of("a")] = lambda message: None  # hears, never answers
    remote.call_function("brew", b"").addErrback(failures.append)
    assert len(failures) == 1
    clock.advance(5)
    assert failures[1].check(errors.DeviceTimeout) and caller._waiting == {}


class FakePresence:
    node_id = "a"
    channel = "ns:presence"

    def __init__(self):
        self.link = FakeLink()
        self.claims, self.releases, self.forgotten = [], [], []

    def claim(self, device_id, info, event):
        d = defer.Deferred()
        self.claims.append((device_id, event, d))
        return d

    def release(self, device_id, event):
        self.releases.append((device_id, event))
        return defer.succeed(True)

    def forget(self, device_id):
        self.forgotten.append(device_id)
        return defer.succeed(1)


class Session(FakeSession):
    functions = ("brew",)
    variables: dict = {}


def cluster_registry():
    bus = EventBus()
    statuses = []
    bus.subscribe("spark/status", lambda e: statuses.append(e.data))
    presence = FakePresence()
    registry = ClusterRegistry(Clock(), bus=bus, store=FakeStore(), presence=presence,
                               relay=EventRelay(bus, FakeLink(), "a"))
    return registry, presence, statuses


def note(op, node="b", seq=5, **more):
    return json.dumps({"op": op, "node": node, "id": DEVICE, "seq": seq, **more})


def test_remote_devices_come_and_go_with_presence_messages():
    registry, _, _ = cluster_registry()
    verifyObject(IDeviceRegistry, registry)
    registry.presence_message(note("on", info={"owner": "bob", "platform_id": 6}))
    remote = registry.get(DEVICE)
    assert (remote.node, remote.owner, remote.platform_id) == ("b", "bob", 6)
    assert registry.online_ids() == {DEVICE} and registry.sessions() == []
    registry.presence_message(note("on", node="c", seq=4))  # older claim: ignored
    assert registry.get(DEVICE).node == "b"
    registry.presence_message(note("off", node="c"))  # not the holder: ignored
    registry.presence_message(note("off"))
    assert registry.get(DEVICE) is None


def test_a_newer_claim_elsewhere_closes_the_local_session_without_offline():
    registry, presence, statuses = cluster_registry()
    session = Session(DEVICE)
    registry.register(session)
    assert statuses == ["online"] and presence.claims[0][1].data == "online"
    presence.claims[0][2].callback(3)  # our claim is number 3
    registry.presence_message(note("on", seq=5))
    assert session.disconnected and registry.local(DEVICE) is None
    assert registry.get(DEVICE).node == "b"
    assert statuses == ["online"] and presence.releases == [] and presence.forgotten == [DEVICE]


def test_a_claim_elsewhere_seen_before_ours_is_answered_decides_on_numbers():
    registry, presence, _ = cluster_registry()
    session = Session(DEVICE)
    registry.register(session)
    registry.presence_message(note("on", seq=5))  # ours not numbered yet
    assert registry.local(DEVICE) is session
    presence.claims[0][2].callback(7)  # ours is newer: we keep it
    assert registry.local(DEVICE) is session and DEVICE not in registry.remote
    registry.unregister(session)
    assert presence.releases[0][1].data == "offline"


def test_a_holder_without_the_image_names_the_shared_directory_option():
    from types import SimpleNamespace

    from twisted_spark.cluster.firmware import ClusterFirmware

    local = SimpleNamespace(images=SimpleNamespace(get=lambda image_id: defer.succeed(None)))
    router = SimpleNamespace(ops={})
    ClusterFirmware(local, registry=None, router=router, store=None)
    failures = []
    router.ops["flash"](LocalSession(), {"image": "f00d"}).addErrback(failures.append)
    assert failures[0].check(errors.FirmwareError)
    assert "f00d" in str(failures[0].value) and "--firmware-dir" in str(failures[0].value)


def test_cache_relay_passes_writes_on_and_drops_what_others_wrote():
    from twisted_spark.cluster.cache import CacheRelay

    class Cache:
        def __init__(self):
            self.dropped, self.listeners = [], []

        def add_listener(self, listener):
            self.listeners.append(listener)

        def invalidate_token(self, key):
            self.dropped.append(("token", key))

        def invalidate_user(self, key):
            self.dropped.append(("user", key))

        def invalidate_device(self, key):
            self.dropped.append(("device", key))

        def invalidate_all(self):
            self.dropped.append(("all", None))

    cache, link = Cache(), FakeLink()
    link.redis = object()
    relay = CacheRelay(cache, link, "a")
    cache.listeners[0]("token", "t1")
    assert json.loads(link.sent[0][1]) == ["a", "token", "t1"]
    relay.received(json.dumps(["a", "token", "t1"]))  # our own echo
    relay.received(json.dumps(["b", "device", DEVICE]))
    relay.received(json.dumps(["b", "all", None]))
    relay.received("garbage")
    assert cache.dropped == [("device", DEVICE), ("all", None)]
