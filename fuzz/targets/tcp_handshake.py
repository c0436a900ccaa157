# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The TCP handshake (PROTOCOL.md §3): the identity a device sends, and the byte counting.

The first byte picks the half:

* even: the rest is a decrypted identity blob after our nonce (device id, then
  the DER, PEM or base64 key a Photon sends): :func:`read_identity` returns an
  :class:`Identity` or raises :class:`HandshakeError`, nothing else;
* odd: the rest is what a client sends on a fresh connection of the real
  device factory, cut into TCP reads at the separator.  Contract: more than
  the 256-byte identity closes the connection, a 256-byte blob that is not
  an identity encrypted for our key closes it with a handshake refusal, and
  nothing is logged as an internal error.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from fuzz.cloud import device_cloud
from fuzz.harness import ContractBroken, FailureLog, connection_done, split
from twisted_spark.crypto.handshake import (
    CORE_IDENTITY_PLAINTEXT,
    HandshakeError,
    read_identity,
)

FAILURES = FailureLog().start()


def _identity(plaintext: bytes) -> None:
    try:
        identity = read_identity(plaintext)
    except HandshakeError:
        return
    if len(identity.device_id) != 24:
        raise ContractBroken(f"device id {identity.device_id!r}")
    if identity.public_key_der is None and len(plaintext) != CORE_IDENTITY_PLAINTEXT:
        raise ContractBroken("extra identity bytes were ignored")


def _connection(reads: list[bytes]) -> None:
    harness = device_cloud()
    protocol = harness.cloud.devices.buildProtocol(harness.address)
    transport = StringTransport()
    protocol.makeConnection(transport)
    sent = 0
    for data in reads:
        protocol.dataReceived(data)
        sent += len(data)
        if sent > 256 and not transport.disconnecting:
            raise ContractBroken(f"{sent} bytes accepted before the server answered")
    protocol.connectionLost(connection_done())
    FAILURES.check()


def one_input(data: bytes) -> None:
    FAILURES.clear()
    if not data:
        return
    if data[0] % 2 == 0:
        _identity(data[1:])
    else:
        _connection(split(data[1:]))
