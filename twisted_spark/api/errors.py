# -*- test-case-name: tests.test_api_http,tests.test_firmware_updater -*-
"""One JSON error body for every failure, and one mapping from exceptions to it.

Handlers raise :class:`ApiError` (or let a domain error from
:mod:`twisted_spark.errors` propagate); :func:`install_error_handler`
registers the single Klein error handler that turns any failure into
``{"ok": false, "error": ..., "error_description": ...}`` with the status
API.md §1 gives it.  Nothing else in the API writes an error response.
"""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from twisted_spark import errors as domain
from twisted_spark.api.access_log import redact

log = Logger()


class ApiError(Exception):
    """An HTTP error with its JSON body.

    :param status: HTTP status code.
    :param error: the short ``error`` string.
    :param description: the ``error_description`` sentence (defaults to ``error``).
    :param errors: the optional ``errors`` list some routes carry.
    :param extra: more keys merged into the body.
    :param headers: extra response headers (``{name: value}``).
    """

    def __init__(self, status, error, description=None, errors=None, extra=None, headers=None):
        super().__init__(status, error, description)
        self.status = status
        self.error = error
        self.description = description or error
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict:
        body = {"ok": False, "error": self.error, "error_description": self.description}
        if self.errors is not None:
            body["errors"] = list(self.errors)
        body.update(self.extra)
        return body


def bad_request(description, errors=None, error="invalid_request") -> ApiError:
    return ApiError(400, error, description, errors=errors)


def target_error(request) -> ApiError | None:
    """A 400 for a request target Klein cannot route, else None.

    A path or Host that is not UTF-8, or a Host that is no host name: Klein
    binds werkzeug's URL map to the Host (IDNA-encoded) before any handler
    runs, and werkzeug's ``BadHost`` would escape it as a 500.
    """
    try:
        b"/".join(request.postpath).decode("utf-8")
        host = request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return bad_request("The URL or Host is not UTF-8.")
    try:
        host.partition(":")[0].encode("idna")
    except UnicodeError:
        return bad_request("The Host header is not a host name.")
    return None


def forbidden(errors=None) -> ApiError:
    """403 for a device the caller may not use, or that does not exist."""
    return ApiError(
        403,
        "Permission Denied",
        "I didn't recognize that device name or ID, or it is not yours.",
        errors=errors,
    )


#: domain exception -> (status, error, error_description)
DOMAIN_ERRORS = {
    domain.DeviceNotConnected: (
        404,
        "Device is not connected",
        "The device is not connected to the cloud.",
    ),
    domain.DeviceTimeout: (408, "Timed out.", "The device did not answer in time."),
    defer.TimeoutError: (408, "Timed out.", "The device did not answer in time."),
    domain.DeviceBusy: (409, "Device is being updated", "The device is being updated; try later."),
    domain.UnknownFunction: (400, "Function not found", "The device has no such function."),
    domain.UnknownVariable: (400, "Variable not found", "The device has no such variable."),
    domain.ArgumentTooLong: (400, "Argument too long", "The function argument is too long."),
    domain.DeviceRequestFailed: (400, "Device request failed", "The device refused the request."),
    domain.DuplicateUser: (400, "Bad request", "That username is already taken"),
    domain.StoreUnavailable: (
        503,
        "service_unavailable",
        "The server cannot reach its database right now; try again in a few seconds.",
    ),
}

#: Seconds a client is told to wait (``Retry-After``) when the database is down.
RETRY_AFTER = 5


