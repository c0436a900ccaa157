# -*- test-case-name: tests.test_webhooks_render -*-
"""The HTTP request of one delivery (API.md §6, "The request").

:func:`build_request` renders a :class:`~twisted_spark.models.Webhook`
against an :class:`~twisted_spark.models.Event` and returns an
:class:`Outgoing` ready to send, or raises
:class:`~twisted_spark.webhooks.templates.TemplateError` (a header with CR
or LF, a ``json`` string that does not render to JSON, a malformed
template): that delivery then fails with a hook-error and nothing is sent.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

from twisted_spark.models import Event, Webhook, iso8601
from twisted_spark.webhooks.templates import TemplateError, event_context, render, render_tree

USER_AGENT = "ParticleBot/1.1 (twisted-spark)"
#: Headers only the server sets.
SERVER_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
#: Characters left as they are when a rendered URL is made safe to send.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


@dataclass
class Outgoing:
    """A rendered request: method, URL, headers (name → value), body bytes or ``None``.

    ``response_topic`` and ``error_topic`` are the rendered outcome-event
    name stems; ``context`` is the event's template context (the
    ``responseTemplate`` is rendered against it and the response body).
    """

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    response_topic: str
    error_topic: str
    context: dict = field(default_factory=dict, repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


def default_fields(event: Event, json_null: bool) -> dict:
    """``event``, ``data``, ``published_at``, ``coreid`` (``data`` null or ``""`` when empty)."""
    empty = None if json_null else ""
    return {
        "event": event.name,
        "data": event.data if event.data else empty,
        "published_at": iso8601(event.published_at),
        "coreid": event.coreid,
    }


def _rendered_pairs(mapping: dict | None, context: dict) -> dict[str, str]:
    return {render(k, context): render(v, context) for k, v in (mapping or {}).items()}


def _with_query(url: str, pairs: dict[str, str]) -> str:
    if not pairs:
        return url
    base, hash_mark, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        joiner = ""
    return base + joiner + urlencode(pairs) + hash_mark + fragment


def _headers(hook: Webhook, context: dict) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    for name, value in _rendered_pairs(hook.get("headers"), context).items():
        if any(c in name + value for c in "\r\n\x00") or not name.strip():
            raise TemplateError(f"header {name.strip()!r} has a line break or no name")
        if name.strip().lower() in SERVER_HEADERS:
            continue
        for existing in [h for h in headers if h.lower() == name.strip().lower()]:
            del headers[existing]
        headers[name.strip()] = value
    auth = hook.get("auth")
    if auth:
        user = render(auth["username"], context)
        password = render(auth.get("password", ""), context)
        for existing in [h for h in headers if h.lower() == "authorization"]:
            del headers[existing]
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return headers


def _set_default(headers: dict[str, str], name: str, value: str) -> None:
    if not any(h.lower() == name.lower() for h in headers):
        headers[name] = value


def _json_body(hook: Webhook, event: Event, context: dict) -> bytes:
    template = hook.get("json")
    if isinstance(template, str):
        text = render(template, context)
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise TemplateError("the json template did not render to JSON") from None
    else:
        value = render_tree(template, context)
    if isinstance(value, dict) and not hook.no_defaults:
        value = {**default_fields(event, json_null=True), **value}
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def build_request(hook: Webhook, event: Event) -> Outgoing:
    """Render ``hook`` for ``event``; see the module docstring."""
    context = event_context(event)
    url = quote(render(hook.url, context), safe=_URL_SAFE)
    try:
        same_target = urlsplit(url).netloc == urlsplit(hook.url).netloc
    except ValueError:
        same_target = False
    if not same_target:
        raise TemplateError("the url did not render to a URL on the hook's host")
    query = _rendered_pairs(hook.get("query"), context)
    headers = _headers(hook, context)
    defaults = {} if hook.no_defaults else default_fields(event, json_null=False)
    form = {**defaults, **_rendered_pairs(hook.get("form"), context)}
    body: bytes | None = None
    if hook.request_type in ("GET", "DELETE"):
        query = {**query, **form}
    elif hook.get("json") is not None:
        body = _json_body(hook, event, context)
        _set_default(headers, "Content-Type", JSON_TYPE)
    elif hook.get("body") is not None:
        body = render(hook.get("body"), context).encode("utf-8")
    else:
        body = urlencode(form).encode("ascii")
        if form:
            _set_default(headers, "Content-Type", FORM_TYPE)
    name = event.name
    response_topic = f"hook-response/{name}"
    error_topic = f"hook-error/{name}"
    if hook.get("responseTopic"):
        response_topic = render(hook.get("responseTopic"), context)
    if hook.get("errorResponseTopic"):
        error_topic = render(hook.get("errorResponseTopic"), context)
    return Outgoing(hook.request_type, _with_query(url, query), headers, body,
                    response_topic, error_topic, context)
