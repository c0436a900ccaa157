"""RouteResource: Klein's routes, answered without a reference cycle per request."""

import gc
import json
import weakref

import pytest
from api_fakes import Harness
from klein import Klein
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from twisted_spark.api.dispatch import RouteResource
from twisted_spark.api.errors import install_error_handler

pytestmark = pytest.mark.usefixtures("clean_reactor")  # no timer or socket left behind


@pytest.fixture
def gc_off():
    """Only reference counting frees objects during the test."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def serve(app, handle_error, request_bytes):
    channel = Site(RouteResource(app, handle_error), timeout=None).buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(request_bytes)
    return channel, transport


def get(path, method=b"GET", host=b"x"):
    return method + b" " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"


def answer(transport):
    """Status line, head and (de-chunked) body of the one response in ``transport``."""
    head, _, body = transport.value().partition(b"\r\n\r\n")
    if b"Transfer-Encoding: chunked" in head:
        chunks = b""
        while body:
            size, _, body = body.partition(b"\r\n")
            length = int(size, 16)
            chunks, body = chunks + body[:length], body[length + 2:]
        body = chunks
    return head.split(b"\r\n")[0], head, body


def test_an_answered_request_is_freed_by_reference_counting(gc_off):
    app, seen = Klein(), []

    @app.route("/v1/things/<name>")
    def thing(request, name):
        seen.append(weakref.ref(request))
        return defer.succeed(json.dumps({"name": name}).encode())

    handler = install_error_handler(app, "*")
    channel, transport = serve(app, handler, get(b"/v1/things/lamp"))
    status, _, body = answer(transport)
    assert status == b"HTTP/1.1 200 OK" and json.loads(body) == {"name": "lamp"}
    assert len(seen) == 1 and seen[0]() is None
    # A failing route too: its failure goes through the error handler.
    transport.clear()
    channel.dataReceived(get(b"/v1/nothing/here"))
    status, _, body = answer(transport)
    assert status == b"HTTP/1.1 404 Not Found" and json.loads(body)["error"] == "Not Found"


def test_the_api_routes_answer_and_free_their_requests(gc_off):
    site = Harness().api.site()
    requests = []
    site.requestFactory = _recording(site.requestFactory, requests)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(get(b"/v1/devices"))
    status, _, body = answer(transport)
    assert status == b"HTTP/1.1 401 Unauthorized"
    assert json.loads(body)["error"] == "invalid_request"
    transport.clear()
    channel.dataReceived(get(b"/v1/devices/", method=b"DELETE"))
    status, head, _ = answer(transport)
    assert status.startswith(b"HTTP/1.1 4")
    assert requests and all(ref() is None for ref in requests)


def _recording(factory, refs):
    def make(*args, **kwargs):
        request = factory(*args, **kwargs)
        refs.append(weakref.ref(request))
        return request

    return make


def test_a_redirect_names_the_host_and_port_as_klein_does():
    app = Klein()

    @app.route("/v1/dir/")
    def directory(request):
        return b"listing"

    handler = install_error_handler(app, "*")
    _, transport = serve(app, handler, get(b"/v1/dir", host=b"example.org:8080"))
    status, head, _ = answer(transport)
    assert status == b"HTTP/1.1 308 Permanent Redirect"
    port = transport.getHost().port  # werkzeug takes the server's port, not the Host's
    location = b"Location: http://example.org:%d/v1/dir/" % port
    assert location in head
    # Klein's own resource answers the same.
    channel = Site(app.resource(), timeout=None).buildProtocol(None)
    klein_transport = StringTransport()
    channel.makeConnection(klein_transport)
    channel.dataReceived(get(b"/v1/dir", host=b"example.org:8080"))
    assert location in answer(klein_transport)[1]


def test_a_failing_error_handler_still_ends_the_request():
    app = Klein()

    @app.route("/boom")
    def boom(request):
        raise RuntimeError("route failed")

    def broken_handler(request, failure):
        raise ValueError("handler failed too")

    _, transport = serve(app, broken_handler, get(b"/boom"))
    status, _, _ = answer(transport)
    assert status == b"HTTP/1.1 500 Internal Server Error"


def test_a_client_that_leaves_cancels_its_endpoint():
    app, cancelled = Klein(), []

    @app.route("/wait")
    def wait(request):
        return defer.Deferred(lambda d: cancelled.append(True))

    handler = install_error_handler(app, "*")
    channel, transport = serve(app, handler, get(b"/wait"))
    assert transport.value() == b"" and cancelled == []
    channel.connectionLost(ConnectionError("client gone"))
    assert cancelled == [True]
