"""EventBus: prefix matching, isolation, cancel semantics, no leftovers."""

from __future__ import annotations

import pytest
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from twisted_spark.events.bus import EventBus
from twisted_spark.interfaces import IEventBus
from twisted_spark.models import Event


def ev(name, public=True, owner="alice"):
    return Event(name, None, 60, 0.0, "api", public, owner)


@pytest.fixture
def logged_failures():
    failures = []

    def observer(event):
        if event.get("log_failure") is not None:
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    yield failures
    globalLogPublisher.removeObserver(observer)


def test_provides_interface():
    assert verifyObject(IEventBus, EventBus())


@pytest.mark.parametrize(
    ("prefix", "name", "matches"),
    [
        ("", "anything", True),
        ("temp", "temp", True),
        ("temp", "temperature", True),
        ("temp", "tem", False),
        ("temp", "Temperature", False),  # case-sensitive
        ("spark/", "spark/status", True),
        ("spark/status", "spark", False),
        ("a/b", "a/bc/d", True),
    ],
)
def test_prefix_matching(prefix, name, matches):
    bus = EventBus()
    got = []
    bus.subscribe(prefix, got.append)
    bus.publish(ev(name))
    assert (got == [ev(name)]) is matches


@pytest.mark.parametrize("distinct_prefixes", [3, 200])
def test_both_lookup_strategies_agree(distinct_prefixes):
    # Few prefixes: the bus scans them; many: it looks up each prefix of the name.
    bus = EventBus()
    got = []
    for i in range(distinct_prefixes):
        bus.subscribe(f"zz{i:03d}", got.append)
    for prefix in ("", "t", "te", "temp", "temperature!", "x"):
        bus.subscribe(prefix, lambda e, p=prefix: got.append(p))
    bus.publish(ev("temp"))
    assert sorted(got) == ["", "t", "te", "temp"]


def test_rule_filters_and_every_match_gets_the_event_once():
    bus = EventBus()
    a, b, c = [], [], []
    bus.subscribe("t", a.append, lambda e: e.public)
    bus.subscribe("t", b.append, lambda e: not e.public)
    bus.subscribe("", c.append)
    bus.publish(ev("temp", public=True))
    assert (len(a), len(b), len(c)) == (1, 0, 1)
    assert bus.published == 1 and bus.delivered == 2


def test_failing_subscriber_and_failing_rule_are_isolated(logged_failures):
    bus = EventBus()
    before, after = [], []

    def boom(event):
        raise RuntimeError("subscriber bug")

    def bad_rule(event):
        raise KeyError("rule bug")

    bus.subscribe("", before.append)
    bus.subscribe("", boom)
    bus.subscribe("", after.append, bad_rule)
    bus.subscribe("", after.append)
    bus.publish(ev("x"))  # does not raise
    assert before == [ev("x")] and after == [ev("x")]
    assert bus.failures == 2
    assert len(logged_failures) == 2
    assert len(bus) == 4  # failing subscribers are not removed


def test_cancel_is_idempotent_and_stops_delivery():
    bus = EventBus()
    got = []
    sub = bus.subscribe("x", got.append)
    assert sub.active and len(bus) == 1
    sub.cancel()
    sub.cancel()
    assert not sub.active and len(bus) == 0 and bus.prefixes() == []
    bus.publish(ev("x"))
    assert got == []


def test_cancel_during_delivery_skips_the_cancelled_one():
    bus = EventBus()
    got = []
    subs = []

    def first(event):
        got.append("first")
        subs[1].cancel()

    subs.append(bus.subscribe("", first))
    subs.append(bus.subscribe("", lambda e: got.append("second")))
    bus.publish(ev("x"))
    assert got == ["first"]
    assert len(bus) == 1


def test_subscribe_during_delivery_starts_with_the_next_event():
    bus = EventBus()
    late = []
    bus.subscribe("", lambda e: bus.subscribe("", late.append) if not late else None)
    bus.publish(ev("one"))
    assert late == []
    bus.publish(ev("two"))
    assert [e.name for e in late] == ["two"]


def test_nested_publish_from_a_subscriber():
    bus = EventBus()
    got = []

    def reply(event):
        if event.name == "ping":
            bus.publish(ev("pong"))

    bus.subscribe("", reply)
    bus.subscribe("", lambda e: got.append(e.name))
    bus.publish(ev("ping"))
    assert sorted(got) == ["ping", "pong"]


def test_thousand_subscribe_cancel_cycles_leave_the_bus_empty():
    bus = EventBus()
    keep = bus.subscribe("keep", lambda e: None)
    for i in range(1000):
        sub = bus.subscribe(f"p{i % 7}", lambda e: None, lambda e: True)
        bus.publish(ev(f"p{i % 7}x"))
        sub.cancel()
    assert len(bus) == 1 and bus.prefixes() == ["keep"]
    keep.cancel()
    assert len(bus) == 0 and bus.prefixes() == []
    assert bus._by_prefix == {}
