# -*- test-case-name: tests.test_api_access_log -*-
"""Access log lines without secrets.

Tokens travel in URLs (``?access_token=`` — the only way a browser's
EventSource can send one — and ``DELETE /v1/access_tokens/<token>``); the
standard combined log format would write them to the log for anyone who can
read it.  This formatter writes the same line with the tokens replaced.

Redaction looks at the URI the way the server reads it: query names are
percent-decoded (``?access%5Ftoken=`` is a token carrier too) and the path is
percent-decoded before routing (``/v1/access%5Ftokens/T`` deletes token T), so
every spelling the server would accept as a token is redacted.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, unquote_to_bytes

from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from zope.interface import provider

REDACTED = b"[redacted]"
#: What follows ``access_tokens/`` in a decoded path, unless it is just "current".
_TOKEN_PATH = re.compile(rb"(/access_tokens/+)(?!current/*$).+", re.IGNORECASE)
#: Query separators: ``&`` (what the server splits on), and ``;``/``#`` for good measure.
_QUERY_SEPARATORS = re.compile(rb"([&;#])")


def redact(uri: bytes) -> bytes:
    """``uri`` with every access token replaced by ``[redacted]``."""
    path, mark, query = uri.partition(b"?")
    return _redact_path(path) + mark + (redact_query(query) if mark else b"")


def redact_query(query: bytes) -> bytes:
    """A query string with the value of each field named ``access_token`` (decoded) replaced."""
    pieces = _QUERY_SEPARATORS.split(query)
    for index in range(0, len(pieces), 2):
        name, equals, _value = pieces[index].partition(b"=")
        if equals and _is_token_name(name):
            pieces[index] = name + equals + REDACTED
    return b"".join(pieces)


def _is_token_name(name: bytes) -> bool:
    decoded = unquote_plus(name.decode("latin-1"), encoding="utf-8", errors="replace")
    return decoded.strip().lower() == "access_token"


def _redact_path(path: bytes) -> bytes:
    """The path as sent, or — when it names a token once decoded — decoded and redacted."""
    decoded = unquote_to_bytes(path)  # as twisted.web decodes it before routing
    if _TOKEN_PATH.search(decoded):
        return _TOKEN_PATH.sub(lambda match: match.group(1) + REDACTED, decoded)
    return path


def _redact_referrer(value: bytes) -> bytes:
    """A Referer URL with the tokens of its query redacted (a web app's own URL may hold one)."""
    head, mark, query = value.partition(b"?")
    return head + mark + redact_query(query) if mark else value


class _RedactedRequest:
    """The request as the log formatter sees it: the same, but redacted URI and Referer."""

    def __init__(self, request) -> None:
        self._request = request
        self.uri = redact(request.uri)

    def getHeader(self, name):
        value = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return _redact_referrer(value)
        return value

    def __getattr__(self, name):
        return getattr(self._request, name)


@provider(IAccessLogFormatter)
def redacting_log_formatter(timestamp, request) -> str:
    """The combined log format, with access tokens redacted from the URI and Referer."""
    return combinedLogFormatter(timestamp, _RedactedRequest(request))