def firmware_error(exc: domain.FirmwareError) -> ApiError:
    """The answer to a failed flash (API.md §4): the sentence, and the stored
    image's id as ``firmware_binary_id`` once there is one."""
    sentence = str(exc)
    extra = {} if exc.image_id is None else {"firmware_binary_id": exc.image_id}
    if isinstance(exc, domain.UpdateFailed):
        status = 408 if exc.timeout else 500
        return ApiError(status, "Update failed", sentence, errors=[sentence], extra=extra)
    if isinstance(exc, domain.CompileFailed):
        return ApiError(400, "Compile error", sentence, errors=["Compile error"],
                        extra={**extra, "output": exc.output})
    status, error = {
        domain.EmptyFirmware: (400, "Empty firmware"),
        domain.NoCompiler: (400, "Not Implemented"),
        domain.BadFileName: (400, "invalid_request"),
        domain.FirmwareDeviceOffline: (404, "Device is not connected"),
        domain.FirmwareTooLarge: (400, "Firmware too large"),
    }.get(type(exc), (500, "Update failed"))
    return ApiError(status, error, sentence, errors=[sentence], extra=extra)


def api_error_for(exc: BaseException) -> ApiError:
    """The :class:`ApiError` for any exception (500 for the unexpected)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, domain.FirmwareError):
        return firmware_error(exc)
    for kind, (status, error, description) in DOMAIN_ERRORS.items():
        if isinstance(exc, kind):
            errors = [description] if kind is domain.DuplicateUser else None
            headers = {"Retry-After": RETRY_AFTER} if status == 503 else None
            return ApiError(status, error, description, errors=errors, headers=headers)
    if isinstance(exc, HTTPException):
        # Unknown route or unknown method on a known route: API.md §1 says 404.
        return ApiError(404, "Not Found", "There is no such API route.")
    return ApiError(500, "server_error", "The server failed to handle this request.")


#: Reason phrases twisted.web does not know (it would send "Unknown Status").
REASON_PHRASES = {429: b"Too Many Requests"}


def set_status(request, status: int) -> None:
    """``request.setResponseCode`` with a reason phrase for every status we send."""
    request.setResponseCode(status, REASON_PHRASES.get(status))


def json_bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def write_error(request, api_error: ApiError, cors_origin: str) -> bytes:
    """Set status and headers for ``api_error`` and return the body bytes."""
    set_status(request, api_error.status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"access-control-allow-origin", cors_origin.encode())
    for name, value in api_error.headers.items():
        request.setHeader(name.encode(), str(value).encode())
    return sized(request, json_bytes(api_error.body()))


def sized(request, body: bytes) -> bytes:
    """Declare ``body``'s length and return what to write (nothing for HEAD).

    With a ``Content-Length`` twisted.web sends the body as it is; without
    one an HTTP/1.1 response goes out chunked, which costs the server two
    more writes and every client a chunk parser.
    """
    if request.code in _NO_BODY_STATUSES:
        return b""
    request.setHeader(b"content-length", b"%d" % len(body))
    return b"" if request.method == b"HEAD" else body


#: Responses that carry neither a body nor a Content-Length (RFC 9110 §8.6).
_NO_BODY_STATUSES = frozenset({204, 304})


def install_error_handler(app, cors_origin: str):
    """Register the one error handler of the Klein ``app``; return it.

    It is ``handle(request, failure) -> bytes`` for every ``Exception``:
    :class:`~twisted_spark.api.dispatch.RouteResource` calls it directly.
    """

    def handle(request, failure):
        exc = failure.value
        if isinstance(exc, defer.CancelledError):
            return b""  # the client went away; nobody is listening
        if isinstance(exc, RequestRedirect):
            request.setResponseCode(exc.code)
            request.setHeader(b"location", exc.new_url.encode())
            request.setHeader(b"access-control-allow-origin", cors_origin.encode())
            return b""
        api_error = api_error_for(exc)
        if api_error.status >= 500 and not isinstance(exc, (ApiError, domain.SparkError)):
            # A deliberate 500 (e.g. a failed update) was already logged where it arose.
            log.failure("Unhandled error in {method} {uri}", failure,
                        method=request.method.decode("latin-1"),
                        uri=redact(request.uri).decode("latin-1"))
        return write_error(request, api_error, cors_origin)

    app.handle_errors(Exception)(handle)
    return handle
