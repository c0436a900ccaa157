"""Who sees which event: the whole matrix of publishers × subscribers, through the bus.

Device subscribers use the rule the event router subscribes with
(``device_subscription_rule`` of a session), owner read live."""

from __future__ import annotations

import pytest

from twisted_spark.events import visibility
from twisted_spark.events.bus import EventBus
from twisted_spark.models import Event

A, B, ROOT = "alice", "bob", "root"
DA1 = "a1" * 12  # alice's publishing device
DA2 = "a2" * 12  # another device of alice (a subscriber)
DB = "b0" * 12  # bob's device
DU = "00" * 12  # nobody's device


class Subscriber:
    """A subscribing device session: its id and its owner now."""

    def __init__(self, device_id, owner):
        self.device_id = device_id
        self.owner = owner


def subscription(subscriber_id, owner, **kw):
    """The rule the router uses for a device subscription of this subscriber."""
    return visibility.device_subscription_rule(Subscriber(subscriber_id, owner), **kw)


def event(name, coreid, owner, public):
    return Event(name, "x", 60, 1.0e9, coreid, public, owner)


#: Publishers (rows).
PUBLISHERS = {
    "device of A, public": event("temp", DA1, A, True),
    "device of A, private": event("temp", DA1, A, False),
    "device of B, public": event("temp", DB, B, True),
    "device of B, private": event("temp", DB, B, False),
    "API of A, public": event("temp", visibility.API_COREID, A, True),
    "API of A, private": event("temp", visibility.API_COREID, A, False),
    "unowned device, public": event("temp", DU, None, True),
    "unowned device, private": event("temp", DU, None, False),
    "spark/status of A's device": event("spark/status", DA1, A, False),
    "system publish of A's device": event("spark/device/last_reset", DA1, A, False),
}

#: Subscribers (columns), in the order of the strings in EXPECTED.
SUBSCRIBERS = {
    "A's firehose": visibility.firehose_rule(A),
    "B's firehose": visibility.firehose_rule(B),
    "admin's firehose": visibility.firehose_rule(ROOT, is_admin=True),
    "A's devices stream": visibility.my_devices_rule(A),
    "B's devices stream": visibility.my_devices_rule(B),
    "A's stream on A's device": visibility.device_rule(DA1, A),
    "B's stream on A's device": visibility.device_rule(DA1, B),
    "A's device, u": subscription(DA2, A, my_devices=True),
    "A's device, no u": subscription(DA2, A, my_devices=False),
    "B's device, u": subscription(DB, B, my_devices=True),
    "B's device, no u": subscription(DB, B, my_devices=False),
    "B's device, id of A's device": subscription(DB, B, device_id=DA1),
    "A's device, id of A's device": subscription(DA2, A, device_id=DA1),
    "unowned device, no u": subscription(DU, None),
    "A's publishing device itself, u": subscription(DA1, A, my_devices=True),
}

# 1 = delivered.  Columns in SUBSCRIBERS order:
#                                  Af Bf Ad Ads Bds AonA BonA Au A Bu B Bid Aid U self
EXPECTED = {
    "device of A, public":          "1  1  1  1   0   1    1    1  1 0  1 1   1   1 1",
    "device of A, private":         "1  0  1  1   0   1    0    1  0 0  0 0   1   0 1",
    "device of B, public":          "1  1  1  0   1   0    0    0  1 1  1 0   0   1 0",
    "device of B, private":         "0  1  1  0   1   0    0    0  0 1  1 0   0   0 0",
    "API of A, public":             "1  1  1  1   0   0    0    1  1 0  1 0   0   1 1",
    "API of A, private":            "1  0  1  1   0   0    0    1  0 0  0 0   0   0 1",
    "unowned device, public":       "0  0  1  0   0   0    0    0  0 0  0 0   0   1 0",
    "unowned device, private":      "0  0  1  0   0   0    0    0  0 0  0 0   0   1 0",
    "spark/status of A's device":   "1  0  1  1   0   1    0    0  0 0  0 0   0   0 0",
    "system publish of A's device": "1  0  1  1   0   1    0    0  0 0  0 0   0   0 0",
}

CELLS = [
    (row, column, flag == "1")
    for row, flags in EXPECTED.items()
    for column, flag in zip(SUBSCRIBERS, flags.split(), strict=True)
]


def test_matrix_is_complete():
    assert set(EXPECTED) == set(PUBLISHERS)
    assert len(CELLS) == len(PUBLISHERS) * len(SUBSCRIBERS)


@pytest.mark.parametrize(
    ("publisher", "subscriber", "delivered"),
    CELLS,
    ids=[f"{row} -> {column}" for row, column, _ in CELLS],
)
def test_visibility_matrix(publisher, subscriber, delivered):
    bus = EventBus()
    received = []
    # A noise subscriber that sees everything proves the bus delivered at all.
    everything = []
    bus.subscribe("", everything.append)
    bus.subscribe("", received.append, SUBSCRIBERS[subscriber])
    bus.publish(PUBLISHERS[publisher])
    assert everything == [PUBLISHERS[publisher]]
    assert received == ([PUBLISHERS[publisher]] if delivered else [])


def test_unowned_devices_own_events_reach_only_itself():
    own = event("temp", DU, None, False)
    assert subscription(DU, None, my_devices=True)(own)
    assert not subscription(DA2, A, my_devices=True)(own)


def test_device_id_filter_with_u_needs_same_owner():
    rule = subscription(DB, B, my_devices=True, device_id=DA1)
    assert not rule(event("temp", DA1, A, True))
    assert subscription(DA2, A, my_devices=True, device_id=DA1)(
        event("temp", DA1, A, False)
    )


def test_device_subscription_judges_by_the_subscribers_owner_now():
    """A claim or release while the subscriber is online takes effect at once."""
    listener = Subscriber(DA2, None)
    rule = visibility.device_subscription_rule(listener, my_devices=True)
    private_of_a = event("temp", DA1, A, False)
    assert not rule(private_of_a)
    listener.owner = A  # claimed by alice
    assert rule(private_of_a)
    listener.owner = B
    assert not rule(private_of_a)


def test_device_stream_follows_the_events_owner():
    # Released while streaming: the device's new events are no longer A's.
    assert visibility.device_rule(DA1, A)(event("temp", DA1, A, False))
    assert not visibility.device_rule(DA1, A)(event("temp", DA1, None, False))
    assert not visibility.device_rule(DA1, A)(event("temp", DA1, B, False))
    assert visibility.device_rule(DA1, ROOT, is_admin=True)(event("temp", DA1, None, False))
    assert not visibility.device_rule(DA1, ROOT, is_admin=True)(event("temp", DA2, A, True))


@pytest.mark.parametrize(
    ("name", "system"),
    [("spark", True), ("Spark/x", True), ("SPARKLE", True), ("spar", False), ("my/spark", False)],
)
def test_is_system(name, system):
    assert visibility.is_system(name) is system


def test_webhook_outcome_events_reach_the_owners_devices_in_either_scope():
    accepts = visibility.device_subscription_accepts
    answer = Event("hook-response/t/0", "ok", 60, 0.0, visibility.INTERNAL_COREID, False,
                   "alice")
    subscriber = "53ff73065067544816300187"
    assert accepts(answer, subscriber, "alice")
    assert accepts(answer, subscriber, "alice", my_devices=True)
    assert not accepts(answer, subscriber, "bob")
    assert not accepts(answer, subscriber, None)
    assert not accepts(answer, subscriber, "alice", device_id=subscriber)
