# -*- test-case-name: tests.test_dtls_resume -*-
"""Session state that outlives a handshake, and the bounded table of live sessions.

A :class:`SessionState` is everything needed to carry on a session without a
handshake: what a sleeping device keeps on its side, and what the server
must keep (and persist) to accept its type-253 record on waking.  It
converts to and from a JSON-safe dict for a store.

Sequence-number leases: a store may lose the last writes before a crash, and
reusing an outgoing sequence number would reuse a CCM nonce.  So the server
records ``write_reserved``, an upper bound on the sequence numbers it may
have used, persists it before going past it, and on restore continues from
it (see :mod:`twisted_spark.dtls.connection`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

__all__ = ["SERVER", "CLIENT", "SessionState", "SessionTable"]

SERVER = "server"
CLIENT = "client"
_BYTES_FIELDS = {
    "cid": (8, 8),
    "master_secret": (48, 48),
    "client_random": (32, 32),
    "server_random": (32, 32),
    "peer_public_key": (1, 512),
}


@dataclass(slots=True)
class SessionState:
    """One side's view of an established session (role: "server" or "client")."""

    role: str
    cid: bytes
    master_secret: bytes = field(repr=False)
    client_random: bytes
    server_random: bytes
    peer_public_key: bytes = field(
        repr=False
    )  # SPKI DER: the device's key on the server, the server's on a device
    epoch: int = 1
    write_sequence: int = 0  # next sequence number to send in ``epoch``
    write_reserved: int = 0  # persisted bound: sequence numbers below it may have been used
    read_latest: int = -1  # replay window: highest sequence number received ...
    read_bitmap: int = 0  # ... and which of the 63 before it
    peer_address: tuple[str, int] | None = None
    device_id: str | None = None
    created: float = 0.0
    last_seen: float = 0.0
    #: What the layer above keeps with the session (JSON-safe; never read here):
    #: a Gen3 device's describe and subscriptions, which it does not repeat on resuming.
    application: dict[str, Any] | None = None

    def copy(self) -> SessionState:
        return replace(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: bytes as hex, the address as a list."""
        data = asdict(self)
        for name in _BYTES_FIELDS:
            data[name] = data[name].hex()
        if self.peer_address is not None:
            data["peer_address"] = [self.peer_address[0], self.peer_address[1]]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionState:
        """The inverse of :meth:`to_dict`; ValueError naming the field if anything is off."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown session fields: {sorted(unknown)}")
        values = dict(data)
        try:
            for name, (low, high) in _BYTES_FIELDS.items():
                raw = bytes.fromhex(values[name])
                if not low <= len(raw) <= high:
                    raise ValueError(f"session field {name} has {len(raw)} bytes")
                values[name] = raw
            address = values.get("peer_address")
            if address is not None:
                if not (
                    isinstance(address, list | tuple)
                    and len(address) == 2
                    and isinstance(address[0], str)
                    and isinstance(address[1], int)
                ):
                    raise ValueError(f"session peer_address {address!r} is not [host, port]")
                values["peer_address"] = (address[0], address[1])
            state = cls(**values)
        except (KeyError, TypeError) as error:
            raise ValueError(f"incomplete session record: {error}") from None
        state.validate()
        return state

    def validate(self) -> None:
        if self.role not in (SERVER, CLIENT):
            raise ValueError(f"session role {self.role!r}")
        if self.epoch != 1:
            raise ValueError(f"session epoch {self.epoch} (only 1 exists without renegotiation)")
        for name in ("write_sequence", "write_reserved"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 2**48:
                raise ValueError(f"session {name} {value!r} out of range")
        if not isinstance(self.read_latest, int) or not -1 <= self.read_latest < 2**48:
            raise ValueError(f"session read_latest {self.read_latest!r} out of range")
        if not isinstance(self.read_bitmap, int) or not 0 <= self.read_bitmap < 2**64:
            raise ValueError(f"session read_bitmap {self.read_bitmap!r} out of range")
        if self.application is not None and not isinstance(self.application, dict):
            raise ValueError("session application data is not an object")


class _Entry(Protocol):
    @property
    def cid(self) -> bytes: ...

    @property
    def last_seen(self) -> float: ...


class SessionTable:
    """Live sessions by connection ID, least recently seen first.

    Bounded: adding beyond ``max_sessions`` evicts the least recently seen;
    ``expire`` drops those idle longer than ``idle_timeout``.  Values are
    anything with ``cid`` and ``last_seen`` (connections).
    """

    def __init__(self, max_sessions: int = 100_000, idle_timeout: float = 7 * 24 * 3600.0) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self._entries: OrderedDict[bytes, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, cid: object) -> bool:
        return cid in self._entries

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._entries.values()))

    def get(self, cid: bytes) -> Any | None:
        return self._entries.get(cid)

    def add(self, entry: _Entry) -> list[Any]:
        """Insert or replace; returns the entries evicted to make room."""
        self._entries[entry.cid] = entry
        self._entries.move_to_end(entry.cid)
        evicted = []
        while len(self._entries) > self.max_sessions:
            evicted.append(self._entries.popitem(last=False)[1])
        return evicted

    def touch(self, entry: _Entry) -> None:
        """The entry was just seen: it becomes the most recent."""
        if entry.cid in self._entries:
            self._entries.move_to_end(entry.cid)

    def remove(self, cid: bytes) -> Any | None:
        return self._entries.pop(cid, None)

    def expire(self, now: float) -> list[Any]:
        """Remove and return the entries idle for longer than ``idle_timeout``."""
        expired = []
        while self._entries:
            cid, entry = next(iter(self._entries.items()))
            if now - entry.last_seen <= self.idle_timeout:
                break
            del self._entries[cid]
            expired.append(entry)
        return expired
