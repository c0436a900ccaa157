"""The REST API as one Klein app per :class:`SparkAPI` instance.

Every route is declared with :meth:`SparkAPI.route`, which does, in order:
CORS header, body size check and parsing, authentication (``auth=``), the
handler, JSON rendering.  Failures of any step go to the single error handler
of :mod:`twisted_spark.api.errors`.  Route modules (accounts, devices, and
later events/webhooks/firmware) each have a ``register(api)`` function;
:meth:`SparkAPI.add_routes` lets a later module add its own.
"""

from __future__ import annotations

from klein import Klein
from twisted.web.resource import Resource

from twisted_spark import passwords
from twisted_spark.api import accounts, console, devices, events, ops
from twisted_spark.api.auth import Authenticator
from twisted_spark.api.bodies import Body, limited_request_factory, read_body
from twisted_spark.api.context import Call, Reply
from twisted_spark.api.errors import install_error_handler, json_bytes, set_status
from twisted_spark.api.metrics import Metrics
from twisted_spark.api.tokens import LoginThrottle
from twisted_spark.config import Settings
from twisted_spark.events.sse import EventStream, StreamRegistry

#: Methods whose body is read (and may carry the token).
BODY_METHODS = {b"POST", b"PUT", b"DELETE", b"PATCH"}


