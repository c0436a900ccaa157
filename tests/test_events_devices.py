"""Events end to end in memory: virtual devices over the real protocol (iosim),
the real session, registry, bus, device router and SSE streams, on a Clock."""

from __future__ import annotations

import json

from device_fixtures import CORE_ID, DEVICE_KEYS, PHOTON_ID, Server, result
from test_api_sse import StreamRequest

from twisted_spark.api.sse import prefix_from_path
from twisted_spark.api.streams import StreamRegistry
from twisted_spark.config import Settings
from twisted_spark.events import visibility
from twisted_spark.events.bus import EventBus
from twisted_spark.events.device_routing import DeviceRouter
from twisted_spark.events.publishing import api_event
from twisted_spark.models import Event, User, iso8601

BOB_ID = "0123456789abcdef01234567"


class Cloud:
    """The device server of device_fixtures with a real bus, router and streams."""

    def __init__(self, settings=None):
        self.server = s = Server(settings)
        self.bus = EventBus()
        s.bus = s.registry.bus = s.factory.bus = self.bus
        self.clock = s.clock
        self.router = DeviceRouter(self.bus, s.registry)
        self.streams = StreamRegistry(self.bus, self.clock, queue_size=50)
        for user in ("alice", "bob"):
            result(s.store.add_user(User(user, "x")))
        s.register(CORE_ID, DEVICE_KEYS[0], owner="alice")
        s.register(PHOTON_ID, DEVICE_KEYS[1], owner="alice")
        s.register(BOB_ID, DEVICE_KEYS[2], owner="bob")
        self.pumps = []
        self.devices = {}

    def connect(self, device_id, platform="core"):
        key = {CORE_ID: DEVICE_KEYS[0], PHOTON_ID: DEVICE_KEYS[1], BOB_ID: DEVICE_KEYS[2]}
        device = self.server.device(device_id, key[device_id], platform=platform)
        _, pump = self.server.connect(device)
        self.pumps.append(pump)
        self.flush()
        assert device.online.called
        self.devices[device_id] = device
        return device

    def flush(self):
        """Pump every connection until none moves data (events cross connections)."""
        for _ in range(100):
            if not any([pump.pump() for pump in self.pumps]):
                return
        raise AssertionError("connections never went quiet")

    def run(self, d):
        self.flush()
        return result(d)

    def stream(self, rule, prefix="", token="t"):
        request = StreamRequest(self.clock)
        self.streams.open(request, prefix, rule, token=token)
        return request


def frames(request):
    """(name, payload dict) of every event frame written to an SSE request."""
    out = []
    for chunk in b"".join(request.written).split(b"\n\n"):
        if chunk.startswith(b"event: "):
            name_line, data_line = chunk.split(b"\n")
            out.append((name_line[7:].decode(), json.loads(data_line[6:])))
    return out


def names(request):
    return [name for name, _ in frames(request)]


def test_device_publish_reaches_sse_with_the_exact_frame():
    cloud = Cloud()
    alice = cloud.stream(visibility.firehose_rule("alice"))
    bob = cloud.stream(visibility.firehose_rule("bob"))
    core = cloud.connect(CORE_ID)
    at = cloud.clock.seconds()
    core.publish("temp", "21.5", ttl=120)
    core.publish("secret", None, private=True)
    cloud.flush()
    assert frames(alice) == [
        ("spark/status", {"data": "online", "ttl": "60", "published_at": iso8601(at),
                          "coreid": CORE_ID}),
        ("temp", {"data": "21.5", "ttl": "120", "published_at": iso8601(at), "coreid": CORE_ID}),
        ("secret", {"data": None, "ttl": "60", "published_at": iso8601(at), "coreid": CORE_ID}),
    ]
    assert b"".join(alice.written).startswith(b":ok\n\nevent: spark/status\ndata: {\"data\"")
    assert names(bob) == ["temp"]


def test_spark_status_on_connect_and_disconnect_only_to_the_owner():
    cloud = Cloud()
    mine = cloud.stream(visibility.my_devices_rule("alice"), prefix="spark/status")
    bobs = cloud.stream(visibility.firehose_rule("bob"))
    prefix = prefix_from_path(f"/v1/devices/{CORE_ID}/events/spark%2F", 4)
    assert prefix == "spark/"
    device = cloud.stream(visibility.device_rule(CORE_ID, "alice"), prefix=prefix)
    core = cloud.connect(CORE_ID)
    core.disconnect()
    cloud.flush()
    assert [(n, p["data"]) for n, p in frames(mine)] == [
        ("spark/status", "online"), ("spark/status", "offline")]
    assert names(device) == ["spark/status", "spark/status"]
    assert frames(bobs) == []


