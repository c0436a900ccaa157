"""The webhook dispatcher on a Clock with a fake sender: matching, retries,
throttling, concurrency and the outcome events (API.md §6)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_spark.events.bus import EventBus
from twisted_spark.interfaces.webhooks import IWebhookDispatcher, IWebhookSender
from twisted_spark.models import Event, User, Webhook
from twisted_spark.store import MemoryStore
from twisted_spark.webhooks.dispatcher import WebhookDispatcher
from twisted_spark.webhooks.sender import (
    AddressNotAllowed,
    Answer,
    AttemptTimedOut,
    ConnectionFailed,
)

CORE = "53ff73065067544816300187"
OTHER = "2a0034000447343337373738"


@implementer(IWebhookSender)
class FakeSender:
    """Each send() returns a Deferred the test fires."""

    timeout = 20.0

    def __init__(self):
        self.calls = []  # (request, deferred)
        self.closed = False

    def send(self, request, verify=True):
        d = defer.Deferred()
        self.calls.append((request, d))
        return d

    def answer(self, index=-1, status=200, body=b"ok"):
        self.calls[index][1].callback(Answer(status, body))

    def fail(self, exc, index=-1):
        self.calls[index][1].errback(exc)

    def close(self):
        self.closed = True
        return defer.succeed(None)


class World:
    def __init__(self, **options):
        self.clock = Clock()
        self.bus = EventBus()
        self.store = MemoryStore()
        self.sender = FakeSender()
        self.seen = []
        self.bus.subscribe("", self.seen.append)
        self.dispatcher = WebhookDispatcher(self.bus, self.store, self.sender, self.clock,
                                            uniform=lambda a, b: 1.0, **options)

    def start(self, *hooks):
        self.store.add_user(User("alice", "x"))
        self.store.add_user(User("bob", "x"))
        for hook in hooks:
            self.store.add_webhook(hook)
        self.dispatcher.start()

    def publish(self, name="temp", coreid=CORE, owner="alice", data="1", origin=None):
        self.bus.publish(Event(name, data, 60, self.clock.seconds(), coreid, False, owner,
                               origin))
        self.clock.advance(0)  # matched hooks are queued on the next turn

    def outcomes(self):
        return [(e.name, e.data) for e in self.seen if e.coreid == "particle-internal"]


def hook(hook_id="h1", owner="alice", event="temp", **changes):
    return replace(Webhook(hook_id, owner, event, "http://10.0.0.5/in"), **changes)


def test_implements_the_interface():
    assert verifyObject(IWebhookDispatcher, World().dispatcher)


def test_success_publishes_sent_then_response_parts_privately():
    world = World()
    world.start(hook())
    world.publish("temperature")
    assert len(world.sender.calls) == 1
    world.sender.answer(body=b"x" * 600)
    assert world.outcomes() == [("hook-sent/temperature", None),
                                ("hook-response/temperature/0", "x" * 512),
                                ("hook-response/temperature/1", "x" * 88)]
    sent = [e for e in world.seen if e.coreid == "particle-internal"][0]
    assert (sent.owner, sent.public, sent.ttl) == ("alice", False, 60)


def test_empty_body_gives_one_null_part_and_3xx_is_a_success():
    world = World()
    world.start(hook())
    world.publish()
    world.sender.answer(status=302, body=b"")
    assert world.outcomes()[-1] == ("hook-response/temp/0", None)


@pytest.mark.parametrize("kwargs, name, coreid, owner, origin, fires", [
    ({}, "temp", CORE, "alice", None, True),
    ({}, "te", CORE, "alice", None, False),            # shorter than the prefix
    ({}, "Temp", CORE, "alice", None, False),          # case-sensitive
    ({}, "temp", CORE, "bob", None, False),            # another user's event
    ({}, "temp", CORE, None, None, False),             # unowned device
    ({}, "temp", CORE, "alice", "node-2", False),      # relayed from another node
    ({}, "temp", "particle-internal", "alice", None, False),  # a hook's own event
    ({}, "temp", "api", "alice", None, True),          # the owner's API publish
    ({"device_id": CORE}, "temp", CORE, "alice", None, True),
    ({"device_id": CORE}, "temp", OTHER, "alice", None, False),
    ({"device_id": CORE}, "temp", "api", "alice", None, False),
])
def test_which_events_trigger(kwargs, name, coreid, owner, origin, fires):
    world = World()
    world.start(hook(**kwargs))
    world.publish(name, coreid, owner, origin=origin)
    assert len(world.sender.calls) == (1 if fires else 0)


def test_custom_topics_never_trigger_hooks_and_several_hooks_fire():
    world = World()
    world.start(hook("h1", event="", definition={"responseTopic": "temp/answer"}),
                hook("h2", event="te"))
    world.publish()
    assert len(world.sender.calls) == 2
    world.sender.answer(0)
    world.sender.answer(1)
    assert len(world.sender.calls) == 2  # the responses triggered nothing
    assert ("temp/answer/0", "ok") in world.outcomes()


def test_5xx_is_retried_after_1_then_2_seconds_then_fails_once():
    world = World()
    world.start(hook())
    world.publish()
    world.sender.answer(status=503)
    world.clock.advance(0.99)
    assert len(world.sender.calls) == 1
    world.clock.advance(0.01)
    world.sender.fail(ConnectionFailed("connection refused"))
    world.clock.advance(1.99)
    assert len(world.sender.calls) == 2
    world.clock.advance(0.01)
    world.sender.answer(status=429)
    assert len(world.sender.calls) == 3
    assert world.outcomes() == [("hook-sent/temp", None),
                                ("hook-error/temp/0", "error status 429 from 10.0.0.5")]
    assert world.dispatcher.failures("h1") == 1


def test_retry_waits_are_jittered_within_half_to_one_and_a_half():
    world = World()
    spans = []
    world.dispatcher.uniform = lambda a, b: spans.append((a, b)) or b
    world.start(hook())
    world.publish()
    world.sender.fail(ConnectionFailed("refused"))
    world.clock.advance(1.49)
    assert len(world.sender.calls) == 1
    world.clock.advance(0.01)
    assert len(world.sender.calls) == 2 and spans == [(0.5, 1.5)]


@pytest.mark.parametrize("failure, reason", [
    (lambda s: s.answer(status=404), "error status 404 from 10.0.0.5"),
    (lambda s: s.fail(AttemptTimedOut(20)), "timed out after 20 s (10.0.0.5)"),
    (lambda s: s.fail(AddressNotAllowed("10.0.0.5")), "address not allowed (10.0.0.5)"),
])
def test_not_retried(failure, reason):
    world = World()
    world.start(hook())
    world.publish()
    failure(world.sender)
    world.clock.advance(10)
    assert len(world.sender.calls) == 1
    assert world.outcomes()[-1] == ("hook-error/temp/0", reason)


def test_template_error_fails_without_sending():
    world = World()
    world.start(hook(definition={"json": "{{PARTICLE_EVENT_VALUE}} not json",
                                 "errorResponseTopic": "bad/{{PARTICLE_EVENT_NAME}}"}))
    world.publish()
    assert world.sender.calls == []
    assert world.outcomes() == [("bad/temp/0", "the json template did not render to JSON")]


def test_sleeps_after_ten_failed_deliveries_and_a_success_resets():
    world = World(max_errors=10, sleep=60)
    world.start(hook(), hook("h2", event="other"))
    for _ in range(10):
        world.publish()
        world.sender.answer(status=400)
    assert world.dispatcher.failures("h1") == 10
    world.publish()
    assert len(world.sender.calls) == 10
    assert world.outcomes()[-1] == ("hook-error/temp/0", "Sleeping, too many errors, "
                                    "please wait and try again")
    world.publish("other")  # another hook is not affected
    assert len(world.sender.calls) == 11
    world.sender.answer()
    world.clock.advance(60)
    world.publish()
    world.sender.answer(status=500)
    world.clock.advance(1)
    world.sender.answer(status=500)
    world.clock.advance(2)
    world.sender.answer(status=500)
    world.publish()  # that failure started another sleep
    assert len(world.sender.calls) == 14
    world.clock.advance(60)
    world.publish()
    world.sender.answer()
    assert world.dispatcher.failures("h1") == 0


def test_four_per_hook_then_a_queue_of_100_then_too_many_pending():
    world = World(per_hook=4, queue_size=100)
    world.start(hook())
    for _ in range(105):
        world.publish()
    assert len(world.sender.calls) == 4
    assert world.dispatcher.pending() == 100
    assert world.outcomes().count(("hook-error/temp/0", "Too many pending requests")) == 1
    world.sender.answer(0)
    assert len(world.sender.calls) == 5


def test_global_concurrency_is_shared_fairly_and_a_slow_hook_delays_only_itself():
    world = World(concurrency=4, per_hook=4)
    world.start(hook("slow", event="slow"), hook("fast", event="fast"))
    for _ in range(4):
        world.publish("slow")
    world.publish("fast")
    assert len(world.sender.calls) == 4  # the server's limit
    world.sender.answer(0)  # one slow delivery ends: the waiting hook gets the slot
    assert world.sender.calls[-1][0].url.startswith("http://10.0.0.5/")
    assert len(world.sender.calls) == 5
    fast_events = [c for c in world.sender.calls if b"fast" in (c[0].body or b"")]
    assert len(fast_events) == 1


def test_deleted_hook_starts_nothing_new():
    world = World(per_hook=1)
    world.start(hook())
    world.publish()
    world.publish()
    world.dispatcher.hook_removed("h1")
    world.sender.answer(0)
    world.publish()
    assert len(world.sender.calls) == 1


def test_hooks_are_queued_on_the_next_turn_after_every_subscriber_saw_the_event():
    world = World()
    world.start(hook())
    world.bus.publish(Event("temp", None, 60, 0.0, CORE, False, "alice"))
    assert world.sender.calls == [] and world.outcomes() == []
    world.clock.advance(0)
    assert [e.name for e in world.seen] == ["temp", "hook-sent/temp"]
    world.bus.publish(Event("temp", None, 60, 0.0, CORE, False, "alice"))
    world.dispatcher.stop()
    assert world.clock.getDelayedCalls() == []


def test_stop_cancels_deliveries_in_flight_and_unsubscribes():
    world = World()
    world.start(hook())
    world.publish()
    world.sender.fail(ConnectionFailed("refused"))  # now waiting to retry
    world.publish()
    world.dispatcher.stop()
    assert world.sender.closed and world.dispatcher.running == 0
    assert world.clock.getDelayedCalls() == []
    world.publish()
    assert len(world.sender.calls) == 2


def test_hooks_another_node_stores_or_deletes_are_followed_every_reload_interval():
    world = World(reload_interval=10)
    world.start(hook("h1", event="one"))
    world.store.add_webhook(hook("h2", event="two"))  # as another node would
    world.store.delete_webhook("h1")
    world.publish("two")
    assert world.sender.calls == []
    world.clock.advance(10)
    world.publish("two")
    world.publish("one")
    assert len(world.sender.calls) == 1
    world.dispatcher.stop()
    assert world.clock.getDelayedCalls() == []


def test_a_reload_keeps_what_changed_while_it_read_the_store():
    class SlowStore(MemoryStore):
        pending = None

        def list_webhooks(self, owner=None):
            self.pending = defer.Deferred()
            listed = super().list_webhooks(owner).result
            return self.pending.addCallback(lambda _: listed)

    world = World(reload_interval=0)
    world.store = world.dispatcher._store = SlowStore()
    world.store.add_user(User("alice", "x"))
    world.store.add_webhook(hook("old"))
    reloading = world.dispatcher.reload()
    world.dispatcher.hook_added(hook("new"))    # created while the read ran
    world.dispatcher.hook_removed("old")        # deleted while the read ran
    world.store.pending.callback(None)
    assert reloading.called
    assert sorted(world.dispatcher._hooks) == ["new"]


def test_outcomes_are_counted_in_the_metrics():
    from twisted_spark.metrics import Metrics

    metrics = Metrics()
    world = World(metrics=metrics, per_hook=1, queue_size=0)
    world.start(hook())
    world.publish()
    world.sender.answer()
    world.publish()
    world.sender.answer(status=404)
    assert metrics.value("spark_webhook_deliveries_total", outcome="success") == 1
    assert metrics.value("spark_webhook_deliveries_total", outcome="failure") == 1
    assert "spark_webhooks 1" in metrics.render()
    for outcome in ("ok", "http_error"):
        assert metrics.registry.get_sample_value(
            "spark_webhook_delivery_duration_seconds_count", {"outcome": outcome}) == 1


def test_throttling_goes_through_the_health_seam_a_cluster_may_share():
    from twisted_spark.interfaces.webhooks import IWebhookHealth
    from twisted_spark.webhooks.health import LocalHealth

    shared = LocalHealth(Clock(), max_errors=1, sleep=60)
    assert verifyObject(IWebhookHealth, shared)
    shared.failed("h1")  # as another node reported
    world = World(health=shared)
    world.start(hook())
    world.publish()
    assert world.sender.calls == []
    assert world.outcomes() == [("hook-error/temp/0", "Sleeping, too many errors, "
                                 "please wait and try again")]
    assert world.dispatcher.failures("h1") == 1
    world.dispatcher.hook_removed("h1")
    assert shared.failures("h1") == 0 and not shared.asleep("h1")
