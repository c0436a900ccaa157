# -*- test-case-name: tests.test_crypto_keys -*-
"""Cryptography of the device link: keys, the RSA handshake, the AES channel.

Pure functions and small classes; no I/O and no Twisted.  See PROTOCOL.md
§2-§4.
"""

from twisted_spark.crypto.channel import (
    AesCbcChannel,
    FrameError,
    FrameReader,
    frame,
)
from twisted_spark.crypto.handshake import (
    HandshakeError,
    Identity,
    SessionKeys,
    build_session_blob,
    decrypt_identity,
    encrypt_identity,
    make_nonce,
    open_session_blob,
    split_session,
)
from twisted_spark.crypto.keys import (
    KeyFormatError,
    fingerprint,
    generate_server_key,
    load_device_public_key,
    load_server_private_key,
    normalize_device_id,
    public_key_der,
    public_key_pem,
    server_key_files,
)

__all__ = [
    "AesCbcChannel",
    "FrameError",
    "FrameReader",
    "HandshakeError",
    "Identity",
    "KeyFormatError",
    "SessionKeys",
    "build_session_blob",
    "decrypt_identity",
    "encrypt_identity",
    "fingerprint",
    "frame",
    "generate_server_key",
    "load_device_public_key",
    "load_server_private_key",
    "make_nonce",
    "normalize_device_id",
    "open_session_blob",
    "public_key_der",
    "public_key_pem",
    "server_key_files",
    "split_session",
]
