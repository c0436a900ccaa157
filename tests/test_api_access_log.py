"""Access tokens never reach the access log."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.web.test.requesthelper import DummyRequest

from twisted_spark.api.access_log import escape, redact, redacting_log_formatter

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


@pytest.mark.parametrize("uri", [
    b"/v1/events?access%5Ftoken=" + TOKEN,
    b"/v1/events?%61ccess_token=" + TOKEN,
    b"/v1/events?%61ccess%5f%74oken=" + TOKEN + b"&x=1",
    b"/v1/access%5Ftokens/" + TOKEN,
    b"/v1/%61ccess_tokens/" + TOKEN,
    b"/v1/access_tokens%2F" + TOKEN,
    b"/v1/access_tokens/%30" + TOKEN[1:],
    b"//v1//access_tokens//" + TOKEN,
])
def test_redact_every_spelling_the_server_accepts(uri):
    """The server percent-decodes query names and the path: so must the redaction."""
    redacted = redact(uri)
    assert TOKEN not in redacted and TOKEN[1:] not in redacted
    assert b"[redacted]" in redacted


@pytest.mark.parametrize("uri", [
    b"/v1/events?access%5Ftoken=" + TOKEN,
    b"/v1/%61ccess_tokens/" + TOKEN,
])
def test_the_server_reads_these_spellings_as_tokens(uri):
    """The spellings above are real carriers: the API's own parsing finds the token."""
    from twisted_spark.api.app import SparkAPI
    from twisted_spark.api.auth import uri_query_args
    from twisted_spark.store import MemoryStore

    if b"?" in uri:
        assert uri_query_args(uri)["access_token"] == TOKEN.decode()
    else:
        api = SparkAPI(MemoryStore(), registry=None)
        policy = api.policy_for(b"DELETE", uri)
        assert policy is api.policies["/v1/access_tokens/<token> DELETE"]


def test_log_line_redacts_a_decoded_spelling_and_the_referrer():
    request = DummyRequest([b""])
    request.uri = b"/v1/access%5Ftokens/" + TOKEN
    request.method = b"DELETE"
    request.clientproto = b"HTTP/1.1"
    request.code = 200
    request.sentLength = 11
    request.requestHeaders.setRawHeaders(
        b"referer", [b"https://app.example/page?%61ccess_token=" + TOKEN])
    line = redacting_log_formatter("[ts]", request)
    assert TOKEN.decode() not in line
    assert '"DELETE /v1/access_tokens/[redacted] HTTP/1.1" 200' in line
    assert '"https://app.example/page?%61ccess_token=[redacted]"' in line


def _request(uri, agent=None, referrer=None):
    request = DummyRequest([b""])
    request.uri, request.method, request.clientproto = uri, b"GET", b"HTTP/1.1"
    request.code, request.sentLength = 404, 0
    if agent is not None:
        request.requestHeaders.setRawHeaders(b"user-agent", [agent])
    if referrer is not None:
        request.requestHeaders.setRawHeaders(b"referer", [referrer])
    return request


@pytest.mark.parametrize("uri, agent, referrer", [
    (b"/v1/devices", None, None),
    (b'/v1/devices/"quoted"', b"curl/8.5.0", b"http://example/page"),
    (b"/v1/devices/caf\xc3\xa9\\x", b"agent 'with' \"quotes\"\t\x00", b"\xff"),
])
def test_log_line_is_twisted_combined_format_when_there_is_no_token(uri, agent, referrer):
    from twisted.web.http import combinedLogFormatter

    request = _request(uri, agent, referrer)
    assert redacting_log_formatter("[ts]", request) == combinedLogFormatter("[ts]", request)


@given(st.binary(max_size=40) | st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_escape_writes_fields_as_twisted_does(value):
    from twisted.web.http import _escape

    assert escape(value) == _escape(value)
