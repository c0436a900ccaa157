# -*- test-case-name: tests.test_tap -*-
"""Command-line options and ``makeService``: the one entry shared by every launcher.

``twistd -n spark``, ``python -m twisted_spark serve`` and applications that
embed the server all go through :class:`Options` and :func:`makeService`.
This module stays import-light (no Klein) so ``twistd --help`` is quick and
does not install a reactor.
"""

from __future__ import annotations

from twisted.python import usage

from twisted_spark.config import Settings

_DEFAULTS = Settings()


def _number(kind, allow_zero: bool, doc: str):
    """A coercer for ``usage.Options``: ``kind`` (int/float), > 0 or >= 0."""

    def coerce(value: str):
        number = kind(value)
        if number < 0 or (number == 0 and not allow_zero):
            bound = "0 or more" if allow_zero else "greater than 0"
            raise ValueError(f"must be {bound}, got {value}")
        return number

    coerce.coerceDoc = doc  # type: ignore[attr-defined]  # read by usage.Options
    return coerce


_positive_float = _number(float, False, "Seconds, greater than 0.")
_non_negative_float = _number(float, True, "A number, 0 or more.")
_positive_int = _number(int, False, "An integer greater than 0.")
_non_negative_int = _number(int, True, "An integer, 0 or more.")


def _client_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


_client_list.coerceDoc = "Comma-separated; empty means any client id."  # type: ignore[attr-defined]


def _networks(value: str) -> tuple[str, ...]:
    import ipaddress

    networks = []
    for part in value.split(","):
        if part.strip():
            try:
                networks.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError as error:
                raise ValueError(f"not a network: {part.strip()!r} ({error})") from None
    return tuple(networks)


_networks.coerceDoc = (  # type: ignore[attr-defined]
    "Comma-separated networks (CIDR), e.g. 127.0.0.0/8,10.0.0.0/8; empty: nobody.")


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError(f"must be text or json, got {value!r}")
    return value


_log_format.coerceDoc = "text (default) or json."  # type: ignore[attr-defined]


def _udp_device(value: str) -> str:
    from twisted_spark.udp.address import parse_udp_device

    parse_udp_device(value)  # ValueError says what is wrong
    return value.strip()


_udp_device.coerceDoc = (  # type: ignore[attr-defined]
    "[INTERFACE:]PORT, e.g. 5684 or 127.0.0.1:5684, or 'off'.")


def _redis_url(value: str) -> str:
    from twisted_spark.cluster.address import RedisAddress

    RedisAddress.parse(value.strip())  # ValueError says what is wrong
    return value.strip()


_redis_url.coerceDoc = (  # type: ignore[attr-defined]
    "redis://HOST[:PORT][/DB], with [USER]:PASSWORD@ before HOST if Redis wants one.")


def _webhook_networks(kind: str, what: str):
    def coerce(value: str) -> tuple[str, ...]:
        from twisted_spark.webhooks.policy import ALLOW_NAMES, DENY_NAMES, parse_networks

        entries = _client_list(value)
        # ValueError names the bad entry:
        parse_networks(entries, ALLOW_NAMES if kind == "allow" else DENY_NAMES)
        return entries

    coerce.coerceDoc = f"Comma-separated CIDRs or {what}."  # type: ignore[attr-defined]
    return coerce


def _database(value: str) -> str:
    from twisted_spark.store.url import parse_database_url

    parse_database_url(value)  # ValueError says what is wrong and what is accepted
    return value.strip()


_database.coerceDoc = (  # type: ignore[attr-defined]
    "'sqlite:' or postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME.")


