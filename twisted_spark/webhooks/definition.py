# -*- test-case-name: tests.test_webhooks_definition -*-
"""Validation of ``POST /v1/webhooks`` bodies (API.md §6, "create").

:func:`parse_definition` takes the body's fields (form or JSON) and
returns a :class:`Draft` or raises :class:`InvalidWebhook` listing every
problem found, each a sentence for the 400 body's ``errors``.  Rules:

* ``null`` and ``""`` count as absent; unknown fields (particle-cli's
  ``"_"`` comment, ``mydevices``) are ignored;
* in a form body an object field is JSON text or ``field[key]=value``
  brackets (how ``qs``/``request`` encode objects); a form ``json`` that is
  not an object is a string template;
* the URL's scheme, host and port are literal; a host that is an IP
  literal must be allowed by the :class:`~twisted_spark.webhooks.policy.NetworkPolicy`.

Resolving ``deviceID`` to one of the caller's devices needs the store, so
the API route does it with :attr:`Draft.device`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted_spark.webhooks.policy import NetworkPolicy, ip_literal

MAX_EVENT = 63
MAX_URL = 2048
MAX_NAME = 255
METHODS = ("GET", "POST", "PUT", "DELETE")
#: Fields whose value is an object (in a form body: JSON text or brackets).
OBJECT_FIELDS = ("json", "form", "query", "headers", "auth", "responseTemplate")
_BRACKET = re.compile(r"^([A-Za-z]+)\[([^\]]*)\]$")
_TRUE = ("true", "1")
_FALSE = ("false", "0")


class InvalidWebhook(ValueError):
    """The definition is not valid; ``errors`` lists each problem (→ 400)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors[0])
        self.errors = errors


@dataclass
class Draft:
    """A valid definition, before it has an id, an owner and a resolved device.

    ``device`` is the ``deviceID`` as sent (an id or a device name), or ``None``.
    """

    event: str
    url: str
    request_type: str = "POST"
    device: str | None = None
    no_defaults: bool = False
    reject_unauthorized: bool = True
    definition: dict = field(default_factory=dict)


def _present(fields: dict) -> dict:
    """Fields without ``None``/``""`` values, form brackets folded into objects."""
    out: dict = {}
    for key, value in fields.items():
        if value is None or value == "":
            continue
        match = _BRACKET.match(key) if isinstance(key, str) else None
        if match and match.group(1) in OBJECT_FIELDS:
            base, member = match.groups()
            target = out.setdefault(base, {})
            if isinstance(target, dict):
                target.setdefault(member, value)
            continue
        out.setdefault(key, value)
    return out


def _first(fields: dict, *names: str):
    for name in names:
        if name in fields:
            return fields[name]
    return None


def _object(value, form: bool):
    """A form field's JSON text as an object (other values unchanged)."""
    if form and isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _boolean(value, name: str, default: bool, errors: list[str]) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    errors.append(f"{name} must be true or false.")
    return default


def _scalars(value, name: str, errors: list[str]) -> dict | None:
    """An object of scalars with its values as text (numbers, booleans converted)."""
    if not isinstance(value, dict):
        errors.append(f"{name} must be an object.")
        return None
    out = {}
    for key, item in value.items():
        if item is None:
            continue
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = json.dumps(item)
        elif not isinstance(item, str):
            errors.append(f"{name}.{key} must be a string, number or boolean.")
            continue
        out[str(key)] = item
    return out


