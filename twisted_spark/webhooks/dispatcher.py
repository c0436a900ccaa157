# -*- test-case-name: tests.test_webhooks_dispatch -*-
"""Matching events to webhooks and delivering them (API.md §6).

:class:`WebhookDispatcher` follows the event bus.  An event triggers the
hooks of its owner whose ``event`` prefix starts its name (and whose
``deviceID``, when set, is its ``coreid``), if it was published on this
node (``event.origin is None``: in a cluster the node that received it
dispatches it, once) and was not itself produced by a delivery.

Each hook has a queue (at most ``queue_size`` deliveries waiting) and at
most ``per_hook`` deliveries running; the whole server runs at most
``concurrency``.  A delivery renders the request
(:func:`~twisted_spark.webhooks.outgoing.build_request`), publishes
``hook-sent``, makes up to three attempts through the
:class:`~twisted_spark.interfaces.webhooks.IWebhookSender` (connection
failures, 5xx and 429 retried after 1 s then 2 s, each ×0.5–1.5), and
publishes the response parts or one error event.  After ``max_errors``
consecutive failed deliveries a hook sleeps ``sleep`` seconds (counted by an
:class:`~twisted_spark.interfaces.webhooks.IWebhookHealth`).  All of this
runs on the reactor: the bus callback only schedules the matching hooks for
the next turn (so the triggering event reaches every stream before its
``hook-sent`` does).
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.events.visibility import INTERNAL_COREID
from twisted_spark.interfaces.webhooks import IWebhookDispatcher
from twisted_spark.models import Event, Webhook
from twisted_spark.webhooks import outcome
from twisted_spark.webhooks.health import LocalHealth
from twisted_spark.webhooks.outgoing import Outgoing, build_request
from twisted_spark.webhooks.sender import AddressNotAllowed, AttemptTimedOut, ConnectionFailed
from twisted_spark.webhooks.templates import TemplateError

log = Logger()

#: Seconds before the second and third attempts (each times 0.5 to 1.5).
RETRY_WAITS = (1.0, 2.0)


@dataclass(eq=False)
class HookState:
    """One hook and what the dispatcher knows of it now (none of it persists)."""

    hook: Webhook
    running: int = 0
    queue: deque = field(default_factory=deque)
    removed: bool = False


def triggers_hooks(event: Event) -> bool:
    """Whether ``event`` may trigger hooks at all: first-hand, owned, not a hook's own."""
    return event.origin is None and event.owner is not None and event.coreid != INTERNAL_COREID


def matches(hook: Webhook, event: Event) -> bool:
    """Whether ``hook`` fires for ``event`` (an owner's event, see :func:`triggers_hooks`)."""
    return (event.owner == hook.owner and event.name.startswith(hook.event)
            and (hook.device_id is None or hook.device_id == event.coreid))


