# -*- test-case-name: tests.test_fuzz_corpus -*-
"""Webhooks: definitions, templates against device event data, and the target's answers.

The input's messages (cut at the separator) are: a webhook definition (a
JSON object, as the API receives it), the data of the event that fires it
(device-controlled), and the body the webhook's server answers (remote,
untrusted).  Contract: :func:`parse_definition` gives a ``Draft`` or raises
:class:`InvalidWebhook`; building the request for the event and the
response events from the answer raise nothing but :class:`TemplateError`
(which the dispatcher turns into ``hook-error``); response events are cut
into parts of at most 512 bytes that join back to the text.
"""

from __future__ import annotations

import json

from fuzz.harness import ContractBroken, split
from twisted_spark.models import Event, Webhook
from twisted_spark.webhooks.definition import InvalidWebhook, parse_definition
from twisted_spark.webhooks.outcome import PART_SIZE, error_topic, parts, response_text
from twisted_spark.webhooks.outgoing import build_request
from twisted_spark.webhooks.policy import NetworkPolicy
from twisted_spark.webhooks.templates import TemplateError, event_context

POLICY = NetworkPolicy(allow=["0.0.0.0/0", "::/0"])
FALLBACK = {"event": "temp", "url": "https://hooks.example.com/in/{{PARTICLE_DEVICE_ID}}",
            "json": {"t": "{{t}}", "v": "{{{PARTICLE_EVENT_VALUE}}}"}}


def _definition(text: bytes) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return FALLBACK
    return value if isinstance(value, dict) else FALLBACK


def one_input(data: bytes) -> None:
    pieces = [*split(data, 3), b"", b"", b""]
    raw, event_data, answer = pieces[0], pieces[1], pieces[2]
    try:
        draft = parse_definition(_definition(raw), POLICY)
    except InvalidWebhook:
        draft = parse_definition(FALLBACK, POLICY)
    hook = Webhook("h1", "fuzz@example.com", draft.event, draft.url, draft.request_type,
                   device_id=None, no_defaults=draft.no_defaults,
                   reject_unauthorized=draft.reject_unauthorized, definition=draft.definition)
    event = Event(name=draft.event or "temp", data=event_data.decode("utf-8", "replace") or None,
                  ttl=60, published_at=1_700_000_000.0, coreid="1a118ad1c886d54240ce4b17",
                  public=False, owner="fuzz@example.com")
    error_topic(hook, event)
    try:
        build_request(hook, event)
        text = response_text(answer, hook.get("responseTemplate"), event_context(event))
    except TemplateError:
        return
    cut = parts(text)
    if "".join(part or "" for part in cut) != text or any(
            part is not None and len(part.encode("utf-8")) > PART_SIZE for part in cut):
        raise ContractBroken(f"response parts of {text[:80]!r} do not rebuild it")
