# -*- test-case-name: tests.test_webhooks_render -*-
"""Mustache rendering of webhook fields (API.md §6, "Templates").

The engine is `pystache <https://pypi.org/project/pystache/>`_: it passes
the Mustache spec and, unlike chevron, takes its escape function per
renderer, so ``{{x}}`` escapes ``& < > " '`` (the hosted cloud's rule,
``html.escape``) without patching a module-wide function.  Partials are
disabled (an empty partials dict: a template never reads a file).

Values come from JSON event data and are converted before rendering so
they print as JSON would: numbers as their JSON text, booleans as
``true``/``false``, ``null`` and missing names as ``""``.  Arrays accept
dotted indexes (``{{list.0.v}}``) and iterate in sections.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from typing import Any

import pystache
from pystache.parsed import ParsedTemplate

from twisted_spark.models import Event, iso8601


class TemplateError(ValueError):
    """A template could not be rendered, or did not give what it must (→ hook-error)."""


class _JsonBool:
    """A JSON boolean: prints ``true``/``false``, and is falsy in sections when false."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __bool__(self) -> bool:
        return self.value

    def __str__(self) -> str:
        return "true" if self.value else "false"


class _JsonList:
    """A JSON array: iterates in sections, ``{{list.0}}`` indexes it, prints as JSON."""

    __slots__ = ("items", "text")

    def __init__(self, items: list, text: str) -> None:
        self.items = items
        self.text = text

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getattr__(self, name: str):
        if name.isdigit() and int(name) < len(self.items):
            return self.items[int(name)]
        raise AttributeError(name)

    def __str__(self) -> str:
        return self.text


def to_context(value: Any) -> Any:
    """JSON ``value`` converted for rendering (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return _JsonBool(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, list):
        return _JsonList([to_context(v) for v in value], json.dumps(value, separators=(",", ":")))
    if isinstance(value, dict):
        return {str(k): to_context(v) for k, v in value.items()}
    return value


def event_variables(event: Event) -> dict[str, str]:
    """The predefined variables of ``event`` (``PARTICLE_*`` and their ``SPARK_*`` aliases)."""
    data = event.data or ""
    published = iso8601(event.published_at) or ""
    return {
        "PARTICLE_EVENT_NAME": event.name,
        "PARTICLE_EVENT_VALUE": data,
        "PARTICLE_DEVICE_ID": event.coreid,
        "PARTICLE_PUBLISHED_AT": published,
        "SPARK_EVENT_NAME": event.name,
        "SPARK_EVENT_VALUE": data,
        "SPARK_CORE_ID": event.coreid,
        "SPARK_PUBLISHED_AT": published,
    }


#: JSON nested deeper than this is used as text, not as template variables:
#: converting it (:func:`to_context`) recurses once per level.
MAX_JSON_DEPTH = 64
NO_JSON = object()


def json_value(text: str) -> Any:
    """``text`` parsed as JSON, or :data:`NO_JSON` when it is not JSON or nests too deeply."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return NO_JSON
    level = [value]
    for _ in range(MAX_JSON_DEPTH):
        level = [child for item in level if isinstance(item, dict | list)
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return value
    return NO_JSON


def json_object(text: str | None) -> dict | None:
    """``text`` parsed as JSON when it is an object (not too deep), else ``None``."""
    if not text or text.lstrip()[:1] != "{":
        return None
    value = json_value(text)
    return value if isinstance(value, dict) else None


def event_context(event: Event) -> dict:
    """Variables for templates rendered against ``event``: JSON data members,
    then the predefined variables (which win over a member of the same name)."""
    members = json_object(event.data)
    context = to_context(members) if members is not None else {}
    context.update(event_variables(event))
    return context


_RENDERER = pystache.Renderer(
    escape=lambda text: html.escape(text, quote=True),
    partials={},
    missing_tags="ignore",
)


#: Templates up to this many characters are parsed once and kept (at most
#: 2048 of them): a cache of 64 KiB bodies would let a few users pin memory.
CACHED_TEMPLATE = 2048


@lru_cache(maxsize=2048)
def _cached(template: str) -> ParsedTemplate:
    return pystache.parse(template)


def _parsed(template: str) -> ParsedTemplate:
    if len(template) <= CACHED_TEMPLATE:
        return _cached(template)
    return pystache.parse(template)


def render(template: str, context: dict) -> str:
    """``template`` rendered against ``context``.

    :raises TemplateError: for a malformed template (unclosed section...).
    """
    if "{{" not in template:
        return template
    try:
        return _RENDERER.render(_parsed(template), context)
    except Exception as error:  # pystache raises ParsingError, KeyError, TypeError...
        raise TemplateError(f"template error: {error}") from error


def render_tree(value: Any, context: dict) -> Any:
    """Render the string keys and leaves of a JSON value; other leaves are kept."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, dict):
        return {render(str(k), context): render_tree(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, context) for v in value]
    return value