class SparkAPI:
    """The REST API of API.md §1–4 and §7.

    :param store: an :class:`~twisted_spark.interfaces.IStore`.
    :param registry: an :class:`~twisted_spark.interfaces.IDeviceRegistry`.
    :param settings: :class:`~twisted_spark.config.Settings`.
    :param clock: ``IReactorTime`` for expiry, throttling and request timeouts.
    :param bus: optional :class:`~twisted_spark.interfaces.IEventBus` (events issue).
    :param firmware: optional flasher hook (firmware issue); see
        :func:`twisted_spark.api.devices.flash`.
    :param reactor: the reactor whose thread pool hashes passwords
        (defaults to the global reactor, looked up lazily).
    """

    def __init__(
        self, store, registry, settings=None, clock=None, bus=None, *, firmware=None, reactor=None
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.store = store
        self.registry = registry
        self.settings = settings or Settings()
        self.clock = clock
        self.bus = bus
        self.firmware = firmware
        self.metrics = Metrics()
        self.metrics.describe("spark_api_requests_total", "API requests by route and status")
        self.metrics.gauge(
            "spark_devices_online", "Devices connected now", lambda: len(registry.online_ids())
        )
        self.throttle = LoginThrottle(clock, self.settings.login_failures_per_minute)
        self.auth = Authenticator(
            store,
            clock,
            verify_password=lambda pw, h: passwords.verify_password_async(pw, h, reactor),
            hash_password=lambda pw: passwords.hash_password_async(pw, reactor),
        )
        #: ``callback(token_string)`` run when a token is deleted (SSE streams close).
        self.token_revoked_observers: list = []
        self.app = Klein()
        install_error_handler(self.app, self.settings.cors_origin)
        #: Open event streams (:class:`~twisted_spark.events.sse.StreamRegistry`).
        self.streams = None
        if bus is not None:
            self.streams = StreamRegistry.from_settings(bus, clock, self.settings)
            self.token_revoked_observers.append(self.streams.close_streams_for_token)
            self.metrics.gauge("spark_sse_streams", "Event streams open now",
                               lambda: len(self.streams.streams()))
            self.metrics.gauge("spark_events_published", "Events published since start",
                               lambda: bus.published)
        # Event routes come before the device routes: /v1/devices/events must not be
        # taken for a device called "events".
        routes = (accounts, events, devices, ops) if bus is not None else (accounts, devices, ops)
        for module in routes:
            self.add_routes(module.register)
        if self.settings.console:
            self.add_routes(console.register)

    # -- composition -----------------------------------------------------------

    def add_routes(self, register) -> None:
        """Let ``register(api)`` declare routes with :meth:`route`."""
        register(self)

    def resource(self):
        """The ``IResource`` to serve (wrap it in a ``twisted.web.server.Site``)."""
        return _Counted(self.app.resource(), self.metrics)

    @property
    def request_factory(self):
        """``Site(api.resource(), requestFactory=api.request_factory)`` drops bodies
        over the largest limit as they arrive instead of buffering them."""
        biggest = max(self.settings.max_body_size, self.settings.max_firmware_size)
        return limited_request_factory(biggest)

    def site(self):
        """A ``twisted.web.server.Site`` serving this API with the body limit applied."""
        from twisted.web.server import Site

        from twisted_spark.api.access_log import redacting_log_formatter

        site = Site(self.resource(), requestFactory=self.request_factory,
                    logFormatter=redacting_log_formatter)
        site.displayTracebacks = False
        return site

    def token_revoked(self, token: str) -> None:
        for observer in list(self.token_revoked_observers):
            try:
                observer(token)
            except Exception:
                from twisted.logger import Logger

                Logger().failure("token_revoked observer {o!r} failed", o=observer)

    def with_timeout(self, d):
        """Bound a device Deferred by the request timeout (→ 408 "Timed out.")."""
        return d.addTimeout(self.settings.request_timeout, self.clock)

    # -- the one route decorator ----------------------------------------------

    def route(self, path, methods, auth="token", body_limit=None):
        """Declare ``handler(call, **path_args)`` (``async``) for ``path``.

        :param auth: ``"token"`` (bearer required), ``"optional"`` (resolved if
            sent), or ``None`` (the handler authenticates itself, e.g. Basic).
        :param body_limit: bytes allowed in the body (default ``max_body_size``).
        """
        if auth not in ("token", "optional", None):
            raise ValueError(f"unknown auth mode {auth!r}")
        label = path

        def deco(handler):
            async def endpoint(request, **kwargs):
                request.spark_route = label
                request.setHeader(
                    b"access-control-allow-origin", self.settings.cors_origin.encode()
                )
                body = Body()
                if request.method in BODY_METHODS:
                    body = read_body(request, body_limit or self.settings.max_body_size)
                caller = None
                if auth == "token":
                    caller = await self.auth.caller(request, body)
                elif auth == "optional":
                    caller = await self.auth.optional_caller(request, body)
                result = await handler(Call(self, request, body, caller), **kwargs)
                if isinstance(result, EventStream):
                    return None  # the stream wrote and finished the response itself
                return render(request, result)

            endpoint.__name__ = handler.__name__
            self.app.route(path, methods=list(methods), endpoint=f"{path} {'/'.join(methods)}")(
                endpoint
            )
            return handler

        return deco


def render(request, result) -> bytes:
    """Write ``result`` (dict/list → JSON, or a :class:`Reply`)."""
    if not isinstance(result, Reply):
        result = Reply(result)
    set_status(request, result.status)
    request.setHeader(b"content-type", result.content_type.encode())
    request.setHeader(b"cache-control", b"no-store")
    for name, value in result.headers.items():
        request.setHeader(name.encode(), str(value).encode())
    if result.body is None or request.method == b"HEAD":
        return b""
    if isinstance(result.body, bytes):
        return result.body
    if isinstance(result.body, str) and not result.content_type.startswith("application/json"):
        return result.body.encode("utf-8")
    return json_bytes(result.body)


class _Counted(Resource):
    """Wraps the Klein resource to count every response by route and status."""

    isLeaf = True

    def __init__(self, inner, metrics):
        super().__init__()
        self._inner = inner
        self._metrics = metrics

    def render(self, request):
        request.notifyFinish().addBoth(self._count, request)
        return self._inner.render(request)

    def _count(self, _result, request):
        self._metrics.inc(
            "spark_api_requests_total",
            route=getattr(request, "spark_route", "unmatched"),
            method=request.method.decode("latin-1"),
            status=request.code,
        )


__all__ = ["SparkAPI", "render"]
