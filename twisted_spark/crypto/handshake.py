# -*- test-case-name: tests.test_crypto_handshake -*-
"""Sans-IO RSA handshake steps, server and device side (PROTOCOL.md §3).

Server side, in protocol order::

    nonce = make_nonce()                                   # H1, cheap
    identity = decrypt_identity(server_key, blob256, nonce) # H2, PRIVATE-KEY WORK
    session, blob384 = build_session_blob(server_key, device_key)  # H3, PRIVATE-KEY WORK

Only :func:`decrypt_identity` and :func:`build_session_blob` (through :func:`sign_raw`) use
the server's private key; they are the two calls to run in a thread pool.
They do both private-key operations through OpenSSL (``cryptography``), which
keeps no per-call state of its own, so one key object can be shared by all
threads.  They accept a pycryptodome :class:`RsaKey` too, converted on every
call (0.4 ms): the device server converts its key once with
:func:`~twisted_spark.crypto.keys.openssl_private_key`.  Measured with
bench/bench_codec.py (RSA-2048, 2-core VM): OpenSSL decrypts and signs in
0.26 ms each where pycryptodome 4.4 took 0.97 ms each.

OpenSSL 3.2+ answers a blob with bad PKCS#1 padding with pseudo-random bytes
("implicit rejection") rather than an error, which the nonce check refuses.
Only then, to say *why* in the log, a failed blob is decrypted once more by
pycryptodome's constant-time routine; every refused blob pays that, whatever
the reason, so the time taken tells a sender nothing about its padding.

Device side (for the simulator): :func:`encrypt_identity` and :func:`open_session_blob`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

from Crypto.Cipher import PKCS1_v1_5
from Crypto.PublicKey import RSA
from Crypto.PublicKey.RSA import RsaKey
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo

from twisted_spark.crypto.keys import (
    DEVICE_KEY_BITS,
    KeyFormatError,
    load_device_public_key,
    normalize_device_id,
    openssl_private_key,
    public_key_der,
)

__all__ = [
    "DEVICE_ID_LENGTH",
    "IDENTITY_LENGTH",
    "NONCE_LENGTH",
    "SESSION_BLOB_LENGTH",
    "SESSION_LENGTH",
    "DevicePublicKey",
    "HandshakeError",
    "Identity",
    "ServerKey",
    "SessionKeys",
    "build_session_blob",
    "decrypt_identity",
    "encrypt_identity",
    "encrypt_session",
    "make_nonce",
    "open_session_blob",
    "read_identity",
    "session_hmac",
    "session_seeds",
    "sign_raw",
    "split_session",
    "verify_raw",
]

NONCE_LENGTH = 40
DEVICE_ID_LENGTH = 12
IDENTITY_LENGTH = 256  # RSA-2048 ciphertext
CORE_IDENTITY_PLAINTEXT = NONCE_LENGTH + DEVICE_ID_LENGTH  # 52
SESSION_LENGTH = 40
SESSION_CIPHERTEXT_LENGTH = 128  # RSA-1024 ciphertext
SIGNATURE_LENGTH = 256  # RSA-2048 signature
SESSION_BLOB_LENGTH = SESSION_CIPHERTEXT_LENGTH + SIGNATURE_LENGTH  # 384

RandBytes = Callable[[int], bytes]
ServerKey = RSAPrivateKey | RsaKey
"""The server's RSA-2048 private key: OpenSSL's (fast) or pycryptodome's."""
DevicePublicKey = RSAPublicKey | RsaKey
"""A device's RSA-1024 public key: OpenSSL's (fast, what the server uses) or pycryptodome's."""

_PKCS1 = PKCS1v15()
_NO_DIGEST_INFO = NoDigestInfo()