class Options(usage.Options):
    """Options of the twisted-spark server."""

    synopsis = "[options]"
    longdesc = (
        "Run a self-hosted Spark Cloud: Spark Core, Photon and P1 devices connect "
        "to the device endpoint; REST clients (curl, particle-cli, particle-api-js) "
        "use the API endpoint. Endpoints are Twisted endpoint strings, so "
        "'ssl:8443:privateKey=key.pem:certKey=cert.pem' serves the API over TLS."
    )

    optParameters = [
        ["data-dir", "d", str(_DEFAULTS.data_dir),
         "Directory for the database and server keys (created with mode 0700)."],
        ["api", "a", _DEFAULTS.api_endpoint, "Endpoint of the REST API."],
        ["device", None, _DEFAULTS.device_endpoint, "Endpoint devices connect to."],
        ["database", None, _DEFAULTS.database,
         "Where state lives: 'sqlite:' (spark.sqlite in the data dir) or "
         "postgresql://USER@HOST:PORT/DBNAME (shared by the nodes of a cluster).", _database],
        ["udp-device", None, _DEFAULTS.udp_device,
         "UDP port Gen3 devices (Argon, Boron, P2, ...) connect to: [INTERFACE:]PORT, "
         "or 'off'.", _udp_device],
        ["handshake-timeout", None, _DEFAULTS.handshake_timeout,
         "Seconds a device has to complete the handshake.", _positive_float],
        ["device-idle-timeout", None, _DEFAULTS.device_idle_timeout,
         "Seconds without a frame before a device is marked offline.", _positive_float],
        ["device-ping-interval", None, _DEFAULTS.device_ping_interval,
         "Seconds of device silence before the server pings it.", _positive_float],
        ["udp-device-idle-timeout", None, _DEFAULTS.udp_device_idle_timeout,
         "Seconds a Gen3 device may stay silent before the server pings it; "
         "unanswered, it shows offline (its DTLS session stays resumable).", _positive_float],
        ["max-frame-size", None, _DEFAULTS.max_frame_size,
         "Largest encrypted frame accepted from a device (bytes).", _positive_int],
        ["rsa-threads", None, _DEFAULTS.rsa_threads,
         "Threads for RSA private-key work during handshakes.", _positive_int],
        ["max-pending-handshakes", None, _DEFAULTS.max_pending_handshakes,
         "RSA jobs queued or running at which new device connections are refused.",
         _positive_int],
        ["device-publish-rate", None, _DEFAULTS.device_publish_rate,
         "Events per second a device may publish (burst 4); 0 = unlimited.",
         _non_negative_float],
        ["request-timeout", None, _DEFAULTS.request_timeout,
         "Seconds an API call waits for a device before answering 408.", _positive_float],
        ["request-head-timeout", None, _DEFAULTS.request_head_timeout,
         "Seconds the head of an API request may take to arrive (then 408, closed).",
         _positive_float],
        ["api-idle-timeout", None, _DEFAULTS.api_idle_timeout,
         "Seconds an API connection may stay silent between requests.", _positive_float],
        ["max-body-size", None, _DEFAULTS.max_body_size,
         "Largest API request body (bytes); larger ones get 413. Token, user and "
         "event routes take at most 64 KiB.", _positive_int],
        ["max-firmware-size", None, _DEFAULTS.max_firmware_size,
         "Largest firmware upload (bytes), PUT /v1/devices/:id only.", _positive_int],
        ["max-function-argument", None, None,
         "Function argument limit in bytes (default: the device platform's, "
         "63 on a Core, 622 on a Photon, 1024 on a Gen3 device).", _positive_int],
        ["max-event-data", None, _DEFAULTS.max_event_data,
         "Largest event data (bytes).", _positive_int],
        ["token-lifetime", None, _DEFAULTS.token_lifetime,
         "Default lifetime of new access tokens (seconds).", _positive_int],
        ["allowed-clients", None, None,
         "OAuth client ids accepted at /oauth/token (default: any).", _client_list],
        ["login-failures-per-minute", None, _DEFAULTS.login_failures_per_minute,
         "Failed logins per address per minute before 429; 0 = no limit.",
         _non_negative_int],
        ["cors-origin", None, _DEFAULTS.cors_origin, "Access-Control-Allow-Origin value."],
        ["sse-queue-size", None, _DEFAULTS.sse_queue_size,
         "Events queued for a slow event-stream client before it is cut off.",
         _positive_int],
        ["webhook-timeout", None, _DEFAULTS.webhook_timeout,
         "Seconds one webhook attempt may take (connect to end of body).", _positive_float],
        ["webhook-max-errors", None, _DEFAULTS.webhook_max_errors,
         "Consecutive failed deliveries after which a webhook sleeps.", _positive_int],
        ["webhook-sleep", None, _DEFAULTS.webhook_sleep,
         "Seconds a webhook sleeps after too many failed deliveries.", _positive_float],
        ["webhook-concurrency", None, _DEFAULTS.webhook_concurrency,
         "Webhook requests in flight in the whole server (at most 4 per hook).",
         _positive_int],
        ["webhook-max-per-user", None, _DEFAULTS.webhook_max_per_user,
         "Webhooks one user may create.", _positive_int],
        ["webhook-allow", None, None,
         "Webhook target networks allowed although denied by default: 'loopback', "
         "'link-local' or CIDRs, comma-separated (wins over --webhook-deny).",
         _webhook_networks("allow", "'loopback', 'link-local'")],
        ["webhook-deny", None, None,
         "Webhook target networks denied besides loopback and link-local: 'private' "
         "or CIDRs, comma-separated.", _webhook_networks("deny", "'private'")],
        ["compile-command", None, None,
         "Command compiling uploaded firmware sources; {src} and {out} are replaced "
         "by the source directory and the output binary path."],
        ["compile-timeout", None, _DEFAULTS.compile_timeout,
         "Seconds the compile command may run.", _positive_float],
        ["metrics-allow", None, None,
         "Networks whose clients may read /metrics, others get 403 (default: loopback "
         "and private ranges).", _networks],
        ["drain-timeout", None, _DEFAULTS.drain_timeout,
         "Seconds a stopping server (SIGTERM) waits for calls and flashes in flight.",
         _non_negative_float],
        ["log-format", None, _DEFAULTS.log_format,
         "Log lines as text or json (one object per line, for log shippers).", _log_format],
        ["firmware-dir", None, None,
         "Directory of firmware images (default: DATA_DIR/firmware); cluster nodes "
         "share one to flash devices held by another node."],
        ["redis", None, None,
         "redis://HOST[:PORT][/DB]: run as one node of a cluster sharing this Redis "
         "(and the database); default: a single node.", _redis_url],
        ["redis-namespace", None, _DEFAULTS.redis_namespace,
         "Prefix of the cluster's Redis keys and channels."],
        ["node-id", None, None,
         "This node's id in the cluster (default: host name and a random suffix)."],
        ["presence-ttl", None, _DEFAULTS.presence_ttl,
         "Seconds a cluster node's presence lives unrenewed; a dead node's devices "
         "show offline within 4/3 of it.", _positive_float],
    ]

    optFlags = [
        ["accept-unknown-devices", None,
         "Register the key of an unknown device on its first handshake (off: refuse)."],
        ["allow-signup", None, "Let anyone create an account with POST /v1/users."],
        ["no-metrics", None, "Do not serve /metrics."],
        ["no-console", None, "Do not serve the web console at /."],
    ]

    def postOptions(self) -> None:
        for flag in ("accept-unknown-devices", "allow-signup", "no-metrics", "no-console"):
            self[flag] = bool(self[flag])
        try:
            self.settings = Settings.from_options(self)
        except (TypeError, ValueError) as error:
            raise usage.UsageError(str(error)) from error


def makeService(options, reactor=None, **collaborators):
    """Build the server as a :class:`~twisted.application.service.MultiService`.

    ``options`` is a parsed :class:`Options` (or any mapping with its keys).
    ``reactor`` defaults to the global one (then, as under ``twistd``, the
    process is the server's own and its heap is settled once the server is
    up: :mod:`twisted_spark.heap`); ``collaborators`` are passed to
    :class:`twisted_spark.service.SparkService` so tests and embedders can
    substitute the store or thread pools.
    """
    from twisted_spark.service import SparkService

    if reactor is None:  # twistd: the process is the server's own
        from twisted.internet import reactor

        collaborators.setdefault("settle_heap", True)
    settings = getattr(options, "settings", None) or Settings.from_options(options)
    return SparkService(settings, reactor, **collaborators)
