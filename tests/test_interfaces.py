"""Each part provides the interfaces other parts rely on (mypy-zope checks the
declarations statically; these check real instances), and the registry speaks
to its observers only through IRegistryObserver."""

from __future__ import annotations

from device_fixtures import CORE_ID, Server
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from twisted_spark import interfaces
from twisted_spark.events.bus import EventBus
from twisted_spark.events.device_routing import DeviceRouter
from twisted_spark.metrics import Metrics
from twisted_spark.registry import DeviceRegistry


def test_registry_is_both_faces():
    registry = DeviceRegistry(Clock())
    assert verifyObject(interfaces.IDeviceRegistry, registry)
    assert verifyObject(interfaces.ISessionSink, registry)


def test_bus_subscription_metrics():
    bus = EventBus()
    assert verifyObject(interfaces.IEventBus, bus)
    assert verifyObject(interfaces.ISubscription, bus.subscribe("x", lambda e: None))
    assert verifyObject(interfaces.IMetrics, Metrics())


def test_router_observes_the_registry():
    registry = DeviceRegistry(Clock())
    assert verifyObject(interfaces.IRegistryObserver, DeviceRouter(EventBus(), registry))


def test_a_live_device_session_is_a_local_session():
    s = Server()
    s.register(CORE_ID)
    device = s.device(CORE_ID)
    proto, pump = s.connect(device)
    pump.flush()
    session = s.registry.get(CORE_ID)
    assert verifyObject(interfaces.ILocalSession, session)
    assert verifyObject(interfaces.ISessionTransport, proto)


class Recorder:
    """An observer that records what it is told."""

    def __init__(self):
        self.calls = []

    def device_online(self, session):
        self.calls.append(("online", session.device_id))

    def device_offline(self, session):
        self.calls.append(("offline", session.device_id))

    def subscription_added(self, session, entry):
        self.calls.append(("subscribed", session.device_id, entry))


def test_owner_changes_go_through_the_registry_to_the_live_session():
    s = Server()
    s.register(CORE_ID, owner="alice")
    _proto, pump = s.connect(s.device(CORE_ID))
    pump.flush()
    session = s.registry.get(CORE_ID)
    assert session.owner == "alice"
    s.registry.owner_changed(CORE_ID, "bob")
    assert session.owner == "bob"
    s.registry.owner_changed("ab" * 12, "carol")  # not online: nothing to update


def test_observers_hear_of_subscriptions_through_the_interface():
    s = Server()
    s.register(CORE_ID)
    recorder = Recorder()
    s.registry.add_observer(recorder)
    device = s.device(CORE_ID)
    _proto, pump = s.connect(device)
    pump.flush()
    device.subscribe("temp")
    pump.flush()
    assert recorder.calls == [("online", CORE_ID), ("subscribed", CORE_ID, ("temp", False, None))]


def test_a_session_and_its_protocol_have_no_instance_dict():
    """Thousands of idle devices per process: every layer of the session uses
    __slots__, so no instance carries a __dict__."""
    s = Server()
    s.register(CORE_ID)
    proto, pump = s.connect(s.device(CORE_ID))
    pump.flush()
    session = s.registry.get(CORE_ID)
    assert not hasattr(session, "__dict__")
    assert not hasattr(proto, "__dict__")
