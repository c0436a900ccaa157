"""Hostile bodies (issue 9, items 1 and 10): authentication before parsing,
per-route body limits, and a 400 — never a 500 — for every malformed body."""

from __future__ import annotations

import json
import re

import pytest
import pytest_twisted
from api_fakes import Harness, assert_error, device_id, multipart

from twisted_spark.api import bodies

KIB = 1024
BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def tiny_parts(count: int) -> bytes:
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n'
    return (part * count + f"--{BOUNDARY}--\r\n").encode()


def one_part(headers: str | bytes, payload: bytes = b"x") -> bytes:
    if isinstance(headers, str):
        headers = headers.encode()
    return f"--{BOUNDARY}\r\n".encode() + headers + b"\r\n\r\n" + payload + (
        f"\r\n--{BOUNDARY}--\r\n").encode()


def events_harness(**settings) -> Harness:
    """A Harness whose API has an event bus, so the event routes exist."""
    from treq.testing import StubTreq

    from twisted_spark.api import SparkAPI
    from twisted_spark.events.bus import EventBus

    h = Harness(**settings)
    h.api = SparkAPI(h.store, h.registry, h.settings, clock=h.clock, bus=EventBus())
    h.stub = StubTreq(h.api.resource())
    return h


@pytest.fixture
def parser_calls(monkeypatch):
    """Every call of the multipart parser."""
    calls = []
    real = bodies._parse_multipart

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(bodies, "_parse_multipart", spy)
    return calls


# -- authentication before parsing ------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer " + "0" * 40},  # a well-formed but unknown token
    {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="},
])
@pytest_twisted.ensureDeferred
async def test_multipart_without_valid_token_is_401_and_never_parsed(parser_calls, headers):
    h = Harness()
    await h.device(1, owner="alice", name="x")
    r = await h.call("PUT", "/v1/devices/x", data=tiny_parts(2000),
                     headers={"Content-Type": MULTIPART, **headers})
    assert_error(r, 401)
    assert parser_calls == []


@pytest_twisted.ensureDeferred
async def test_multipart_with_a_valid_token_is_parsed_once(parser_calls):
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="kettle")
    body, ctype = multipart({"name": "pot"}, {})
    r = await h.call("PUT", "/v1/devices/kettle", token=token, data=body,
                     headers={"Content-Type": ctype})
    assert r.status == 200 and r.json["name"] == "pot"
    assert len(parser_calls) == 1


@pytest_twisted.ensureDeferred
async def test_json_without_token_is_401_before_parsing():
    """Even an unparseable JSON body: the caller is refused first."""
    h = Harness()
    r = await h.call("POST", "/v1/devices", data=b"[" * 100_000,
                     headers={"Content-Type": "application/json"})
    assert_error(r, 401)


@pytest_twisted.ensureDeferred
async def test_small_urlencoded_body_still_carries_the_token():
    h = Harness()
    token = await h.user("alice")
    r = await h.call("POST", "/v1/devices", form={"access_token": token, "id": "1" * 24})
    assert r.status == 404  # authenticated: the device is unknown


@pytest_twisted.ensureDeferred
async def test_large_urlencoded_body_is_not_read_for_a_token():
    """Only bodies under the small limit are parsed before the caller is known."""
    h = Harness()
    token = await h.user("alice")
    data = f"access_token={token}&id={'1' * 24}&pad={'p' * 70 * KIB}".encode()
    assert_error(await h.call("POST", "/v1/devices", data=data), 401)
    # The same body with the token in the header is parsed after authentication.
    data = f"id={'1' * 24}&pad={'p' * 70 * KIB}".encode()
    assert (await h.call("POST", "/v1/devices", token=token, data=data)).status == 404


@pytest_twisted.ensureDeferred
async def test_token_in_a_json_body_next_to_a_header_token_is_two_carriers():
    h = Harness()
    token = await h.user("alice")
    r = await h.call("POST", "/v1/devices", token=token,
                     json_body={"access_token": token, "id": "1" * 24})
    assert_error(r, 400, "invalid_request")


