# -*- test-case-name: tests.test_dtls_malformed -*-
"""Errors of the DTLS layer and the alert each one maps to.

Everything a peer can make go wrong ends in one of these, never in any other
exception: parsers raise :class:`DecodeError`, the record layer raises
:class:`RecordError` (drop the record, RFC 6347 §4.1.2.7), and the handshake
raises :class:`HandshakeFailure` (send the fatal ``alert``, forget the peer).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AlertDescription",
    "BadRecordMac",
    "DecodeError",
    "DtlsError",
    "HandshakeFailure",
    "RecordError",
    "ReplayedRecord",
    "StateError",
    "alert_name",
]


class AlertDescription(IntEnum):
    """The TLS alert descriptions this implementation sends or names (RFC 5246 §7.2)."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    ILLEGAL_PARAMETER = 47
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    USER_CANCELED = 90
    NO_RENEGOTIATION = 100
    UNSUPPORTED_EXTENSION = 110


def alert_name(description: int) -> str:
    """'handshake_failure(40)' for logs; unknown codes print as their number."""
    try:
        return f"{AlertDescription(description).name.lower()}({description})"
    except ValueError:
        return f"alert({description})"


class DtlsError(Exception):
    """Something about the peer's bytes is wrong; ``reason`` says what, for logs.

    ``alert`` is the fatal alert to answer with, or None when the record is
    dropped silently.
    """

    alert: AlertDescription | None = None

    def __init__(self, reason: str, alert: AlertDescription | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if alert is not None:
            self.alert = alert


class DecodeError(DtlsError):
    """Bytes that do not parse as the structure they claim to be."""

    alert = AlertDescription.DECODE_ERROR


class HandshakeFailure(DtlsError):
    """The handshake cannot go on; answer with ``alert`` and forget the peer."""

    alert = AlertDescription.HANDSHAKE_FAILURE


class RecordError(DtlsError):
    """A record that must be dropped without an answer (RFC 6347 §4.1.2.7)."""

    alert = None


class BadRecordMac(RecordError):
    """A protected record whose CCM tag does not verify."""


class ReplayedRecord(RecordError):
    """A record whose sequence number the replay window has already seen."""


class StateError(Exception):
    """The local caller asked for something the connection cannot do now
    (send on a closed session, send more than a record holds)."""
