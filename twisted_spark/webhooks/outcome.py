# -*- test-case-name: tests.test_webhooks_render -*-
"""The events a delivery produces (API.md §6, "Outcome events").

All are private events of the hook's owner with ``coreid``
``"particle-internal"`` and ttl 60: ``hook-sent/<event>``, the response
topic cut into 512-byte parts, and one error event per failed delivery.
Pure functions; the dispatcher publishes what they return.
"""

from __future__ import annotations

import json

from twisted_spark.events.visibility import INTERNAL_COREID
from twisted_spark.models import Event
from twisted_spark.webhooks.templates import (
    NO_JSON,
    TemplateError,
    json_value,
    render,
    render_tree,
    to_context,
)

PART_SIZE = 512
MAX_ERROR = 255
SLEEPING = "Sleeping, too many errors, please wait and try again"
TOO_MANY_PENDING = "Too many pending requests"


def outcome_event(name: str, data: str | None, owner: str, now: float) -> Event:
    """A private event of ``owner`` produced by webhook delivery."""
    return Event(name=name, data=data, ttl=60, published_at=now, coreid=INTERNAL_COREID,
                 public=False, owner=owner)


def parts(text: str) -> list[str | None]:
    """``text`` in parts of at most 512 UTF-8 bytes, never cutting a character.

    An empty text is one part, ``None`` (an event with no data).
    """
    raw = text.encode("utf-8")
    if not raw:
        return [None]
    out: list[str | None] = []
    start = 0
    while start < len(raw):
        end = min(start + PART_SIZE, len(raw))
        while end < len(raw) and end > start and (raw[end] & 0xC0) == 0x80:
            end -= 1  # do not end inside a UTF-8 sequence
        out.append(raw[start:end].decode("utf-8"))
        start = end
    return out


def response_text(body: bytes, template, context: dict) -> str:
    """What the response events carry: the body as text, or ``template``
    (a string, or an object sent as JSON text) rendered against the body
    when one is set and the body parses as JSON."""
    text = body.decode("utf-8", "replace")
    if template is None:
        return text
    value = json_value(text)
    if value is NO_JSON:
        return text
    scope = dict(to_context(value)) if isinstance(value, dict) else {}
    scope.update({k: v for k, v in context.items() if k.startswith(("PARTICLE_", "SPARK_"))})
    if isinstance(template, str):
        return render(template, scope)
    return json.dumps(render_tree(template, scope), separators=(",", ":"))


def error_topic(hook, event: Event) -> str:
    """The error topic of ``hook`` for ``event`` (the default if it cannot be rendered)."""
    custom = hook.get("errorResponseTopic")
    if custom:
        from twisted_spark.webhooks.templates import event_context

        try:
            return render(custom, event_context(event))
        except TemplateError:
            pass
    return f"hook-error/{event.name}"


def clip(reason: str) -> str:
    """An error event's data: at most 255 bytes of UTF-8."""
    raw = reason.encode("utf-8")
    if len(raw) <= MAX_ERROR:
        return reason
    return raw[:MAX_ERROR].decode("utf-8", "ignore")
