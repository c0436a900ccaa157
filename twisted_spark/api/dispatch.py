# -*- test-case-name: tests.test_api_dispatch,tests.test_api_http,tests.test_api_matrix -*-
"""Run each request's Klein route without leaving a reference cycle behind.

Klein's own resource (``KleinResource.render``) keeps its error path in a
closure that refers to itself and to the request.  Every request's objects
(its headers, Klein's adapter, the URL map adapter: about 40 containers)
then wait for the cyclic garbage collector instead of being freed when the
response is done.  Young collections came every ~180 calls, and took
several milliseconds each once the server held 10 000 devices.

:class:`RouteResource` does the part of Klein's job the API uses: bind the
URL map to the request, match, run the endpoint, hand a failure to the
API's one error handler, write the result, and cancel the endpoint when the
client leaves.  It uses bound methods and Deferred arguments, no closures,
so reference counting frees a request once it is answered.  The routes are
still declared on the Klein app.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

log = Logger()


class RouteResource(Resource):
    """Serve the routes of a Klein ``app``; failures go to ``handle_error(request, failure)``.

    ``handle_error`` answers every ``Exception`` (werkzeug's NotFound,
    MethodNotAllowed and RequestRedirect included) with the bytes to write.
    """

    isLeaf = True

    def __init__(self, app, handle_error) -> None:
        super().__init__()
        self._app = app
        self._handle_error = handle_error

    def render(self, request):
        d = defer.maybeDeferred(self._run_route, request)
        d.addErrback(self._failed, request)
        d.addCallback(self._respond, request)
        d.addErrback(self._not_written, request)
        return NOT_DONE_YET

    def _run_route(self, request):
        """Match the request (UTF-8 path and Host: checked before) and run its endpoint."""
        rule, arguments = self._bind(request).match(return_rule=True)
        d = defer.maybeDeferred(
            self._app.execute_endpoint, rule.endpoint, request, **arguments)
        request.notifyFinish().addErrback(_cancel, d)  # the client left: stop waiting
        return d

    def _bind(self, request):
        """The app's URL map bound to the request as Klein binds it (name, port, scheme)."""
        secure = bool(request.isSecure())
        host = request.getHost()
        port = getattr(host, "port", 0)
        server_name = request.getRequestHostname()
        if (secure, port) not in ((True, 443), (False, 80), (False, 0), (True, 0)):
            server_name = b"%s:%d" % (server_name, port)
        return self._app.url_map.bind(
            server_name.decode("utf-8"),
            _joined(request.prepath).decode("utf-8"),
            path_info=_joined(request.postpath).decode("utf-8"),
            default_method=request.method.decode("utf-8"),
            url_scheme="https" if secure else "http",
        )

    def _failed(self, failure, request):
        if _answered(request):
            if not failure.check(defer.CancelledError):
                log.failure("Error after the response to {uri} was over", failure,
                            uri=request.uri)
            return None
        if not failure.check(Exception):
            request.processingFailed(failure)
            return None
        d = defer.maybeDeferred(self._handle_error, request, failure)
        d.addErrback(self._handler_failed, request)
        return d

    def _handler_failed(self, failure, request):
        if not _answered(request):
            request.processingFailed(failure)
        return None

    def _respond(self, body, request):
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, bytes) and not _answered(request):
            request.write(body)
        if not _answered(request):
            request.finish()

    def _not_written(self, failure, request):
        log.failure("Could not write the response to {uri}", failure, uri=request.uri)


def _cancel(_failure, d) -> None:
    d.cancel()


def _answered(request) -> bool:
    """The response is over: finished, or its connection lost."""
    return bool(request.finished or getattr(request, "_disconnected", False))


def _joined(segments) -> bytes:
    if not segments:
        return b""
    joined = b"/".join(segments)
    return joined if joined.startswith(b"/") else b"/" + joined
