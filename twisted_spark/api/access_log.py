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

The line is twisted.web's combined log format, character for character
(:func:`redacting_log_formatter`), built without its per-field ``repr``
escaping when a field is plain printable ASCII (as nearly all are): a line
is written for every request.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, unquote_to_bytes

from twisted.internet.address import IPv4Address, IPv6Address
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


#: Bytes that the combined format writes as they are: printable ASCII but ``"`` and ``\\``.
_PLAIN = re.compile(rb'[ !#-\[\]-~]*')


def escape(value: bytes | str) -> str:
    """``value`` as the combined log format writes a field: like ``repr`` inside double quotes."""
    if isinstance(value, str):
        value = value.encode("ascii")
    if _PLAIN.fullmatch(value):
        return value.decode("ascii")
    quoted = repr(value)[1:]  # drop the b; Python picks the quote character
    if quoted.startswith("'"):
        return quoted[1:-1].replace('"', '\\"').replace("\\'", "'")
    return quoted[1:-1]


@provider(IAccessLogFormatter)
def redacting_log_formatter(timestamp, request) -> str:
    """The combined log format, with access tokens redacted from the URI and Referer."""
    client = request.getClientAddress()
    ip = client.host if isinstance(client, IPv4Address | IPv6Address) else "-"
    referrer = request.getHeader(b"referer")
    agent = request.getHeader(b"user-agent")
    method, uri = escape(request.method), escape(redact(request.uri))
    referrer = escape(_redact_referrer(referrer)) if referrer else "-"
    agent = escape(agent) if agent else "-"
    return (f'"{escape(ip)}" - - {timestamp} "{method} {uri} {escape(request.clientproto)}" '
            f'{request.code:d} {request.sentLength or "-"} "{referrer}" "{agent}"')