def test_api_publish_reaches_device_subscriptions_by_scope():
    cloud = Cloud()
    photon = cloud.connect(PHOTON_ID, "photon")
    bob = cloud.connect(BOB_ID)
    assert cloud.run(photon.subscribe("cmd", my_devices=True)) is True
    assert cloud.run(bob.subscribe("cmd")) is True
    now = cloud.clock.seconds()
    cloud.bus.publish(api_event("cmd/private", "go", "True", "300", owner="alice", now=now))
    cloud.bus.publish(api_event("cmd/public", "all", "0", None, owner="alice", now=now))
    cloud.bus.publish(api_event("cmd/bobs", "x", "1", None, owner="bob", now=now))
    cloud.flush()
    # (name, data, ttl, private) as the device parsed the §9.2 frame
    assert photon.events == [("cmd/private", "go", 300, True), ("cmd/public", "all", 60, False)]
    assert bob.events == [("cmd/public", "all", 60, False)]


def test_device_to_device_and_no_echo():
    cloud = Cloud()
    core = cloud.connect(CORE_ID)
    photon = cloud.connect(PHOTON_ID, "photon")
    bob = cloud.connect(BOB_ID)
    assert cloud.run(photon.subscribe(None, my_devices=True)) is True
    assert cloud.run(bob.subscribe(None, device_id=CORE_ID)) is True
    assert cloud.run(core.subscribe("own", my_devices=True)) is True
    core.publish("motion/hall", "1")
    core.publish("motion/private", "2", private=True)
    core.publish("own/x", "3")
    core.publish("spark/device/last_reset", "power_down")
    cloud.flush()
    assert photon.events == [
        ("motion/hall", "1", 60, False),
        ("motion/private", "2", 60, True),
        ("own/x", "3", 60, False),
    ]
    assert bob.events == [("motion/hall", "1", 60, False), ("own/x", "3", 60, False)]
    assert core.events == [("own/x", "3", 60, False)]  # subscribed to its own: gets it


def test_subscriptions_go_with_the_connection():
    cloud = Cloud()
    photon = cloud.connect(PHOTON_ID, "photon")
    assert cloud.run(photon.subscribe("a", my_devices=True)) is True
    assert cloud.run(photon.subscribe("b")) is True
    assert len(cloud.router) == 2 and len(cloud.bus) == 2
    photon.disconnect()
    cloud.flush()
    assert len(cloud.router) == 0 and len(cloud.bus) == 0
    again = cloud.connect(PHOTON_ID, "photon")  # re-subscribes after each connect
    assert cloud.run(again.subscribe("a", my_devices=True)) is True
    cloud.bus.publish(api_event("a1", None, "1", None, owner="alice", now=1.0))
    cloud.bus.publish(api_event("b1", None, "1", None, owner="alice", now=1.0))
    cloud.flush()
    assert again.events == [("a1", None, 60, True)]


def test_event_too_big_for_a_core_is_skipped_not_fatal():
    cloud = Cloud()
    core = cloud.connect(CORE_ID)
    assert cloud.run(core.subscribe("big", my_devices=True)) is True
    cloud.bus.publish(api_event("big", "x" * 255, None, None, owner="alice", now=1.0))
    data = "y" * 2000
    cloud.bus.publish(Event("big/huge", data, 60, 1.0, "api", True, "alice"))
    cloud.bus.publish(api_event("big/small", "ok", None, None, owner="alice", now=1.0))
    cloud.flush()
    assert [name for name, *_ in core.events] == ["big", "big/small"]
    assert cloud.server.registry.get(CORE_ID) is not None


def test_confirmable_publish_is_acknowledged_and_slowdown_drops():
    cloud = Cloud(Settings(device_publish_rate=1.0))
    stream = cloud.stream(visibility.my_devices_rule("alice"), prefix="e")
    core = cloud.connect(CORE_ID)
    acks = [core.publish(f"e{i}", confirmable=True) for i in range(5)]
    cloud.flush()
    assert [result(a) for a in acks] == [True, True, True, True, False]
    assert names(stream) == ["e0", "e1", "e2", "e3"]


def test_thousand_stream_cycles_with_live_devices_leave_only_device_subscriptions():
    cloud = Cloud()
    photon = cloud.connect(PHOTON_ID, "photon")
    assert cloud.run(photon.subscribe("x", my_devices=True)) is True
    core = cloud.connect(CORE_ID)
    for i in range(1000):
        request = cloud.stream(visibility.firehose_rule("alice"), token=f"t{i % 3}")
        if i % 2:
            request.lose()
        else:
            cloud.streams.close_streams_for_token(f"t{i % 3}")
    core.publish("x", "still routed")
    cloud.flush()
    assert len(cloud.bus) == 1 and len(cloud.streams) == 0
    assert photon.events == [("x", "still routed", 60, False)]
