"""CachingStore: short-lived token, user and device caches that every write invalidates.

The full IStore contract runs against it too (tests/test_store_contract.py);
these tests are about what it remembers and when it forgets.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from twisted_spark.interfaces import IDtlsSessionStore, IStore, IStoreCache
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.store import MemoryStore
from twisted_spark.store.cache import CachingStore

TOKEN = "ab" * 20
DEVICE = "53ff6f065067544840311387"


class CountingStore(MemoryStore):
    """A MemoryStore that counts reads, and can hold one device read back."""

    def __init__(self):
        super().__init__()
        self.reads = 0
        self.held: list[defer.Deferred] = []
        self.hold = False

    def get_token(self, token):
        self.reads += 1
        return super().get_token(token)

    def list_devices_named(self, name, owner=None):
        self.reads += 1
        return super().list_devices_named(name, owner)

    def get_device(self, device_id):
        self.reads += 1
        answer = super().get_device(device_id)
        if not self.hold:
            return answer
        later = defer.Deferred()
        self.held.append(later)
        return answer.addCallback(lambda record: later.addCallback(lambda _: record))


def make(ttl=1.0, size=100):
    clock = Clock()
    clock.advance(1000)
    inner = CountingStore()
    inner._users["alice"] = User("alice", "x")
    inner._tokens[TOKEN] = AccessToken(TOKEN, "alice", "c", 0.0, None)
    inner._devices[DEVICE] = DeviceRecord(DEVICE, owner="alice", variables={"t": "int32"})
    return clock, inner, CachingStore(inner, clock, ttl=ttl, size=size)


def value(d):
    out = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    return out[0]


def test_provides_the_interfaces():
    _, _, store = make()
    for interface in (IStore, IDtlsSessionStore, IStoreCache):
        assert verifyObject(interface, store)


def test_repeated_reads_within_ttl_come_from_memory():
    clock, inner, store = make()
    assert value(store.get_token(TOKEN)).username == "alice"
    assert value(store.get_token(TOKEN)).username == "alice"
    assert value(store.get_device(DEVICE)).owner == "alice"
    assert value(store.get_device(DEVICE)).owner == "alice"
    assert inner.reads == 2 and (store.hits, store.misses) == (2, 2)
    clock.advance(0.99)
    value(store.get_token(TOKEN))
    assert inner.reads == 2
    clock.advance(0.01)  # 1 s after the read: too old
    value(store.get_token(TOKEN))
    assert inner.reads == 3


def test_revoked_token_is_refused_at_once():
    _, _, store = make()
    assert value(store.get_token(TOKEN)) is not None
    assert value(store.delete_token(TOKEN)) is True
    assert value(store.get_token(TOKEN)) is None


def test_expired_tokens_sweep_forgets_every_token():
    _, inner, store = make()
    value(store.get_token(TOKEN))
    value(store.delete_expired(2000.0))
    value(store.get_token(TOKEN))
    assert inner.reads == 2


def test_device_writes_are_seen_at_once_and_records_are_copies():
    _, _, store = make()
    first = value(store.get_device(DEVICE))
    first.variables["t"] = "changed by a caller"
    assert value(store.get_device(DEVICE)).variables == {"t": "int32"}
    value(store.update_device(DEVICE, name="kettle"))
    assert value(store.get_device(DEVICE)).name == "kettle"
    value(store.update_device_if(DEVICE, {"name": "kettle"}, owner=None))
    assert value(store.get_device(DEVICE)).owner is None
    value(store.put_device(DeviceRecord(DEVICE, name="teapot")))
    assert value(store.get_device(DEVICE)).name == "teapot"
    value(store.delete_device(DEVICE))
    assert value(store.get_device(DEVICE)) is None


def test_a_name_lookup_is_answered_from_the_device_cache_and_follows_renames():
    clock, inner, store = make()
    value(store.update_device(DEVICE, name="kettle"))
    reads = inner.reads
    assert [d.device_id for d in value(store.list_devices_named("kettle", "alice"))] == [DEVICE]
    assert inner.reads == reads + 1
    value(store.update_device(DEVICE, last_heard=5.0))  # not a rename: the name entry stays
    again = value(store.list_devices_named("kettle", "alice"))
    assert [d.last_heard for d in again] == [5.0]  # the record itself is read afresh
    assert inner.reads == reads + 2  # that device read, not the name lookup
    assert value(store.list_devices_named("kettle", "alice")) == again
    assert inner.reads == reads + 2
    value(store.update_device(DEVICE, name="teapot"))
    assert value(store.list_devices_named("kettle", "alice")) == []
    assert value(store.list_devices_named("teapot")) == [value(store.get_device(DEVICE))]
    clock.advance(1.0)  # entries are trusted for the ttl only
    reads = inner.reads
    value(store.list_devices_named("teapot"))
    assert inner.reads == reads + 1  # the store's lookup, which brings the records too


def test_a_name_taken_away_elsewhere_is_not_answered_from_memory():
    _, inner, store = make()
    value(store.update_device(DEVICE, name="kettle"))
    value(store.list_devices_named("kettle", "alice"))
    other = "ef" * 12
    inner._devices[DEVICE] = DeviceRecord(DEVICE, owner="alice", name="lamp")  # the CLI, say
    inner._devices[other] = DeviceRecord(other, owner="alice", name="kettle")
    store.invalidate_device(DEVICE)  # a relay's word on the first device only
    assert [d.device_id for d in value(store.list_devices_named("kettle", "alice"))] == [other]
    inner._devices[other] = DeviceRecord(other, owner="alice", name="kettle2")
    store._tables["device"].drop(other)  # the device entry gone, the name entry not
    assert value(store.list_devices_named("kettle", "alice")) == []


def test_a_new_device_of_a_name_is_found_at_once():
    _, _, store = make()
    assert value(store.list_devices_named("lamp")) == []
    value(store.put_device(DeviceRecord("ef" * 12, owner="alice", name="lamp")))
    assert [d.device_id for d in value(store.list_devices_named("lamp"))] == ["ef" * 12]


def test_a_failed_write_still_forgets():
    _, inner, store = make()
    value(store.get_device(DEVICE))
    failure = value(store.update_device(DEVICE, owner="nobody"))  # unknown owner
    assert failure.check(Exception)
    value(store.get_device(DEVICE))
    assert inner.reads == 2


def test_a_read_overtaken_by_a_write_is_not_kept():
    """The read started before the write, so its answer may predate it."""
    _, inner, store = make()
    inner.hold = True
    reading = store.get_device(DEVICE)
    inner.hold = False
    value(store.update_device(DEVICE, name="new"))
    inner.held.pop().callback(None)
    assert value(reading).name is None  # what the store said when asked
    assert value(store.get_device(DEVICE)).name == "new"


def test_missing_entries_are_not_cached():
    _, _, store = make()
    other = "cd" * 20
    assert value(store.get_token(other)) is None
    value(store.add_user(User("bob", "y")))
    value(store.add_token(AccessToken(other, "bob", "c", 0.0, None)))
    assert value(store.get_token(other)).username == "bob"
    assert value(store.get_user("bob")).username == "bob"


def test_bounded_oldest_first():
    _, inner, store = make(size=2)
    for n in range(3):
        inner._devices[f"{n:024x}"] = DeviceRecord(f"{n:024x}")
        value(store.get_device(f"{n:024x}"))
    reads = inner.reads
    value(store.get_device(f"{2:024x}"))
    value(store.get_device(f"{1:024x}"))
    assert inner.reads == reads
    value(store.get_device(f"{0:024x}"))
    assert inner.reads == reads + 1


def test_expired_entries_go_as_new_ones_come():
    clock, inner, store = make()
    for n in range(5):
        inner._devices[f"{n:024x}"] = DeviceRecord(f"{n:024x}")
        value(store.get_device(f"{n:024x}"))
    assert len(store._tables["device"].entries) == 5
    clock.advance(1.0)
    value(store.get_device(DEVICE))
    assert list(store._tables["device"].entries) == [DEVICE]


def test_zero_ttl_caches_nothing():
    _, inner, store = make(ttl=0)
    for _ in range(3):
        value(store.get_token(TOKEN))
    assert inner.reads == 3


def test_invalidation_seam():
    """What a cluster relay would use: explicit invalidation, and a listener for local writes."""
    _, inner, store = make()
    heard = []
    store.add_listener(lambda kind, key: heard.append((kind, key)))
    value(store.get_token(TOKEN))
    value(store.get_device(DEVICE))
    store.invalidate_token(TOKEN)
    store.invalidate_device(DEVICE)
    value(store.get_token(TOKEN))
    value(store.get_device(DEVICE))
    assert inner.reads == 4
    store.invalidate_all()
    value(store.get_token(TOKEN))
    assert inner.reads == 5
    assert heard == []  # explicit invalidations are not echoed
    value(store.update_device(DEVICE, name="x"))
    value(store.delete_token(TOKEN))
    value(store.delete_expired(0.0))
    assert heard == [("device", DEVICE), ("token", TOKEN), ("token", None)]


def test_a_failing_listener_does_not_fail_the_write():
    _, _, store = make()
    logged = []
    store.add_listener(lambda kind, key: 1 / 0)
    store.add_listener(lambda kind, key: logged.append(kind))
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        assert value(store.update_device(DEVICE, name="x")).name == "x"
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert logged == ["device"]
    assert any("listener" in e.get("log_format", "") for e in events)


def test_everything_else_is_the_wrapped_store():
    _, inner, store = make()
    assert store._devices is inner._devices
    assert [u.username for u in value(store.list_users())] == ["alice"]
    assert value(store.count_users()) == 1
    assert len(value(store.list_devices("alice"))) == 1
    assert len(value(store.list_tokens("alice"))) == 1
