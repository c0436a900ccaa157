"""DeviceRouter with fake sessions and the real registry and bus."""

from __future__ import annotations

from twisted.internet.task import Clock

from twisted_spark.events.bus import EventBus
from twisted_spark.events.device_routing import DeviceRouter
from twisted_spark.models import Event
from twisted_spark.registry import DeviceRegistry

DA1, DA2, DB = "a1" * 12, "a2" * 12, "b0" * 12


class FakeSession:
    """What the router and registry use of a DeviceSession."""

    def __init__(self, device_id, owner, subscriptions=(), accept=True):
        self.device_id = device_id
        self.owner = owner
        self.subscriptions = list(subscriptions)
        self.remote_ip = "10.0.0.1"
        self.platform_id = 0
        self.product_id = 0
        self.firmware_version = 0
        self.last_heard = 0.0
        self.last_saved = 0.0
        self.received = []
        self.accept = accept
        self.disconnected = None

    def send_event(self, event):
        self.received.append(event)
        return self.accept

    def disconnect(self, reason):
        self.disconnected = reason

    def subscribe(self, prefix, my_devices=False, device_id=None, registry=None):
        """What DeviceSession._subscribe does with a subscription."""
        entry = (prefix, my_devices, device_id)
        if entry not in self.subscriptions:
            self.subscriptions.append(entry)
            if registry is not None:
                registry.subscription_added(self, entry)

    def names(self):
        return [e.name for e in self.received]


def ev(name, coreid=DA1, owner="alice", public=True, data=None):
    return Event(name, data, 60, 5.0, coreid, public, owner)


def setup():
    clock = Clock()
    bus = EventBus()
    registry = DeviceRegistry(clock, bus=bus)
    router = DeviceRouter(bus, registry)
    return clock, bus, registry, router


def test_subscriptions_present_at_online_are_routed():
    _, bus, registry, router = setup()
    listener = FakeSession(DA2, "alice", [("temp", False, None), ("", True, None)])
    registry.register(listener)
    assert len(router) == 2 and len(bus) == 2
    bus.publish(ev("temp"))  # firehose + my devices: delivered once per matching subscription
    bus.publish(ev("other", public=False))  # private of the same owner: the u subscription
    bus.publish(ev("temp", coreid=DB, owner="bob", public=False))  # nobody
    assert listener.names() == ["temp", "temp", "other"]


def test_subscriptions_after_online_are_routed_through_the_registry():
    _, bus, registry, router = setup()
    listener = FakeSession(DA2, "alice")
    registry.register(listener)
    assert len(router) == 0
    listener.subscribe("temp", registry=registry)
    listener.subscribe("temp", registry=registry)  # the session ignores a duplicate
    assert router.subscriptions_of(listener) == [("temp", False, None)]
    bus.publish(ev("temperature"))
    assert listener.names() == ["temperature"]


def test_the_same_subscription_twice_is_routed_once():
    _, bus, registry, router = setup()
    listener = FakeSession(DA2, "alice")
    registry.register(listener)
    listener.subscribe("t", registry=registry)
    router.subscription_added(listener, ("t", False, None))
    router.subscription_added(listener, ("t", 0, ""))  # same subscription, other spelling
    assert len(bus) == 1
    bus.publish(ev("t"))
    assert listener.names() == ["t"]


def test_hook_for_an_offline_session_is_ignored():
    _, bus, _, router = setup()
    router.subscription_added(FakeSession(DA2, "alice"), ("t", False, None))
    assert len(bus) == 0 and len(router) == 0


def test_offline_removes_every_subscription_and_stops_watching():
    _, bus, registry, router = setup()
    listener = FakeSession(DA2, "alice", [("a", False, None), ("b", True, None)])
    registry.register(listener)
    listener.subscribe("c", device_id=DA1, registry=registry)
    assert len(bus) == 3
    registry.unregister(listener)
    assert len(bus) == 0 and len(router) == 0
    listener.subscribe("d", registry=registry)  # a late append after offline routes nothing
    assert len(bus) == 0
    bus.publish(ev("a"))
    assert listener.received == []


def test_reconnect_replaces_the_old_sessions_routes():
    _, bus, registry, router = setup()
    old = FakeSession(DA2, "alice", [("t", False, None)])
    registry.register(old)
    new = FakeSession(DA2, "alice", [("t", False, None), ("u", False, None)])
    registry.register(new)
    assert old.disconnected is not None
    assert router.subscriptions_of(old) == [] and len(bus) == 2
    bus.publish(ev("t"))
    assert old.received == [] and new.names() == ["t"]


def test_device_to_device_with_the_9_4_rules():
    _, bus, registry, router = setup()
    publisher = FakeSession(DA1, "alice")
    mine = FakeSession(DA2, "alice", [("", True, None)])
    bobs = FakeSession(DB, "bob", [("t", False, None), ("", False, DA1)])
    for session in (publisher, mine, bobs):
        registry.register(session)
    mine.received.clear()
    bobs.received.clear()
    bus.publish(ev("t/public", public=True))
    bus.publish(ev("t/private", public=False))
    assert mine.names() == ["t/public", "t/private"]
    assert bobs.names() == ["t/public", "t/public"]  # firehose and device-id subscription
    assert publisher.received == []  # not subscribed: no echo


def test_spark_status_is_never_routed_to_devices():
    _, bus, registry, router = setup()
    watcher = FakeSession(DA2, "alice", [("spark", True, None), ("", True, None)])
    registry.register(watcher)
    registry.register(FakeSession(DA1, "alice"))
    assert len(bus) == 2  # (the status event went to the bus: nobody took it)
    assert watcher.received == []


def test_a_failing_device_does_not_stop_the_others():
    _, bus, registry, router = setup()
    broken = FakeSession(DA2, "alice", [("", True, None)])

    def explode(event):
        raise ConnectionError("gone")

    broken.send_event = explode
    fine = FakeSession(DB, "bob", [("t", False, None)])
    registry.register(broken)
    registry.register(fine)
    bus.publish(ev("t"))
    assert fine.names() == ["t"]


def test_thousand_online_offline_cycles_leave_the_bus_empty():
    _, bus, registry, router = setup()
    for i in range(1000):
        session = FakeSession(DA2, "alice", [("a", False, None)])
        registry.register(session)
        session.subscribe(f"p{i % 5}", my_devices=bool(i % 2), registry=registry)
        bus.publish(ev("a"))
        registry.unregister(session)
    assert len(bus) == 0 and len(router) == 0 and router._routes == {}


def test_claim_while_online_changes_what_the_subscriptions_see():
    _, bus, registry, router = setup()
    listener = FakeSession(DA2, None, [("", True, None)])
    registry.register(listener)
    bus.publish(ev("before"))
    listener.owner = "alice"  # what the API's claim does to the live session
    bus.publish(ev("after", public=False))
    listener.owner = "bob"  # released, claimed by bob
    bus.publish(ev("gone", public=False))
    assert listener.names() == ["after"]
