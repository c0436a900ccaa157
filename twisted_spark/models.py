# -*- test-case-name: tests.test_store_contract -*-
"""Plain value types shared by the store, the registry and the API.

They are frozen so that a record handed out by a store can never be changed
behind the store's back; use :func:`dataclasses.replace` to derive new ones.
Times are POSIX seconds (``float``) taken from an injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class User:
    """A person or program that owns devices and tokens."""

    username: str
    password_hash: str
    is_admin: bool = False
    created_at: float = 0.0


@dataclass(frozen=True)
class AccessToken:
    """An OAuth bearer token; ``expires_at`` of ``None`` never expires."""

    token: str
    username: str
    client_id: str
    created_at: float
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class DeviceRecord:
    """What the server remembers about one device between connections.

    ``public_key`` is the device's RSA-1024 public key as DER
    SubjectPublicKeyInfo bytes, or ``None`` when only seen, never registered.
    ``functions`` and ``variables`` hold the last Describe answer so the API
    can show them while the device is offline.
    """

    device_id: str
    owner: str | None = None
    name: str | None = None
    public_key: bytes | None = None
    product_id: int | None = None
    platform_id: int | None = None
    firmware_version: int | None = None
    last_heard: float | None = None
    last_ip: str | None = None
    last_app: str | None = None
    functions: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0


#: The last second ISO-8601 dates here can show (9999-12-31T23:59:59Z).
LAST_SECOND = 253402300799


def iso8601(seconds: float | None) -> str | None:
    """Format POSIX seconds as ISO-8601 UTC with milliseconds, like the cloud.

    Times beyond year 9999 (only a record written before lifetimes were
    bounded can hold one) show as its last millisecond instead of failing.
    """
    if seconds is None:
        return None
    if not seconds < LAST_SECOND + 1:  # also inf and nan
        return "9999-12-31T23:59:59.999Z"
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Event:
    """One published event, from a device (``coreid`` = its id) or the API.

    ``owner`` is the user the event belongs to for visibility: the owner of
    the publishing device, or the API caller; ``None`` for unowned devices.
    ``origin`` is ``None`` for an event published on this node, and the id
    of the publishing node for one a cluster relay delivers here: work that
    must happen once per cluster (webhooks) runs only where ``origin`` is
    ``None``.
    """

    name: str
    data: str | None
    ttl: int
    published_at: float
    coreid: str
    public: bool
    owner: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class DtlsSessionRecord:
    """A Gen3 device's DTLS session, saved so the device can resume it after a restart.

    ``cid`` is the 8-byte connection ID the server gave it; ``state`` is the
    JSON text of :meth:`twisted_spark.dtls.SessionState.to_dict` (it holds
    the master secret: the database is private to the server); ``device_id``
    is known once the device's CoAP Hello was accepted.  After
    ``expires_at`` a store no longer returns it.
    """

    cid: bytes
    state: str
    expires_at: float
    device_id: str | None = None
    updated_at: float = 0.0


#: The webhook fields kept in the ``definition`` JSON (everything optional).
WEBHOOK_OPTIONAL = (
    "name", "json", "form", "body", "query", "headers", "auth",
    "responseTemplate", "responseTopic", "errorResponseTopic",
)


@dataclass(frozen=True, eq=True)
class Webhook:
    """One user's webhook (API.md §6), as created and stored.

    ``event`` is an event-name prefix; ``device_id`` (lowercase) limits the
    hook to one device.  ``definition`` holds the optional fields under
    their API names (``json``, ``form``, ``body``, ``query``, ``headers``,
    ``auth``, ``responseTemplate``, ``responseTopic``,
    ``errorResponseTopic``, ``name``), only those that were set.
    """

    hook_id: str
    owner: str
    event: str
    url: str
    request_type: str = "POST"
    created_at: float = 0.0
    device_id: str | None = None
    no_defaults: bool = False
    reject_unauthorized: bool = True
    definition: dict = field(default_factory=dict, hash=False)

    def get(self, name: str, default=None):
        """An optional field by its API name (``default`` when unset)."""
        return self.definition.get(name, default)

    def to_api(self) -> dict:
        """The item of ``GET /v1/webhooks`` (API.md §6)."""
        item = {
            "id": self.hook_id,
            "event": self.event,
            "url": self.url,
            "requestType": self.request_type,
            "created_at": iso8601(self.created_at),
            "noDefaults": self.no_defaults,
            "rejectUnauthorized": self.reject_unauthorized,
        }
        if self.device_id is not None:
            item["deviceID"] = self.device_id
        for name in WEBHOOK_OPTIONAL:
            if name in self.definition:
                item[name] = self.definition[name]
        return item