@implementer(IWebhookDispatcher)
class WebhookDispatcher:
    """Delivers events to webhooks; see the module docstring.

    :param bus: the :class:`~twisted_spark.interfaces.IEventBus` followed and published to.
    :param store: an :class:`~twisted_spark.interfaces.webhooks.IWebhookStore`.
    :param sender: an :class:`~twisted_spark.interfaces.webhooks.IWebhookSender`.
    :param clock: ``IReactorTime`` for retry waits and sleeps.
    :param reload_interval: seconds between reloads of the stored hooks
        (:meth:`reload`; 0: never), so hooks other nodes create or delete in a
        shared database are followed.
    :param max_errors: :param sleep: the throttling of the default ``health``.
    :param health: the :class:`~twisted_spark.interfaces.webhooks.IWebhookHealth`
        keeping failure counts and sleeps (default: a
        :class:`~twisted_spark.webhooks.health.LocalHealth`; a cluster may share one).
    :param metrics: optional :class:`~twisted_spark.interfaces.IMetrics`.
    :param uniform: ``uniform(a, b)`` for the retry jitter (tests fix it).
    """

    def __init__(self, bus, store, sender, clock, *, max_errors: int = 10, sleep: float = 60.0,
                 concurrency: int = 64, per_hook: int = 4, queue_size: int = 100,
                 reload_interval: float = 10.0, health=None, metrics=None,
                 uniform=random.uniform) -> None:
        self._bus = bus
        self._store = store
        self._sender = sender
        self._clock = clock
        #: The :class:`~twisted_spark.interfaces.webhooks.IWebhookHealth` in use.
        self.health = health if health is not None else LocalHealth(clock, max_errors, sleep)
        self.concurrency = concurrency
        self.per_hook = per_hook
        self.queue_size = queue_size
        self._metrics = metrics
        #: ``uniform(a, b)`` drawing the retry jitter.
        self.uniform = uniform
        self._hooks: dict[str, HookState] = {}
        self._by_owner: dict[str, dict[str, HookState]] = {}
        self._waiting: OrderedDict[str, HookState] = OrderedDict()
        self._in_flight: set[defer.Deferred] = set()
        self._subscription = None
        self.reload_interval = reload_interval
        self._reloader: task.LoopingCall | None = None
        # Hook ids added or removed while a reload reads the store (None: no reload).
        self._changed: set[str] | None = None
        self._stopped = False
        self._soon: set = set()
        self.running = 0
        if metrics is not None:
            metrics.describe("spark_webhook_deliveries_total", "Webhook deliveries by outcome")
            metrics.gauge("spark_webhooks", "Webhooks known to the dispatcher",
                          lambda: len(self._hooks))

    # -- the hooks ---------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self):
        """Load every stored hook, then follow the bus. :rtype: Deferred[None]"""
        yield self.reload()
        if self._subscription is None:
            self._subscription = self._bus.subscribe("", self._on_event, triggers_hooks)
        if self.reload_interval and self._reloader is None:
            self._reloader = task.LoopingCall(self._reload_logged)
            self._reloader.clock = self._clock
            self._reloader.start(self.reload_interval, now=False)

    @defer.inlineCallbacks
    def reload(self):
        """Make the known hooks the stored ones (other nodes of a cluster
        sharing the database create and delete hooks too).

        A hook added or removed here while the store was being read is left
        as it is: the read may predate that change.  :rtype: Deferred[None]
        """
        self._changed = set()
        stored = {hook.hook_id: hook for hook in (yield self._store.list_webhooks())}
        changed, self._changed = self._changed, None
        for hook_id in [h for h in self._hooks if h not in stored and h not in changed]:
            self.hook_removed(hook_id)
        for hook_id, hook in stored.items():
            if hook_id not in self._hooks and hook_id not in changed:
                self.hook_added(hook)

    def _reload_logged(self):
        return self.reload().addErrback(
            lambda f: log.failure("Could not reload the webhooks from the store", f))

    def hook_added(self, hook: Webhook) -> None:
        if self._changed is not None:
            self._changed.add(hook.hook_id)
        state = HookState(hook)
        self._hooks[hook.hook_id] = state
        self._by_owner.setdefault(hook.owner, {})[hook.hook_id] = state

    def hook_removed(self, hook_id: str) -> None:
        if self._changed is not None:
            self._changed.add(hook_id)
        state = self._hooks.pop(hook_id, None)
        if state is None:
            return
        state.removed = True
        state.queue.clear()
        self.health.forget(hook_id)
        self._waiting.pop(hook_id, None)
        owned = self._by_owner.get(state.hook.owner, {})
        owned.pop(hook_id, None)
        if not owned:
            self._by_owner.pop(state.hook.owner, None)

    def failures(self, hook_id: str) -> int:
        return self.health.failures(hook_id)

    def hook(self, hook_id: str) -> Webhook | None:
        """The hook ``hook_id`` if this dispatcher knows it."""
        state = self._hooks.get(hook_id)
        return state.hook if state is not None else None

    def pending(self) -> int:
        """Deliveries queued and not started, over every hook."""
        return sum(len(s.queue) for s in self._hooks.values())

    # -- events in ---------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        found = [s for s in self._by_owner.get(event.owner or "", {}).values()
                 if matches(s.hook, event)]
        if found:
            # On the next turn: the event reaches every other subscriber (streams)
            # before its hook-sent does.
            call = self._clock.callLater(0, self._enqueue_all, found, event)
            self._soon.add(call)

    def _enqueue_all(self, found: list[HookState], event: Event) -> None:
        self._soon = {c for c in self._soon if c.active()}
        for state in found:
            if not state.removed:
                self._enqueue(state, event)

    def _enqueue(self, state: HookState, event: Event) -> None:
        if self._asleep(state):
            self._error(state, event, outcome.SLEEPING, counts=False)
            return
        state.queue.append(event)
        self._pump(state)
        if len(state.queue) > self.queue_size:  # it could not start and the queue is full
            state.queue.pop()
            self._error(state, event, outcome.TOO_MANY_PENDING, counts=False)

    def _asleep(self, state: HookState) -> bool:
        return self.health.asleep(state.hook.hook_id)

    def _pump(self, state: HookState) -> None:
        while state.queue and state.running < self.per_hook and not state.removed:
            if self.running >= self.concurrency:
                self._waiting[state.hook.hook_id] = state
                return
            event = state.queue.popleft()
            state.running += 1
            self.running += 1
            d = defer.ensureDeferred(self._deliver(state, event))
            self._in_flight.add(d)
            d.addErrback(self._unexpected, state)
            d.addBoth(self._finished, state, d)

    def _finished(self, _result, state: HookState, d) -> None:
        self._in_flight.discard(d)
        state.running -= 1
        self.running -= 1
        self._pump(state)
        while self._waiting and self.running < self.concurrency:
            _, waiting = self._waiting.popitem(last=False)
            self._pump(waiting)

    def _unexpected(self, failure, state: HookState) -> None:
        if not failure.check(defer.CancelledError):
            log.failure("Webhook {hook_id} delivery failed unexpectedly", failure,
                        hook_id=state.hook.hook_id)

    # -- one delivery --------------------------------------------------------------

    async def _deliver(self, state: HookState, event: Event) -> None:
        hook = state.hook
        if self._asleep(state):
            self._error(state, event, outcome.SLEEPING, counts=False)
            return
        try:
            request = build_request(hook, event)
        except TemplateError as error:
            self._error(state, event, str(error))
            return
        self._publish(f"hook-sent/{event.name}", None, hook)
        reason = await self._attempts(request, hook)
        if reason is not None:
            self._error(state, event, reason, topic=request.error_topic)

    async def _attempts(self, request: Outgoing, hook: Webhook) -> str | None:
        """Up to three attempts; ``None`` on success, else why the delivery failed."""
        host = request.host
        for attempt in range(len(RETRY_WAITS) + 1):
            if attempt:
                wait = RETRY_WAITS[attempt - 1] * self.uniform(0.5, 1.5)
                await task.deferLater(self._clock, wait, lambda: None)
            started = self._clock.seconds()
            try:
                answer = await self._sender.send(request, hook.reject_unauthorized)
                if self._stopped:
                    raise defer.CancelledError()
            except AddressNotAllowed:
                self._timed("error", started)
                return f"address not allowed ({host})"
            except AttemptTimedOut:
                self._timed("timeout", started)
                return f"timed out after {self._sender.timeout:g} s ({host})"
            except ConnectionFailed as error:
                if self._stopped:  # the cancelled request may fail this way
                    raise defer.CancelledError() from error
                self._timed("error", started)
                reason = f"connection failed ({host}): {error}"
                continue
            self._timed("ok" if answer.status < 400 else "http_error", started)
            if answer.status < 400:
                self._succeeded(request, hook, answer.body)
                return None
            reason = f"error status {answer.status} from {host}"
            if answer.status < 500 and answer.status != 429:
                return reason
        return reason

    def _succeeded(self, request: Outgoing, hook: Webhook, body: bytes) -> None:
        self.health.succeeded(hook.hook_id)
        self._count("success")
        try:
            text = outcome.response_text(body, hook.get("responseTemplate"), request.context)
        except TemplateError:
            text = body.decode("utf-8", "replace")
        for index, part in enumerate(outcome.parts(text)):
            self._publish(f"{request.response_topic}/{index}", part, hook)

    def _error(self, state: HookState, event: Event, reason: str, *, counts: bool = True,
               topic: str | None = None) -> None:
        if counts:
            self.health.failed(state.hook.hook_id)
            self._count("failure")
        else:
            self._count("refused")
        topic = topic or outcome.error_topic(state.hook, event)
        self._publish(f"{topic}/0", outcome.clip(reason), state.hook)

    def _publish(self, name: str, data: str | None, hook: Webhook) -> None:
        self._bus.publish(outcome.outcome_event(name, data, hook.owner, self._clock.seconds()))

    def _timed(self, result: str, started: float) -> None:
        """One attempt into ``spark_webhook_delivery_duration_seconds``."""
        histogram = getattr(self._metrics, "webhook_deliveries", None)
        if histogram is not None:
            histogram.labels(outcome=result).observe(self._clock.seconds() - started)

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("spark_webhook_deliveries_total", outcome=result)

    # -- shutdown ------------------------------------------------------------------

    def stop(self) -> defer.Deferred:
        """Stop following the bus, drop the queues, cancel deliveries in flight."""
        self._stopped = True
        if self._reloader is not None and self._reloader.running:
            self._reloader.stop()
        for call in self._soon:
            if call.active():
                call.cancel()
        self._soon.clear()
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        for state in self._hooks.values():
            state.queue.clear()
        self._waiting.clear()
        for d in list(self._in_flight):
            d.cancel()
        return self._sender.close()