def check_url(url, policy: NetworkPolicy, errors: list[str]) -> str | None:
    """The URL if it is acceptable (appends problems to ``errors``)."""
    if not isinstance(url, str):
        errors.append("url must be a string.")
        return None
    if len(url) > MAX_URL:
        errors.append(f"url must be at most {MAX_URL} characters long.")
        return None
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not rest:
        errors.append("url must be an absolute http:// or https:// URL.")
        return None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "{" in authority or "}" in authority:
        errors.append("url must not have a template in its host or port; "
                      "templates may appear in the path and query only.")
        return None
    try:
        parts = urlsplit(f"{scheme.lower()}://{rest}")
        host, port = parts.hostname, parts.port
    except ValueError as error:
        errors.append(f"url is not valid: {error}.")
        return None
    if not host or any(c.isspace() or ord(c) < 0x20 for c in url):
        errors.append("url must name a host and contain no spaces or control characters.")
        return None
    if "@" in authority:
        errors.append("url must not contain credentials; use the auth field.")
        return None
    literal = ip_literal(host)
    if literal is not None and not policy.allows(literal):
        errors.append(f"url host {host} is in a network this server does not send "
                      "webhooks to (see --webhook-allow).")
        return None
    del port  # checked by urlsplit (0-65535)
    return f"{scheme.lower()}://{rest}"


def parse_definition(raw: dict, policy: NetworkPolicy, form: bool = False) -> Draft:
    """A :class:`Draft` from the request fields, or :class:`InvalidWebhook`.

    :param raw: the parsed body's fields.
    :param policy: judges a host that is an IP literal.
    :param form: the body was urlencoded (object fields may be JSON text).
    """
    fields = _present(raw)
    errors: list[str] = []
    event = _first(fields, "event", "eventName")
    if event is None:
        errors.append("event is required.")
    elif not isinstance(event, str):
        errors.append("event must be a string.")
    elif len(event) > MAX_EVENT:
        errors.append(f"event must be at most {MAX_EVENT} characters long.")
    url = fields.get("url")
    if url is None:
        errors.append("url is required.")
    else:
        url = check_url(url, policy, errors)
    method = fields.get("requestType", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        errors.append("requestType must be one of GET, POST, PUT, DELETE.")
        method = "POST"
    device = _first(fields, "deviceID", "deviceId", "deviceid")
    if device is not None and not isinstance(device, str):
        errors.append("deviceID must be a string.")
    definition: dict = {}
    bodies = [name for name in ("json", "form", "body") if name in fields]
    if len(bodies) > 1:
        errors.append(f"Only one of json, form and body may be given (got {', '.join(bodies)}).")
    if "json" in fields:
        value = _object(fields["json"], form)
        if isinstance(value, (dict, str)):
            definition["json"] = value
        else:
            errors.append("json must be an object or a string.")
    for name in ("form", "query", "headers"):
        if name in fields:
            value = _scalars(_object(fields[name], form), name, errors)
            if value is not None:
                definition[name] = value
    for name in ("body", "responseTopic", "errorResponseTopic", "name"):
        if name in fields:
            if isinstance(fields[name], str):
                definition[name] = fields[name]
            else:
                errors.append(f"{name} must be a string.")
    if len(definition.get("name", "")) > MAX_NAME:
        errors.append(f"name must be at most {MAX_NAME} characters long.")
    if "auth" in fields:
        auth = _object(fields["auth"], form)
        if not isinstance(auth, dict):
            errors.append("auth must be an object with username and password.")
        else:
            username = _first(auth, "username", "user")
            password = _first(auth, "password", "pass")
            if not isinstance(username, str) or not username:
                errors.append("auth needs a username.")
            elif password is not None and not isinstance(password, str):
                errors.append("auth.password must be a string.")
            else:
                definition["auth"] = {"username": username, "password": password or ""}
    if "responseTemplate" in fields:
        value = _object(fields["responseTemplate"], form)
        if isinstance(value, (dict, str)):
            definition["responseTemplate"] = value
        else:
            errors.append("responseTemplate must be a string or an object.")
    no_defaults = _boolean(fields.get("noDefaults"), "noDefaults", False, errors)
    reject = _boolean(fields.get("rejectUnauthorized"), "rejectUnauthorized", True, errors)
    if errors or not isinstance(event, str) or url is None:
        raise InvalidWebhook(errors)
    return Draft(event, url, method.upper(), device, no_defaults, reject, definition)
