# -*- test-case-name: tests.test_dtls_transcripts -*-
"""A sans-IO DTLS 1.2 server and client for Particle's Gen3 dialect.

Gen3/Gen4 devices (Argon, Boron, P2, ...) speak DTLS 1.2 over UDP with one
suite (ECDHE-ECDSA-AES128-CCM8 on P-256), raw public keys, no server
Certificate, the draft-05 connection ID and a type-253 record to resume a
saved session; see shared/reference/gen3-dtls.md.  No I/O and no Twisted
here: :class:`DtlsServer` (one UDP port) and :class:`ClientHandshake` (one device) take
datagrams and times and return :class:`Output`: datagrams, events and
:class:`CryptoWork` to run wherever the caller likes.

Modules, bottom up: errors, wire (numbers, bounded reader), prf, record
(headers), protection (AES-CCM-8 and the CID layout), replay, layer (epochs),
fragments, flight (retransmission), messages, negotiation, ecc (keys and
work), cookie, session (state and table), events, connection (established
session), handshake (shared), server, client, endpoint.
"""

from twisted_spark.dtls.client import ClientConfig, ClientHandshake, resume
from twisted_spark.dtls.connection import Connection
from twisted_spark.dtls.ecc import CryptoWork
from twisted_spark.dtls.endpoint import DtlsServer
from twisted_spark.dtls.errors import (
    AlertDescription,
    BadRecordMac,
    DecodeError,
    DtlsError,
    HandshakeFailure,
    RecordError,
    ReplayedRecord,
    StateError,
)
from twisted_spark.dtls.events import (
    AddressChanged,
    ApplicationData,
    Closed,
    Dropped,
    HandshakeComplete,
    Output,
    SessionCheckpoint,
)
from twisted_spark.dtls.flight import RetransmitPolicy
from twisted_spark.dtls.server import ServerConfig, ServerHandshake
from twisted_spark.dtls.session import SessionState, SessionTable

__all__ = [
    "AddressChanged",
    "AlertDescription",
    "ApplicationData",
    "BadRecordMac",
    "ClientConfig",
    "ClientHandshake",
    "Closed",
    "Connection",
    "CryptoWork",
    "DecodeError",
    "Dropped",
    "DtlsError",
    "DtlsServer",
    "HandshakeComplete",
    "HandshakeFailure",
    "Output",
    "RecordError",
    "ReplayedRecord",
    "RetransmitPolicy",
    "ServerConfig",
    "ServerHandshake",
    "SessionCheckpoint",
    "SessionState",
    "SessionTable",
    "StateError",
    "resume",
]