# -- per-route limits ---------------------------------------------------------------------


@pytest.mark.parametrize("method, path, auth", [
    ("POST", "/oauth/token", None),
    ("POST", "/v1/users", None),
    ("DELETE", "/v1/access_tokens/" + "a" * 40, None),
    ("POST", "/v1/devices/events", "token"),
    ("DELETE", "/v1/access_tokens/current", "token"),
])
@pytest_twisted.ensureDeferred
async def test_small_routes_refuse_bodies_over_64_kib(method, path, auth):
    h = events_harness()
    token = await h.user("alice") if auth else None
    data = b"grant_type=password&username=a&password=b&pad=" + b"p" * 100 * KIB
    r = await h.call(method, path, token=token, data=data)
    body = assert_error(r, 413)
    assert str(64 * KIB) in body["error_description"]


@pytest_twisted.ensureDeferred
async def test_two_megabytes_to_oauth_token_is_413():
    h = Harness()
    assert_error(await h.call("POST", "/oauth/token", data=b"x" * 2 * 1024 * KIB), 413)


@pytest_twisted.ensureDeferred
async def test_small_limit_follows_a_smaller_max_body_size():
    h = Harness(max_body_size=100)
    assert_error(await h.call("POST", "/oauth/token", data=b"x" * 200), 413)


@pytest_twisted.ensureDeferred
async def test_only_the_flash_route_takes_the_firmware_limit():
    h = Harness(max_body_size=10 * KIB, max_firmware_size=100 * KIB)
    token = await h.user("alice")
    await h.device(1, owner="alice", name="kettle", functions=("brew",))
    upload, ctype = multipart({"file_type": "binary"}, {"file": ("fw.bin", b"\0" * 50 * KIB)})
    r = await h.call("PUT", "/v1/devices/kettle", token=token, data=upload,
                     headers={"Content-Type": ctype})
    assert_error(r, 400, "Not Implemented")  # parsed: flashing is not configured here
    r = await h.call("POST", "/v1/devices/kettle/brew", token=token, data=upload,
                     headers={"Content-Type": ctype})
    assert_error(r, 413)


# -- 400, never 500 -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/oauth/token", "/v1/users"])
@pytest_twisted.ensureDeferred
async def test_deeply_nested_json_is_400_without_a_token(path):
    h = Harness()
    r = await h.call("POST", path, data=b"[" * 60_000,
                     headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_request", "The request body is not valid JSON.")


@pytest_twisted.ensureDeferred
async def test_json_nested_100000_deep_is_400_on_a_token_route():
    h = Harness()
    token = await h.user("alice")
    r = await h.call("POST", "/v1/devices", token=token, data=b'{"a":' * 100_000,
                     headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize("charset", ["no-such-charset", "rot13", "base64", "idna", "undefined"])
@pytest_twisted.ensureDeferred
async def test_multipart_part_in_an_unknown_charset_is_400(charset):
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="kettle")
    data = one_part('Content-Disposition: form-data; name="name"\r\n'
                    f"Content-Type: text/plain; charset={charset}", b"pot")
    r = await h.call("PUT", "/v1/devices/kettle", token=token, data=data,
                     headers={"Content-Type": MULTIPART})
    body = assert_error(r, 400, "invalid_request")
    assert charset in body["error_description"]


@pytest_twisted.ensureDeferred
async def test_multipart_part_in_a_known_charset_is_decoded():
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="kettle")
    data = one_part('Content-Disposition: form-data; name="name"\r\n'
                    "Content-Type: text/plain; charset=utf-16-le", "pot".encode("utf-16-le"))
    r = await h.call("PUT", "/v1/devices/kettle", token=token, data=data,
                     headers={"Content-Type": MULTIPART})
    assert r.status == 200 and r.json["name"] == "pot"


#: What the body parser's 400s say (the handlers' own 400s say something else).
BODY_ERROR = re.compile(r"multipart body|multipart field|not valid JSON|form body")

