"""Global rules (API.md §1, §7): CORS, preflight, unknown routes, body limits and
parsing, /healthz and /metrics."""

from __future__ import annotations

import pytest
import pytest_twisted
from api_fakes import Harness, assert_error, device_id, multipart

from twisted_spark.api.bodies import check_size, parse_body


@pytest.mark.parametrize("path", ["/v1/devices", "/v1/devices/abc/temp", "/oauth/token", "/", "/x"])
@pytest_twisted.ensureDeferred
async def test_preflight_answers_204_without_token(path):
    h = Harness()
    r = await h.call("OPTIONS", path, headers={"Access-Control-Request-Method": "POST"})
    assert r.status == 204 and r.body == b""
    assert r.header(b"access-control-allow-origin") == b"*"
    assert r.header(b"access-control-allow-methods") == b"GET, POST, PUT, DELETE, OPTIONS"
    assert r.header(b"access-control-allow-headers") == (
        b"X-Requested-With, Content-Type, Accept, Authorization"
    )


@pytest_twisted.ensureDeferred
async def test_every_response_carries_the_configured_cors_origin():
    h = Harness(cors_origin="https://app.example")
    token = await h.user("alice")
    responses = [
        await h.call("GET", "/v1/user", token=token),  # 200
        await h.call("GET", "/v1/user"),  # 401
        await h.call("GET", "/nowhere"),  # 404
        await h.call("GET", "/healthz"),
        await h.call(
            "POST",
            "/v1/devices",
            token=token,
            data=b"{",
            headers={"Content-Type": "application/json"},
        ),  # 400
    ]
    for r in responses:
        assert r.header(b"access-control-allow-origin") == b"https://app.example", r.status


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/nowhere"),
        ("GET", "/v2/devices"),
        ("POST", "/v1/user"),
        ("PATCH", "/v1/devices"),
        ("GET", "/v1/devices/a/b/c/d"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_unknown_route_is_404_json(method, path):
    h = Harness()
    r = await h.call(method, path)
    assert_error(r, 404)
    assert r.header(b"content-type").startswith(b"application/json")


@pytest_twisted.ensureDeferred
async def test_body_over_limit_is_413_before_parsing():
    h = Harness(max_body_size=64)
    token = await h.user("alice")
    r = await h.call("POST", "/v1/devices", token=token, form={"id": "x" * 100})
    assert_error(r, 413)
    # malformed JSON over the limit is still 413: the size is checked first
    r = await h.call(
        "POST", "/v1/users", data=b"{" * 100, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 413)


@pytest_twisted.ensureDeferred
async def test_413_happens_even_with_token_in_body_and_no_content_length_lie():
    h = Harness(max_body_size=10)
    r = await h.call("POST", "/oauth/token", data=b"grant_type=password&x=" + b"y" * 20)
    assert_error(r, 413)


@pytest.mark.parametrize("data", [b"{", b"[1,2]", b'"text"', b"\xff\xfe"])
@pytest_twisted.ensureDeferred
async def test_malformed_json_is_400(data):
    h = Harness()
    token = await h.user("alice")
    r = await h.call(
        "POST", "/v1/devices", token=token, data=data, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_request")


@pytest_twisted.ensureDeferred
async def test_multipart_fields_and_token_in_query():
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="kettle")
    r = await h.call(
        "PUT", f"/v1/devices/kettle?access_token={token}", form={"name": "pot"}, files={}
    )
    assert r.status == 200 and r.json["name"] == "pot"


@pytest_twisted.ensureDeferred
async def test_broken_multipart_is_400():
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice")
    r = await h.call(
        "PUT",
        f"/v1/devices/{device_id(1)}",
        token=token,
        data=b"garbage",
        headers={"Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert_error(r, 400)


def test_size_is_checked_from_content_length_before_parsing():
    """What the route decorator does with a body: check_size, then parse_body."""
    from io import BytesIO

    from twisted.web.test.requesthelper import DummyRequest

    request = DummyRequest([b""])
    request.method = b"POST"
    request.requestHeaders.setRawHeaders(b"content-length", [b"999999"])
    request.content = BytesIO(b"tiny")
    with pytest.raises(Exception) as info:
        check_size(request, 1000)
    assert info.value.status == 413
    body, ctype = multipart({"a": "1"}, {"f": ("x.bin", b"\x00\x01")})
    request = DummyRequest([b""])
    request.method = b"PUT"
    request.requestHeaders.setRawHeaders(b"content-type", [ctype.encode()])
    request.content = BytesIO(body)
    check_size(request, 1000)
    parsed = parse_body(request)
    assert parsed.fields == {"a": "1"}
    assert parsed.files["f"].data == b"\x00\x01" and parsed.files["f"].filename == "x.bin"


@pytest_twisted.ensureDeferred
async def test_healthz_counts_online_devices():
    h = Harness()
    assert (await h.call("GET", "/healthz")).json == {"ok": True, "devices_online": 0}
    await h.device(1)
    await h.device(2)
    await h.device(3, online=False)
    assert (await h.call("GET", "/healthz")).json == {"ok": True, "devices_online": 2}


@pytest_twisted.ensureDeferred
async def test_metrics_prometheus_text_counts_requests_by_route_and_status():
    h = Harness()
    await h.device(1)
    await h.call("GET", "/v1/devices")
    await h.call("GET", "/v1/devices")
    await h.call("GET", "/nowhere")
    r = await h.call("GET", "/metrics")
    assert r.status == 200 and r.header(b"content-type").startswith(b"text/plain")
    text = r.body.decode()
    assert "spark_devices_online 1.0" in text
    assert 'spark_api_requests_total{method="GET",route="/v1/devices",status="401"} 2.0' in text
    assert 'spark_api_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert ('spark_api_request_duration_seconds_count{method="GET",route="/v1/devices",'
            'status_class="4xx"} 2.0') in text


@pytest_twisted.ensureDeferred
async def test_metrics_can_be_turned_off():
    h = Harness(metrics=False)
    assert_error(await h.call("GET", "/metrics"), 404)


@pytest_twisted.ensureDeferred
async def test_handler_crash_is_a_json_500_not_a_crash():
    h = Harness()
    token = await h.user("alice")

    def broken(*a, **kw):
        raise RuntimeError("store exploded")

    h.store.list_devices = broken
    r = await h.call("GET", "/v1/devices", token=token)
    assert_error(r, 500, "server_error")
    assert "exploded" not in r.body.decode()  # no internals leak
    assert (await h.call("GET", "/healthz")).status == 200  # the server goes on


@pytest_twisted.ensureDeferred
async def test_add_routes_lets_another_module_register_routes():
    h = Harness()

    def register(api):
        @api.route("/v1/devices/events", ["POST"])
        async def publish(call):
            return {"ok": True, "by": call.caller.username, "name": call.body.text("name")}

    h.api.add_routes(register)
    token = await h.user("alice")
    r = await h.call("POST", "/v1/devices/events", token=token, form={"name": "x"})
    assert r.json == {"ok": True, "by": "alice", "name": "x"}
    assert_error(await h.call("POST", "/v1/devices/events", form={"name": "x"}), 401)


def test_request_discards_a_body_over_its_plan_as_it_arrives():
    from twisted.web.test.requesthelper import DummyChannel

    from twisted_spark.api.site import BodyPlan, request_factory

    def content(request):
        request.content.seek(0)
        return request.content.read()

    factory = request_factory(lambda method, uri, headers: BodyPlan(limit=10, keep=10))
    by_length = factory(DummyChannel())
    by_length.gotLength(10_000_000)
    by_length.handleContentChunk(b"x" * 1000)
    assert by_length.body_too_large and content(by_length) == b""
    by_bytes = factory(DummyChannel())
    by_bytes.gotLength(None)  # chunked: no length announced
    by_bytes.handleContentChunk(b"x" * 8)
    assert not by_bytes.body_too_large
    by_bytes.handleContentChunk(b"x" * 8)
    assert by_bytes.body_too_large and content(by_bytes) == b""
    small = factory(DummyChannel())
    small.gotLength(4)
    small.handleContentChunk(b"abcd")
    assert not small.body_too_large and content(small) == b"abcd"
    # Within the route's limit but more than is worth keeping: dropped, not "too large".
    factory = request_factory(lambda method, uri, headers: BodyPlan(limit=10, keep=4))
    dropped = factory(DummyChannel())
    dropped.gotLength(None)
    dropped.handleContentChunk(b"abcdef")
    assert dropped.body_dropped and not dropped.body_too_large and content(dropped) == b""
    dropped.handleContentChunk(b"ghijk")  # and then over the route's limit too
    assert dropped.body_too_large and content(dropped) == b""
