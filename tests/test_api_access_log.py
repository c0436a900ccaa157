"""Access tokens never reach the access log."""

import pytest
from twisted.web.test.requesthelper import DummyRequest

from twisted_spark.api.access_log import redact, redacting_log_formatter

TOKEN = b"0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("uri, expected", [
    (b"/v1/events?access_token=" + TOKEN, b"/v1/events?access_token=[redacted]"),
    (b"/v1/devices?x=1&access_token=" + TOKEN + b"&y=2",
     b"/v1/devices?x=1&access_token=[redacted]&y=2"),
    (b"/v1/access_tokens/" + TOKEN, b"/v1/access_tokens/[redacted]"),
    (b"/v1/access_tokens/" + TOKEN + b"?access_token=" + TOKEN,
     b"/v1/access_tokens/[redacted]?access_token=[redacted]"),
    (b"/v1/access_tokens/current", b"/v1/access_tokens/current"),
    (b"/v1/devices/53ff6f065067544816300187/temp", b"/v1/devices/53ff6f065067544816300187/temp"),
])
def test_redact(uri, expected):
    assert redact(uri) == expected


def test_log_line_has_no_token():
    request = DummyRequest([b"v1", b"events"])
    request.uri = b"/v1/events/temp?access_token=" + TOKEN
    request.method = b"GET"
    request.clientproto = b"HTTP/1.1"
    request.code = 200
    request.sentLength = 12
    line = redacting_log_formatter("[ts]", request)
    assert TOKEN.decode() not in line
    assert '"GET /v1/events/temp?access_token=[redacted] HTTP/1.1" 200' in line
