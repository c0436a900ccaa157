"""Access log lines without secrets.

Tokens travel in URLs (``?access_token=`` — the only way a browser's
EventSource can send one — and ``DELETE /v1/access_tokens/<token>``); the
standard combined log format would write them to the log for anyone who can
read it.  This formatter writes the same line with the tokens replaced.
"""

from __future__ import annotations

import re

from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from zope.interface import provider

_SECRETS = re.compile(rb"(access_token=)[^&#]*|(/access_tokens/)(?!current\b)[^/?#]+")


def redact(uri: bytes) -> bytes:
    """``uri`` with every access token replaced by ``[redacted]``."""
    return _SECRETS.sub(lambda match: (match.group(1) or match.group(2)) + b"[redacted]", uri)


class _RedactedRequest:
    """The request as the log formatter sees it: the same, but a redacted URI."""

    def __init__(self, request) -> None:
        self._request = request
        self.uri = redact(request.uri)

    def __getattr__(self, name):
        return getattr(self._request, name)


@provider(IAccessLogFormatter)
def redacting_log_formatter(timestamp, request) -> str:
    """The combined log format, with access tokens redacted from the URI."""
    return combinedLogFormatter(timestamp, _RedactedRequest(request))
