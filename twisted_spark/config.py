# -*- test-case-name: tests.test_tap -*-
"""Server settings: one immutable value built from the command line.

:class:`Settings` is the only configuration object; parts receive it (or the
fields they need) through their constructors.  There is no global settings
module.  :mod:`twisted_spark.tap` parses options and calls
:meth:`Settings.from_options`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
#: Loopback and private ranges: the default ``--metrics-allow``.
PRIVATE_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
                    "192.168.0.0/16", "fc00::/7")


@dataclass(frozen=True)
class Settings:
    """Every tunable of the server, with the defaults users get."""

    #: Directory holding the database and the server key pair (created 0700).
    data_dir: Path = Path("spark-data")
    #: Twisted endpoint string for the REST API (``ssl:8443:privateKey=...`` for TLS).
    api_endpoint: str = "tcp:8080"
    #: Twisted endpoint string for the device protocol.
    device_endpoint: str = "tcp:5683"
    #: ``[INTERFACE:]PORT`` of the UDP/DTLS port for Gen3 devices, or ``off``.
    udp_device: str = "5684"
    #: Where state lives: ``sqlite:`` (a file in the data dir) or a
    #: ``postgresql://`` URL (:mod:`twisted_spark.store.url`).
    database: str = "sqlite:"

    # -- device side ---------------------------------------------------------
    #: Seconds a device has to finish the handshake (nonce → first frame).
    handshake_timeout: float = 30.0
    #: Seconds without any frame before a device is considered gone.
    device_idle_timeout: float = 30.0
    #: Seconds of silence after which the server pings the device itself.  A
    #: device pings after 15 s of silence on its own (PROTOCOL.md §10), so a
    #: healthy one is never pinged twice; the server's pings find the silent ones.
    device_ping_interval: float = 20.0
    #: Largest encrypted frame accepted from a device, in bytes.
    max_frame_size: int = 4 * KIB
    #: Seconds a Gen3 (UDP) device may stay silent before the server pings it;
    #: unanswered, it shows offline (its DTLS session stays resumable).  0 = never.
    udp_device_idle_timeout: float = 90.0
    #: Threads doing RSA private-key work for handshakes.
    rsa_threads: int = 2
    #: RSA jobs queued or running at which new device connections are refused
    #: at once (a burst of bogus handshakes must not queue without limit).
    max_pending_handshakes: int = 200
    #: Store the key a device presents and accept it, instead of refusing.
    accept_unknown_devices: bool = False
    #: Device events per second allowed (token bucket, burst 4); 0 = no limit.
    device_publish_rate: float = 0.0

    # -- API side ------------------------------------------------------------
    #: Seconds an API call waits for a device answer before 408.
    request_timeout: float = 30.0
    #: Seconds the head (request line and headers) of one request may take to
    #: arrive, from its first byte; then 408 and the connection is closed.
    request_head_timeout: float = 30.0
    #: Seconds an API connection may stay silent between requests before it is
    #: closed (suspended while a request, e.g. an event stream, is being answered).
    api_idle_timeout: float = 60.0
    #: Largest request body in bytes (413 above it); the small routes (token,
    #: users, access tokens, event publishing) take at most 64 KiB.
    max_body_size: int = 1 * MIB
    #: Largest firmware upload in bytes (``PUT /v1/devices/:id`` only).
    max_firmware_size: int = 4 * MIB
    #: Function argument limit in bytes; ``None`` = the platform's own
    #: (63 on a Core, 622 on a Photon).
    max_function_argument: int | None = None
    #: Largest event data in bytes.
    max_event_data: int = 255
    #: Lifetime of new access tokens when the client does not say (seconds).
    token_lifetime: int = 90 * 24 * 3600
    #: OAuth client ids accepted at /oauth/token; empty = any.
    allowed_clients: tuple[str, ...] = ()
    #: Let anyone create an account with POST /v1/users.
    allow_signup: bool = False
    #: Failed logins per address per minute before 429; 0 = no limit.
    login_failures_per_minute: int = 10
    #: Value of Access-Control-Allow-Origin.
    cors_origin: str = "*"
    #: Events queued for one SSE client before it is cut off.
    sse_queue_size: int = 1000
    #: Serve Prometheus text at /metrics.
    metrics: bool = True
    #: Networks (CIDR) whose clients may read /metrics; others get 403.
    metrics_allow: tuple[str, ...] = PRIVATE_NETWORKS
    #: Serve the web console at / (static files that use the public API).
    console: bool = True

    # -- webhooks (API.md §6) -------------------------------------------------
    #: Seconds one webhook attempt may take, connecting to the end of the body.
    webhook_timeout: float = 20.0
    #: Consecutive failed deliveries after which a hook sleeps.
    webhook_max_errors: int = 10
    #: Seconds a hook sleeps after too many failed deliveries.
    webhook_sleep: float = 60.0
    #: Webhook requests in flight in the whole server (4 per hook at most).
    webhook_concurrency: int = 64
    #: Webhooks one user may have.
    webhook_max_per_user: int = 20
    #: Target networks allowed although denied by default (``loopback``,
    #: ``link-local``, CIDRs); an allow entry wins over a deny entry.
    webhook_allow: tuple[str, ...] = ()
    #: Target networks denied besides the defaults (``private``, CIDRs).
    webhook_deny: tuple[str, ...] = ()

    # -- operations ----------------------------------------------------------
    #: Seconds a stopping server waits for calls and flashes in flight (SIGTERM).
    drain_timeout: float = 30.0
    #: Log line format of ``python -m twisted_spark serve``: ``text`` or ``json``.
    log_format: str = "text"

    # -- firmware ------------------------------------------------------------
    #: Template of the command compiling uploaded sources; ``{src}`` and ``{out}``
    #: are replaced by the source directory and the output binary path.
    compile_command: str | None = None
    #: Seconds the compile command may run.
    compile_timeout: float = 300.0

    # -- cluster (``--redis``) -------------------------------------------------
    #: ``redis://host[:port][/db]``: run as one node of a cluster; None = alone.
    redis_url: str | None = None
    #: Prefix of every Redis key and channel (one per cluster).
    redis_namespace: str = "spark"
    #: This node's id in the cluster; None = host name and a random suffix.
    node_id: str | None = None
    #: Seconds a node's presence keys live unrenewed (renewed every third):
    #: a dead node's devices show offline within 4/3 of this.
    presence_ttl: float = 30.0
    #: Directory of firmware images (default ``<data_dir>/firmware``); the
    #: nodes of a cluster share one to flash devices held by another node.
    firmware_dir: Path | None = None

    @property
    def database_path(self) -> Path:
        return self.data_dir / "spark.sqlite"

    @classmethod
    def from_options(cls, options) -> Settings:
        """Build settings from a parsed :class:`twisted_spark.tap.Options`.

        Option names are the field names with dashes, except the two
        endpoints (``--api``, ``--device``), ``--no-metrics`` and ``--no-console``.
        """
        renamed = {"api_endpoint": "api", "device_endpoint": "device", "redis_url": "redis"}
        values = {}
        for spec in fields(cls):
            option_name = renamed.get(spec.name, spec.name.replace("_", "-"))
            if option_name in options and options[option_name] is not None:
                values[spec.name] = options[option_name]
        if options.get("no-metrics"):
            values["metrics"] = False
        if options.get("no-console"):
            values["console"] = False
        values["data_dir"] = Path(values.get("data_dir", cls.data_dir))
        if values.get("firmware_dir") is not None:
            values["firmware_dir"] = Path(values["firmware_dir"])
        return cls(**values)