class HandshakeError(Exception):
    """The handshake cannot go on; ``reason`` says why (for logs)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    """What a device said about itself in H2.

    ``public_key_der`` is the SPKI DER the device sent (Photon and later,
    re-encoded canonically), or None (Core).
    """

    device_id: str
    public_key_der: bytes | None = None


class SessionKeys(NamedTuple):
    """The three parts of the 40-byte session secret (§3 H3)."""

    aes_key: bytes
    iv: bytes
    salt: bytes


def make_nonce(randbytes: RandBytes = os.urandom) -> bytes:
    """The 40 random bytes the server sends first (H1)."""
    nonce = randbytes(NONCE_LENGTH)
    if len(nonce) != NONCE_LENGTH:
        raise ValueError("randbytes returned the wrong number of bytes")
    return nonce


def split_session(session: bytes) -> SessionKeys:
    """Split the session secret into AES key, initial IV and salt."""
    if len(session) != SESSION_LENGTH:
        raise ValueError(f"session must be {SESSION_LENGTH} bytes, got {len(session)}")
    return SessionKeys(bytes(session[:16]), bytes(session[16:32]), bytes(session[32:40]))


def session_seeds(session: bytes) -> tuple[int, int]:
    """The device's initial (message-id counter, token counter) from the salt.

    The device's first message (its Hello) uses message id seed + 1.
    """
    salt = split_session(session).salt
    return int.from_bytes(salt[0:2], "big"), salt[2]


def _rsa_block(key: RsaKey) -> int:
    return key.size_in_bytes()


def _openssl(key: ServerKey) -> RSAPrivateKey:
    if isinstance(key, RsaKey):
        return openssl_private_key(key, validate=False)
    return key


def _pycryptodome(key: ServerKey) -> RsaKey:
    if isinstance(key, RsaKey):
        return key
    numbers = key.private_numbers()
    public = numbers.public_numbers
    return RSA.construct(
        (public.n, public.e, numbers.d, numbers.p, numbers.q), consistency_check=False
    )


def _why_refused(server_private_key: ServerKey, blob: bytes, reason: str) -> HandshakeError:
    """The error for a refused identity blob, naming bad padding when that is the cause.

    Runs for every refused blob (see the module docstring), in constant time
    as far as the padding goes: pycryptodome's decoder returns the sentinel
    for bad padding without a separate code path.
    """
    sentinel = os.urandom(IDENTITY_LENGTH - 11)
    try:
        plaintext = PKCS1_v1_5.new(_pycryptodome(server_private_key)).decrypt(blob, sentinel)
    except ValueError as exc:  # wrong size or >= modulus
        return HandshakeError(f"identity blob does not decrypt: {exc}")
    if hmac.compare_digest(plaintext, sentinel):
        return HandshakeError(
            "identity blob does not decrypt (bad PKCS#1 padding): the device was probably "
            "given another server's public key"
        )
    return HandshakeError(reason)


# -- server side --------------------------------------------------------------


def decrypt_identity(server_private_key: ServerKey, blob: bytes, nonce: bytes) -> Identity:
    """Decrypt and check the device's 256-byte identity blob (H2).

    PRIVATE-KEY WORK: run it off the reactor thread.
    Raises :class:`HandshakeError` for a wrong length, undecryptable blob,
    short plaintext, nonce mismatch or a malformed embedded public key.
    """
    if len(blob) != IDENTITY_LENGTH:
        raise HandshakeError(f"identity blob is {len(blob)} bytes, expected {IDENTITY_LENGTH}")
    if len(nonce) != NONCE_LENGTH:
        raise HandshakeError(f"nonce is {len(nonce)} bytes, expected {NONCE_LENGTH}")
    blob = bytes(blob)
    try:
        plaintext = _openssl(server_private_key).decrypt(blob, _PKCS1)
    except ValueError:  # >= modulus, or bad padding without implicit rejection
        raise _why_refused(server_private_key, blob, "identity blob does not decrypt") from None
    if len(plaintext) < CORE_IDENTITY_PLAINTEXT:
        raise _why_refused(
            server_private_key,
            blob,
            f"identity plaintext is {len(plaintext)} bytes, expected at least "
            f"{CORE_IDENTITY_PLAINTEXT}",
        )
    if not hmac.compare_digest(plaintext[:NONCE_LENGTH], nonce):
        raise _why_refused(server_private_key, blob, "identity blob does not echo our nonce")
    return read_identity(plaintext)


def read_identity(plaintext: bytes) -> Identity:
    """The device id and key after the nonce of a decrypted identity (H2).

    Raises :class:`HandshakeError` when it is too short or the key is malformed.
    """
    if len(plaintext) < CORE_IDENTITY_PLAINTEXT:
        raise HandshakeError(
            f"identity plaintext is {len(plaintext)} bytes, expected at least "
            f"{CORE_IDENTITY_PLAINTEXT}"
        )
    device_id = plaintext[NONCE_LENGTH:CORE_IDENTITY_PLAINTEXT].hex()
    key_der: bytes | None = None
    if len(plaintext) > CORE_IDENTITY_PLAINTEXT:
        key_der = _canonical_device_key(plaintext[CORE_IDENTITY_PLAINTEXT:])
    return Identity(device_id, key_der)


def _canonical_device_key(data: bytes) -> bytes:
    """The SPKI DER of the RSA-1024 key a device sent after its id.

    Devices send SPKI DER, which OpenSSL parses and re-encodes in a few
    microseconds; anything else (PKCS#1, another size) takes the lenient
    pycryptodome path, which is 100x slower but says what is wrong.
    """
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError):
        key = None
    if isinstance(key, RSAPublicKey) and key.key_size == DEVICE_KEY_BITS:
        return key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    try:
        return public_key_der(load_device_public_key(data))
    except KeyFormatError as exc:
        raise HandshakeError(f"device sent a malformed public key: {exc}") from None


def encrypt_session(device_public_key: DevicePublicKey, session: bytes) -> bytes:
    """C: the session secret under the device key, PKCS#1 v1.5 type 2 (128 bytes).

    With an OpenSSL key (what the device server passes) this costs 0.02 ms;
    pycryptodome takes 0.15 ms.
    """
    if isinstance(device_public_key, RsaKey):
        return PKCS1_v1_5.new(device_public_key).encrypt(session)
    return device_public_key.encrypt(session, _PKCS1)


def _key_bits(key: DevicePublicKey) -> int:
    return key.size_in_bits() if isinstance(key, RsaKey) else key.key_size


def session_hmac(session: bytes, ciphertext: bytes) -> bytes:
    """H = HMAC-SHA1(key=session, msg=C), 20 bytes."""
    return hmac.new(session, ciphertext, hashlib.sha1).digest()


def _type1_block(message: bytes, size: int) -> bytes:
    return b"\x00\x01" + b"\xff" * (size - 3 - len(message)) + b"\x00" + message


def sign_raw(server_private_key: ServerKey, message: bytes) -> bytes:
    """Raw PKCS#1 v1.5 type-1 signature, no hashing and no DigestInfo.

    S = (00 01 FF..FF 00 || message)^d mod n, i.e. OpenSSL's
    RSA_private_encrypt with PKCS#1 padding.  PRIVATE-KEY WORK.
    """
    key = _openssl(server_private_key)
    if len(message) > key.key_size // 8 - 11:
        raise ValueError("message too long for a raw RSA signature")
    return key.sign(message, _PKCS1, _NO_DIGEST_INFO)


def verify_raw(public_key: RsaKey | RSAPublicKey, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is the raw type-1 signature of ``message``."""
    if isinstance(public_key, RSAPublicKey):
        if len(signature) != public_key.key_size // 8:
            return False
        try:
            recovered = public_key.recover_data_from_signature(signature, _PKCS1, None)
        except (InvalidSignature, ValueError):
            return False
        return hmac.compare_digest(recovered, message)
    size = _rsa_block(public_key)
    if len(signature) != size:
        return False
    value = int.from_bytes(signature, "big")
    if value >= public_key.n:
        return False
    recovered = pow(value, public_key.e, public_key.n).to_bytes(size, "big")
    return hmac.compare_digest(recovered, _type1_block(message, size))


def build_session_blob(
    server_private_key: ServerKey,
    device_public_key: DevicePublicKey,
    session: bytes | None = None,
    randbytes: RandBytes = os.urandom,
) -> tuple[bytes, bytes]:
    """Make the session secret and the 384-byte C || S blob (H3).

    PRIVATE-KEY WORK (the signature): run it off the reactor thread.
    Returns (session40, blob384).
    """
    if session is None:
        session = randbytes(SESSION_LENGTH)
    if len(session) != SESSION_LENGTH:
        raise ValueError(f"session must be {SESSION_LENGTH} bytes, got {len(session)}")
    bits = _key_bits(device_public_key)
    if bits != DEVICE_KEY_BITS:
        raise HandshakeError(f"device key is RSA-{bits}, expected RSA-{DEVICE_KEY_BITS}")
    ciphertext = encrypt_session(device_public_key, session)
    signature = sign_raw(server_private_key, session_hmac(session, ciphertext))
    return bytes(session), ciphertext + signature


# -- device side (simulator) ----------------------------------------------------


def encrypt_identity(
    server_public_key: RsaKey | RSAPublicKey,
    nonce: bytes,
    device_id: bytes | str,
    device_public_key_der: bytes | None = None,
) -> bytes:
    """Device side of H2: RSA-encrypt nonce || id [|| key DER] for the server.

    ``device_id`` is 12 raw bytes or 24 hex characters.
    """
    if isinstance(device_id, str):
        device_id = bytes.fromhex(normalize_device_id(device_id))
    if len(device_id) != DEVICE_ID_LENGTH:
        raise ValueError(f"device id must be {DEVICE_ID_LENGTH} bytes, got {len(device_id)}")
    if len(nonce) != NONCE_LENGTH:
        raise ValueError(f"nonce must be {NONCE_LENGTH} bytes, got {len(nonce)}")
    plaintext = bytes(nonce) + bytes(device_id) + bytes(device_public_key_der or b"")
    if isinstance(server_public_key, RSAPublicKey):
        return server_public_key.encrypt(plaintext, _PKCS1)
    return PKCS1_v1_5.new(server_public_key).encrypt(plaintext)


def open_session_blob(
    device_private_key: RsaKey | RSAPrivateKey,
    server_public_key: RsaKey | RSAPublicKey,
    blob: bytes,
) -> bytes:
    """Device side of H3: decrypt C, check the server's signature, return the session.

    Raises :class:`HandshakeError` when the blob is the wrong size, C does not
    decrypt to 40 bytes, or S is not the server's signature of HMAC(C).  With
    an OpenSSL key (7x faster) bad padding may decrypt to random bytes
    (OpenSSL 3.2+'s implicit rejection) and be reported as one of the others.
    """
    if len(blob) != SESSION_BLOB_LENGTH:
        raise HandshakeError(
            f"session blob is {len(blob)} bytes, expected {SESSION_BLOB_LENGTH}"
        )
    ciphertext = bytes(blob[:SESSION_CIPHERTEXT_LENGTH])
    signature = bytes(blob[SESSION_CIPHERTEXT_LENGTH:])
    sentinel = object()
    try:
        if isinstance(device_private_key, RSAPrivateKey):
            session = device_private_key.decrypt(ciphertext, _PKCS1)
        else:
            session = PKCS1_v1_5.new(device_private_key).decrypt(ciphertext, cast(bytes, sentinel))
    except ValueError as exc:
        raise HandshakeError(f"session key does not decrypt: {exc}") from None
    if session is sentinel or not isinstance(session, bytes):
        raise HandshakeError("session key does not decrypt (bad PKCS#1 padding)")
    if len(session) != SESSION_LENGTH:
        raise HandshakeError(f"session key is {len(session)} bytes, expected {SESSION_LENGTH}")
    if not verify_raw(server_public_key, signature, session_hmac(session, ciphertext)):
        raise HandshakeError("server signature does not match the session key")
    return bytes(session)
