# -*- test-case-name: tests.test_dtls_crypto -*-
"""The TLS 1.2 PRF with SHA-256 and the secrets it derives (RFC 5246 §5, §6.3, §7.4.9).

No extended master secret: Device OS builds mbedTLS without
MBEDTLS_SSL_EXTENDED_MASTER_SECRET, so the device never offers it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

__all__ = [
    "MASTER_SECRET_LENGTH",
    "VERIFY_DATA_LENGTH",
    "KeyBlock",
    "derive_key_block",
    "derive_master_secret",
    "finished_verify_data",
    "prf",
]

MASTER_SECRET_LENGTH = 48
VERIFY_DATA_LENGTH = 12
KEY_LENGTH = 16  # AES-128
SALT_LENGTH = 4  # RFC 6655: the implicit part of the CCM nonce


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, hashlib.sha256)


def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed) = P_SHA256(secret, label + seed), ``length`` bytes."""
    seed = label + seed
    output = bytearray()
    a = seed
    while len(output) < length:
        a = _hmac(secret, a)
        output += _hmac(secret, a + seed)
    return bytes(output[:length])


def derive_master_secret(premaster: bytes, client_random: bytes, server_random: bytes) -> bytes:
    return prf(premaster, b"master secret", client_random + server_random, MASTER_SECRET_LENGTH)


class KeyBlock(NamedTuple):
    """The key material of AES-128-CCM-8: no MAC keys, a 4-byte salt per direction."""

    client_write_key: bytes
    server_write_key: bytes
    client_salt: bytes
    server_salt: bytes


def derive_key_block(master: bytes, client_random: bytes, server_random: bytes) -> KeyBlock:
    """RFC 5246 §6.3: note server_random comes first in this seed."""
    block = prf(
        master, b"key expansion", server_random + client_random, 2 * (KEY_LENGTH + SALT_LENGTH)
    )
    return KeyBlock(
        block[0:16],
        block[16:32],
        block[32:36],
        block[36:40],
    )


def finished_verify_data(master: bytes, from_client: bool, transcript_hash: bytes) -> bytes:
    """verify_data of a Finished message; ``transcript_hash`` is SHA-256 of the messages so far."""
    label = b"client finished" if from_client else b"server finished"
    return prf(master, label, transcript_hash, VERIFY_DATA_LENGTH)
