"""DeviceRegistry: online table, replacement, observers, status events, persistence."""

from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from twisted_spark.interfaces import IDeviceRegistry
from twisted_spark.models import DeviceRecord
from twisted_spark.registry import DeviceRegistry


class FakeSession:
    def __init__(self, device_id, ip="10.0.0.1", owner="alice"):
        self.device_id = device_id
        self.remote_ip = ip
        self.owner = owner
        self.platform_id = 6
        self.product_id = 0xFFFF
        self.firmware_version = 3
        self.last_heard = 0.0
        self.last_saved = 0.0
        self.disconnected = []

    def disconnect(self, reason):
        self.disconnected.append(reason)


class FakeBus:
    def __init__(self):
        self.events = []

    def publish(self, event):
        self.events.append(event)


class FakeStore:
    def __init__(self):
        self.updates = []

    def update_device(self, device_id, **changes):
        self.updates.append((device_id, changes))
        return defer.succeed(None)


class Observer:
    def __init__(self):
        self.calls = []

    def device_online(self, s):
        self.calls.append(("online", s))

    def device_offline(self, s):
        self.calls.append(("offline", s))

    def subscription_added(self, s, entry):
        self.calls.append(("subscribed", s, entry))


def make():
    clock = Clock()
    clock.advance(1000)
    bus, store = FakeBus(), FakeStore()
    return clock, bus, store, DeviceRegistry(clock, bus=bus, store=store)


def test_provides_interface():
    assert verifyObject(IDeviceRegistry, DeviceRegistry(Clock()))


def test_register_unregister_status_and_persistence():
    clock, bus, store, reg = make()
    obs = Observer()
    reg.add_observer(obs)
    s = FakeSession("aa" * 12)
    reg.register(s)
    assert reg.get(s.device_id) is s
    assert reg.online_ids() == {s.device_id}
    assert [(e.name, e.data, e.public, e.owner) for e in bus.events] == [
        ("spark/status", "online", False, "alice")
    ]
    dev, changes = store.updates[0]
    assert dev == s.device_id
    assert changes["last_ip"] == "10.0.0.1" and changes["platform_id"] == 6
    assert changes["last_heard"] == 1000
    s.last_heard = 1005
    reg.unregister(s)
    assert reg.get(s.device_id) is None
    assert bus.events[-1].data == "offline"
    assert store.updates[-1] == (s.device_id, {"last_heard": 1005})
    assert obs.calls == [("online", s), ("offline", s)]


def test_replacement_gives_one_offline_online_pair():
    clock, bus, store, reg = make()
    obs = Observer()
    reg.add_observer(obs)
    old, new = FakeSession("bb" * 12, "1.1.1.1"), FakeSession("bb" * 12, "2.2.2.2")
    reg.register(old)
    reg.register(new)
    assert old.disconnected and reg.get(new.device_id) is new
    # the old session's own unregister (from its connectionLost) is a no-op now
    reg.unregister(old)
    assert reg.get(new.device_id) is new
    assert [c[0] for c in obs.calls] == ["online", "offline", "online"]
    assert [e.data for e in bus.events] == ["online", "offline", "online"]


def test_last_heard_is_throttled():
    clock, bus, store, reg = make()
    s = FakeSession("cc" * 12)
    reg.register(s)
    n = len(store.updates)
    for t in range(1001, 1059):
        s.last_heard = t
        reg.heard(s)
    assert len(store.updates) == n
    s.last_heard = 1060
    reg.heard(s)
    assert store.updates[-1] == (s.device_id, {"last_heard": 1060})
    assert len(store.updates) == n + 1


def stored_as(session, last_heard):
    return DeviceRecord(
        session.device_id, last_heard=last_heard, last_ip=session.remote_ip,
        platform_id=session.platform_id, product_id=session.product_id,
        firmware_version=session.firmware_version,
    )


def test_reconnect_with_unchanged_recent_attributes_writes_nothing():
    """A device back within the save interval, same address and Hello: no store write."""
    clock, bus, store, reg = make()
    s = FakeSession("dd" * 12)
    reg.register(s, stored_as(s, 970.0))
    assert store.updates == []
    assert s.last_saved == 970.0
    assert bus.events[-1].data == "online"  # everything else happens as before
    s.last_heard = 1029.0
    reg.heard(s)
    assert store.updates == []
    s.last_heard = 1030.0  # 60 s after the stored last_heard
    reg.heard(s)
    assert store.updates == [(s.device_id, {"last_heard": 1030.0})]


def test_reconnect_writes_what_changed_or_is_stale():
    clock, bus, store, reg = make()
    for index, (change, stored_heard) in enumerate((
        ({"remote_ip": "10.9.9.9"}, 990.0),
        ({"firmware_version": 4}, 990.0),
        ({}, 940.0),  # stored last_heard older than the interval
        ({}, None),
        ({}, 1010.0),  # in the future: a clock went back; write
    )):
        store.updates.clear()
        s = FakeSession(f"{index:024x}")
        record = stored_as(s, stored_heard)
        for name, value in change.items():
            setattr(s, name, value)
        reg.register(s, record)
        [(_, changes)] = store.updates
        assert changes["last_heard"] == 1000 and s.last_saved == 1000
        assert changes["last_ip"] == s.remote_ip
        assert changes["firmware_version"] == s.firmware_version


def test_observer_failure_is_contained():
    clock, bus, store, reg = make()

    class Bad:
        def device_online(self, s):
            raise RuntimeError("boom")

        def device_offline(self, s):
            raise RuntimeError("boom")

    good = Observer()
    reg.add_observer(Bad())
    reg.add_observer(good)
    s = FakeSession("dd" * 12)
    reg.register(s)
    reg.unregister(s)
    assert [c[0] for c in good.calls] == ["online", "offline"]


def test_store_failure_is_logged_not_raised():
    clock = Clock()

    class FailingStore:
        def update_device(self, device_id, **changes):
            return defer.fail(RuntimeError("db down"))

    reg = DeviceRegistry(clock, store=FailingStore())
    s = FakeSession("ee" * 12)
    reg.register(s)
    d = reg.save(s.device_id, last_heard=1)
    results = []
    d.addCallback(results.append)
    assert results == [None]
    assert reg.get(s.device_id) is s


def test_an_unreachable_database_is_one_line_naming_the_device(logged_failures):
    from twisted.logger import globalLogPublisher

    from twisted_spark.errors import StoreUnavailable

    class DownStore:
        def update_device(self, device_id, **changes):
            return defer.fail(StoreUnavailable("PostgreSQL at postgresql://db/spark is down"))

    lines = []
    globalLogPublisher.addObserver(lines.append)
    try:
        reg = DeviceRegistry(Clock(), store=DownStore())
        reg.save("ee" * 12, last_heard=1, last_ip="192.0.2.1")
    finally:
        globalLogPublisher.removeObserver(lines.append)
    from twisted.logger import formatEvent

    said = [formatEvent(event) for event in lines]
    assert ("Could not save last_heard, last_ip of device " + "ee" * 12 +
            ": the database is unavailable") in said
    assert logged_failures == []  # no traceback for an outage