MALFORMED = [
    # (content type, body)
    ("multipart/form-data", tiny_parts(1)),  # no boundary
    ("multipart/form-data; boundary=", tiny_parts(1)),  # empty boundary
    ("multipart/form-data; boundary=other", tiny_parts(1)),  # wrong boundary
    (MULTIPART, tiny_parts(1)[:-10]),  # cut short
    (MULTIPART, tiny_parts(bodies.MAX_PARTS + 1)),  # too many parts
    (MULTIPART, one_part("Content-Type: text/plain")),  # no Content-Disposition
    (MULTIPART, one_part("Content-Disposition: attachment; name=a")),
    (MULTIPART, one_part(b'Content-Disposition: form-data; name="\xe9\xff"')),  # not UTF-8
    (MULTIPART, one_part('Content-Disposition: form-data; name="a"; x="' + "y" * 5000 + '"')),
    (MULTIPART, one_part("\r\n".join(f"X-H{n}: v" for n in range(20))
                         + '\r\nContent-Disposition: form-data; name="a"')),
    (MULTIPART, one_part('Content-Disposition: form-data; name="a"\r\nContent-Length: x')),
    (MULTIPART, one_part('Content-Disposition: form-data; name="a"',
                         b"v" * (bodies.MAX_PART_FIELD + 1))),  # a huge non-file field
    ("application/json", b"\xff\xfe\xfd"),
    ("application/json", b'{"a": "\xff"}'),
    ("application/json", b'{"a": ' + b"1" * 5000 + b"}"),  # over int's digit limit
    ("application/json", b'{"a": 1} trailing'),
    ("application/x-www-form-urlencoded", b"a=\xff\xfe"),
    ("application/x-www-form-urlencoded", b"&".join([b"a=1"] * (bodies.MAX_FORM_FIELDS + 1))),
]


@pytest.mark.parametrize("ctype, data", MALFORMED)
@pytest_twisted.ensureDeferred
async def test_malformed_bodies_are_400_with_the_json_error_body(ctype, data):
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="kettle")
    r = await h.call("PUT", f"/v1/devices/{device_id(1)}", token=token, data=data,
                     headers={"Content-Type": ctype})
    body = assert_error(r, 400, "invalid_request")
    assert r.header(b"content-type").startswith(b"application/json")
    assert BODY_ERROR.search(body["error_description"]), body  # the parser refused it


@pytest.mark.parametrize("ctype, data", [
    ("application/json", b"[" * 60_000),
    (MULTIPART, tiny_parts(bodies.MAX_PARTS + 1)),
    ("application/x-www-form-urlencoded", b"&".join([b"a=1"] * (bodies.MAX_FORM_FIELDS + 1))),
])
@pytest_twisted.ensureDeferred
async def test_malformed_bodies_are_400_on_routes_without_a_token(ctype, data):
    h = Harness()
    for path in ("/oauth/token", "/v1/users"):
        r = await h.call("POST", path, data=data, headers={"Content-Type": ctype})
        body = assert_error(r, 400, "invalid_request")
        assert BODY_ERROR.search(body["error_description"]), body


def test_multipart_parse_of_a_large_upload_is_fast_enough_to_stay_on_the_reactor():
    """A 4 MiB single-file upload parses in one pass over the buffered bytes
    (no email.parser); correctness here, timing in bench/bench_hostile_http.py."""
    from io import BytesIO

    payload = bytes(range(256)) * (4 * 1024 * 4 - 8)
    data = one_part('Content-Disposition: form-data; name="file"; filename="fw.bin"\r\n'
                    "Content-Type: application/octet-stream", payload)
    body = bodies._parse_multipart(MULTIPART, BytesIO(data))
    upload = body.files["file"]
    assert upload.data == payload and upload.filename == "fw.bin"
    assert upload.content_type == "application/octet-stream"
    assert json.dumps(body.fields) == "{}"
