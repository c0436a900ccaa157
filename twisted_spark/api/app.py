# -*- test-case-name: tests.test_api_http,tests.test_api_site -*-
"""The REST API as one Klein app per :class:`SparkAPI` instance.

Every route is declared with :meth:`SparkAPI.route`, which does, in order:
CORS header, body size check, authentication (``auth=``), body parsing, the
handler, JSON rendering.  Authentication comes before parsing so a caller
without credentials cannot make the server parse what it sent; only a small
urlencoded body (which may carry ``access_token``, API.md §2) is parsed first.
Each route has a body limit, which the request learns from
:meth:`SparkAPI.body_plan` as soon as its head arrives (see
:mod:`twisted_spark.api.site`).  Failures of any step go to the single error
handler of :mod:`twisted_spark.api.errors`.  Route modules (accounts, devices, and
later events/webhooks/firmware) each have a ``register(api)`` function;
:meth:`SparkAPI.add_routes` lets a later module add its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from twisted_spark.api import accounts, console, devices, events, ops
from twisted_spark.api import webhooks as webhooks_routes
from twisted_spark.api.auth import Authenticator, head_tokens, missing_token, two_carriers
from twisted_spark.api.bodies import (
    SMALL_BODY_LIMIT,
    Body,
    buffered_size,
    check_head_text,
    check_size,
    is_form,
    media_type,
    media_type_of,
    parse_body,
)
from twisted_spark.api.context import Call, Reply
from twisted_spark.api.dispatch import RouteResource
from twisted_spark.api.errors import (
    ApiError,
    install_error_handler,
    json_bytes,
    set_status,
    sized,
    target_error,
    write_error,
)
from twisted_spark.api.routing import use_match_cache
from twisted_spark.api.site import NO_BODY, BodyPlan, SparkSite, request_factory
from twisted_spark.api.sse import EventStream
from twisted_spark.api.streams import StreamRegistry, observe_events
from twisted_spark.api.tokens import LoginThrottle
from twisted_spark.config import Settings
from twisted_spark.executors import SynchronousExecutor
from twisted_spark.health import Readiness
from twisted_spark.metrics import Metrics
from twisted_spark.passwords import hash_password_async, verify_password_async
from twisted_spark.webhooks.policy import NetworkPolicy

#: Methods whose body is read (and may carry the token).
BODY_METHODS = {b"POST", b"PUT", b"DELETE", b"PATCH"}


@dataclass(frozen=True)
class RoutePolicy:
    """How one route treats credentials and bodies: ``auth`` mode, body ``limit``."""

    auth: str | None
    limit: int


class SparkAPI:
    """The REST API of API.md §1–4 and §7.

    :param store: an :class:`~twisted_spark.interfaces.IStore`.
    :param registry: an :class:`~twisted_spark.interfaces.IDeviceRegistry`.
    :param settings: :class:`~twisted_spark.config.Settings`.
    :param clock: ``IReactorTime`` for expiry, throttling and request timeouts.
    :param bus: optional :class:`~twisted_spark.interfaces.IEventBus` (events issue).
    :param firmware: optional :class:`~twisted_spark.interfaces.IFirmwareUpdater`
        (``PUT /v1/devices/:id`` with ``file``; see :func:`twisted_spark.api.devices.flash`).
    :param passwords: the ``IExecutor`` hashing passwords (``Executors.passwords``,
        which the composition root passes); inline by default, for tests.
    :param metrics: the server's :class:`~twisted_spark.metrics.Metrics` (a new one by default).
    :param streams: the :class:`~twisted_spark.api.streams.StreamRegistry` of
        event streams; by default one on ``bus`` (no event routes without a bus).
    :param webhooks: the :class:`~twisted_spark.interfaces.webhooks.IWebhookDispatcher`
        told of hook changes; without one there are no webhook routes.  The store
        must then also be an ``IWebhookStore``.
    :param readiness: the server's :class:`~twisted_spark.health.Readiness`
        (``/readyz``); a new one, with no checks, by default.
    """

    def __init__(
        self, store, registry, settings=None, clock=None, bus=None, *, firmware=None,
        passwords=None, metrics=None, streams=None, webhooks=None, readiness=None,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.store = store
        self.registry = registry
        self.settings = settings or Settings()
        self.clock = clock
        self.bus = bus
        self.firmware = firmware
        self.webhooks = webhooks
        #: Judges IP-literal webhook hosts at creation (API.md §6, Targets).
        self.webhook_policy = NetworkPolicy(self.settings.webhook_allow,
                                            self.settings.webhook_deny)
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.gauge(
            "spark_devices_online", "Devices connected now", lambda: len(registry.online_ids())
        )
        #: Requests being answered now (event streams included).
        self.in_flight = 0
        #: Set when the server drains: new requests get 503 (``/readyz`` still answers).
        self.draining = False
        #: Decides whether the server is ready for traffic (``/readyz``).
        self.readiness = readiness if readiness is not None else Readiness()
        self.throttle: Any = LoginThrottle(clock, self.settings.login_failures_per_minute)
        if passwords is None:
            passwords = SynchronousExecutor("passwords")
        self.auth = Authenticator(
            store,
            clock,
            verify_password=lambda pw, h: verify_password_async(pw, h, passwords),
            hash_password=lambda pw: hash_password_async(pw, passwords),
        )
        #: ``callback(token_string)`` run when a token is deleted (SSE streams close).
        self.token_revoked_observers: list = []
        self.app = Klein()
        use_match_cache(self.app)  # every request with a body is matched twice
        self._policy_by_path: dict[tuple[bytes, bytes], RoutePolicy | None] = {}
        #: Klein endpoint name -> :class:`RoutePolicy`, filled by :meth:`route`.
        self.policies: dict[str, RoutePolicy] = {}
        self._handle_error = install_error_handler(self.app, self.settings.cors_origin)
        #: Open event streams (:class:`~twisted_spark.api.streams.StreamRegistry`).
        self.streams = streams
        if bus is not None:
            if self.streams is None:
                self.streams = StreamRegistry.from_settings(bus, clock, self.settings)
            self.token_revoked_observers.append(self.streams.close_streams_for_token)
            observe_events(self.metrics, bus, self.streams)
        # Event routes come before the device routes: /v1/devices/events must not be
        # taken for a device called "events".
        routes = (accounts, events, devices, ops) if bus is not None else (accounts, devices, ops)
        for module in routes:
            self.add_routes(module.register)
        if webhooks is not None:
            self.add_routes(webhooks_routes.register)
        if self.settings.console:
            self.add_routes(console.register)

    # -- composition -----------------------------------------------------------

    def add_routes(self, register) -> None:
        """Let ``register(api)`` declare routes with :meth:`route`."""
        register(self)

    def resource(self):
        """The ``IResource`` to serve (wrap it in a ``twisted.web.server.Site``)."""
        return _Counted(RouteResource(self.app, self._handle_error), self)

    @property
    def small_body_limit(self) -> int:
        """Body limit of the small routes: token, users, access tokens, publishing."""
        return min(SMALL_BODY_LIMIT, self.settings.max_body_size)

    def body_plan(self, method: bytes, uri: bytes, headers) -> BodyPlan:
        """The :class:`~twisted_spark.api.site.BodyPlan` for a request, from its head alone.

        The route is found the way Klein will find it (same URL map, same
        path decoding).  A route needing a token keeps no body beyond a small
        urlencoded one when the head carries no token: nothing else in it
        could authenticate the request, so it is refused without reading it.
        """
        if method not in BODY_METHODS:
            return NO_BODY
        policy = self.policy_for(method, uri)
        if policy is None:
            return NO_BODY
        keep = policy.limit
        if policy.auth == "token" and not head_tokens(headers, uri):
            ctype = (headers.getRawHeaders(b"content-type") or [None])[-1]
            carries = is_form(media_type_of(ctype))  # only a small form body may
            keep = min(keep, self.small_body_limit) if carries else 0
        return BodyPlan(policy.limit, keep)

    def policy_for(self, method: bytes, uri: bytes) -> RoutePolicy | None:
        """The :class:`RoutePolicy` of the route Klein will pick, or ``None``
        (remembered per method and path in a bounded table, like the URL map's)."""
        key, known = (method, uri.split(b"?", 1)[0]), self._policy_by_path
        if key not in known:
            if len(known) >= 4096:
                known.clear()
            known[key] = self._find_policy(method, key[1])
        return known[key]

    def _find_policy(self, method: bytes, path: bytes) -> RoutePolicy | None:
        # twisted.web unquotes each segment; Klein joins them again.
        path_info = b"/".join(unquote_to_bytes(s) for s in path[1:].split(b"/"))
        if not path_info.startswith(b"/"):
            path_info = b"/" + path_info
        try:
            mapper = self.app.url_map.bind(
                "localhost", path_info=path_info.decode("utf-8"),
                default_method=method.decode("latin-1"))
            rule, _ = mapper.match(return_rule=True)
        except (UnicodeDecodeError, HTTPException, RequestRedirect):
            return None
        return self.policies.get(rule.endpoint)

    def site(self):
        """The ``twisted.web`` Site serving this API on an untrusted network.

        Bodies are limited per route as they arrive, parsed only by the API,
        request heads have ``request_head_timeout`` seconds and quiet
        connections ``api_idle_timeout`` seconds; the access log has no tokens.
        """
        from twisted_spark.api.access_log import redacting_log_formatter

        site = SparkSite(
            self.resource(),
            requestFactory=request_factory(self.body_plan),
            head_timeout=self.settings.request_head_timeout,
            timeout=self.settings.api_idle_timeout,
            logFormatter=redacting_log_formatter,
            reactor=self.clock,
            structured_log=self.settings.log_format == "json",
        )
        site.displayTracebacks = False
        return site

    def token_revoked(self, token: str) -> None:
        for observer in list(self.token_revoked_observers):
            try:
                observer(token)
            except Exception:
                from twisted.logger import Logger

                Logger().failure("token_revoked observer {o!r} failed", o=observer)

    def with_timeout(self, d, kind: str | None = None):
        """Bound a device Deferred by the request timeout (→ 408 "Timed out.").

        :param kind: ``function``, ``variable`` or ``describe``: the call's
            duration and outcome go to the metrics under that kind.
        """
        d = d.addTimeout(self.settings.request_timeout, self.clock)
        return d if kind is None else self.metrics.time_device_call(d, kind)

    # -- the one route decorator ----------------------------------------------

    def route(self, path, methods, auth="token", body_limit=None):
        """Declare ``handler(call, **path_args)`` (``async``) for ``path``.

        :param auth: ``"token"`` (bearer required), ``"optional"`` (resolved if
            sent), or ``None`` (the handler authenticates itself, e.g. Basic).
        :param body_limit: bytes allowed in the body.  Default: ``max_body_size``
            for token routes, the small limit for the others, whose callers
            are not known before the body is parsed.
        """
        if auth not in ("token", "optional", None):
            raise ValueError(f"unknown auth mode {auth!r}")
        if body_limit is None:
            body_limit = self.settings.max_body_size if auth == "token" else self.small_body_limit
        policy = RoutePolicy(auth, body_limit)
        label = path

        def deco(handler):
            async def endpoint(request, **kwargs):
                request.spark_route = label
                request.setHeader(
                    b"access-control-allow-origin", self.settings.cors_origin.encode()
                )
                body, caller = await self._admit(request, policy)
                if caller is not None:
                    request.spark_user = caller.username  # for the access log
                result = await handler(Call(self, request, body, caller), **kwargs)
                if isinstance(result, EventStream):
                    return None  # the stream wrote and finished the response itself
                return render(request, result)

            endpoint.__name__ = handler.__name__
            name = f"{path} {'/'.join(methods)}"
            self.policies[name] = policy
            self._policy_by_path.clear()
            self.app.route(path, methods=list(methods), endpoint=name)(endpoint)
            return handler

        return deco

    async def _admit(self, request, policy: RoutePolicy):
        """``(body, caller)`` of a request: size, then credentials, then parsing.

        Only a small urlencoded body is parsed before authentication, because
        it may carry the token; any other body of a token route is parsed
        once the caller is known, and never when it is not.
        """
        check_head_text(request)
        reads_body = request.method in BODY_METHODS
        body = None
        if reads_body:
            check_size(request, policy.limit)
            if (is_form(media_type(request)) and not getattr(request, "body_dropped", False)
                    and buffered_size(request) <= self.small_body_limit):
                body = parse_body(request)
        caller = None
        if policy.auth == "token":
            caller = await self.auth.caller(request, body if body is not None else Body())
        elif policy.auth == "optional":
            caller = await self.auth.optional_caller(
                request, body if body is not None else Body())
        if body is None:
            body = Body()
            if reads_body:
                if getattr(request, "body_dropped", False):
                    raise missing_token()  # unreachable: the plan kept it if a token could be
                body = parse_body(request)
                if policy.auth is not None and "access_token" in body.fields:
                    # Not a carrier here (API.md §2: urlencoded bodies only);
                    # sent alongside a header or query token it is a second one.
                    del body.fields["access_token"]
                    if head_tokens(request.requestHeaders, request.uri):
                        raise two_carriers()
        return body, caller

def render(request, result) -> bytes:
    """Write ``result`` (dict/list → JSON, or a :class:`Reply`)."""
    if not isinstance(result, Reply):
        result = Reply(result)
    set_status(request, result.status)
    request.setHeader(b"content-type", result.content_type.encode())
    request.setHeader(b"cache-control", b"no-store")
    for name, value in result.headers.items():
        request.setHeader(name.encode(), str(value).encode())
    if result.body is None:
        return sized(request, b"")
    if isinstance(result.body, bytes):
        return sized(request, result.body)
    if isinstance(result.body, str) and not result.content_type.startswith("application/json"):
        return sized(request, result.body.encode("utf-8"))
    return sized(request, json_bytes(result.body))


class _Counted(Resource):
    """Wraps the Klein resource to count every response by route and status.

    It keeps ``api.in_flight``, answers 503 while ``api.draining`` (except
    ``/readyz``, which then says why), and answers a URL that is not UTF-8
    with the API's JSON 400, before Klein, whose own answer is plain text
    and logs a traceback per request.
    """

    isLeaf = True

    def __init__(self, inner, api):
        super().__init__()
        self._inner = inner
        self._api = api
        self._metrics = api.metrics
        self._cors_origin = api.settings.cors_origin

    def render(self, request):
        api = self._api
        api.in_flight += 1
        request.notifyFinish().addBoth(self._count, request, self._metrics.timer())
        problem = target_error(request)
        if problem is not None:
            return write_error(request, problem, self._cors_origin)
        if api.draining and request.path != b"/readyz":
            return write_error(request, _SHUTTING_DOWN, self._cors_origin)
        return self._inner.render(request)

    def _count(self, _result, request, started):
        self._api.in_flight -= 1
        method = request.method
        self._metrics.api_request(
            getattr(request, "spark_route", "unmatched"),
            method.decode("latin-1") if method in _METHODS else "other",
            request.code,
            self._metrics.timer() - started,
        )


_SHUTTING_DOWN = ApiError(
    503, "shutting_down", "This server is shutting down; retry the request (on another "
    "server, if there is one).", headers={"Retry-After": "1", "Connection": "close"})


#: Methods counted by name in the metrics (any other is "other": labels stay bounded).
_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"})

__all__ = ["SparkAPI", "render"]
