# -*- test-case-name: tests.test_dtls_handshake -*-
"""What the sans-IO state machines hand back: datagrams, events and work.

Every call into a handshake or connection returns an :class:`Output`.  The caller
sends ``datagrams`` (each to its address), acts on ``events`` (each paired
with the object it concerns: the handshake or the connection), and runs
``work`` (:class:`~twisted_spark.dtls.ecc.CryptoWork`) wherever it likes, handing
each result back with ``work_done``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted_spark.dtls.session import SessionState

__all__ = [
    "AddressChanged",
    "ApplicationData",
    "Closed",
    "Dropped",
    "HandshakeComplete",
    "Output",
    "SessionCheckpoint",
]


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """A full handshake finished; ``connection`` carries the session from now on.

    ``session`` is a snapshot to persist: the peer's public key (check it
    against the device's registered key once its id is known) and the CID.
    """

    connection: Any
    session: SessionState


@dataclass(frozen=True, slots=True)
class ApplicationData:
    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The session or handshake is over; ``alert`` is the alert sent or received."""

    reason: str
    alert: int | None = None
    by_peer: bool = False


@dataclass(frozen=True, slots=True)
class Dropped:
    """Input was discarded without an answer (bad MAC, replay, malformed ...); for logs."""

    reason: str


@dataclass(frozen=True, slots=True)
class AddressChanged:
    """An authentic record came from a new address; replies go there now.

    ``moved`` is True for Device OS's type-253 "I woke up, maybe elsewhere" record.
    """

    old: Any
    new: Any
    moved: bool


@dataclass(frozen=True, slots=True)
class SessionCheckpoint:
    """Persist this snapshot before the connection relies on it (see session.py)."""

    session: SessionState


@dataclass(slots=True)
class Output:
    datagrams: list[tuple[Any, bytes]] = field(default_factory=list)
    events: list[tuple[Any, Any]] = field(default_factory=list)
    work: list[Any] = field(default_factory=list)

    def extend(self, other: Output) -> Output:
        self.datagrams.extend(other.datagrams)
        self.events.extend(other.events)
        self.work.extend(other.work)
        return self

    def event_list(self) -> list[Any]:
        """Just the events, without their sources (handy in tests)."""
        return [event for _, event in self.events]
