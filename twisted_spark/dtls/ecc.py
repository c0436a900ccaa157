# -*- test-case-name: tests.test_dtls_crypto -*-
"""P-256 keys and the expensive steps of the handshake, as work items.

Every ECDH and ECDSA operation of the handshake is one of the ``*_work``
functions below.  The state machines never call them: they return a
:class:`CryptoWork` and wait for its result, so the caller decides where it runs
(inline in tests, a thread pool under Twisted).  The functions are pure and
thread-safe: they read only their arguments.

Signatures are deterministic (RFC 6979), so with a fixed random source a
whole handshake is reproducible byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from twisted_spark.dtls.errors import AlertDescription, DtlsError, HandshakeFailure

__all__ = [
    "ClientKeyExchangeResult",
    "CryptoWork",
    "ServerKeyExchangeResult",
    "ServerVerifyResult",
    "client_key_exchange_work",
    "encode_point",
    "load_public_key",
    "private_key_from_bytes",
    "public_key_der",
    "server_key_exchange_work",
    "server_verify_work",
    "sign_digest",
    "sign_digest_work",
]

_CURVE = ec.SECP256R1()
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SCALAR_LENGTH = 32


class CryptoWork:
    """One expensive computation a state machine is waiting for.

    Run it anywhere with ``run()`` and hand the result back to the state
    machine that returned it.  A peer-caused failure (bad signature, bad
    point) comes back as a :class:`DtlsError` value rather than an exception, so a
    thread pool's error path only ever sees bugs.
    """

    __slots__ = ("args", "function", "label")

    def __init__(self, label: str, function: Callable[..., Any], *args: Any) -> None:
        self.label = label
        self.function = function
        self.args = args

    def run(self) -> Any:
        try:
            return self.function(*self.args)
        except DtlsError as error:
            return error

    def __repr__(self) -> str:
        return f"<CryptoWork {self.label}>"


def private_key_from_bytes(secret: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key whose scalar comes from 32 random bytes (mapped into [1, n-1])."""
    scalar = int.from_bytes(secret, "big") % (_ORDER - 1) + 1
    return ec.derive_private_key(scalar, _CURVE)


def encode_point(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed point (0x04 || X || Y) that key exchange messages carry."""
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def public_key_der(key: ec.EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo DER, the form of a raw public key certificate."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(der: bytes, what: str = "peer public key") -> ec.EllipticCurvePublicKey:
    """A P-256 public key from strict SubjectPublicKeyInfo DER, or :class:`HandshakeFailure`."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise HandshakeFailure(
            f"{what} is not a SubjectPublicKeyInfo ({error})", AlertDescription.BAD_CERTIFICATE
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _CURVE.name:
        raise HandshakeFailure(
            f"{what} is not an EC P-256 key", AlertDescription.UNSUPPORTED_CERTIFICATE
        )
    if public_key_der(key) != der:
        raise HandshakeFailure(f"{what} is not in canonical DER", AlertDescription.BAD_CERTIFICATE)
    return key


def _load_point(point: bytes, what: str) -> ec.EllipticCurvePublicKey:
    if len(point) != 65 or point[0] != 4:
        raise HandshakeFailure(
            f"{what} is not an uncompressed P-256 point", AlertDescription.ILLEGAL_PARAMETER
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)
    except ValueError:
        raise HandshakeFailure(
            f"{what} is not on the P-256 curve", AlertDescription.ILLEGAL_PARAMETER
        ) from None


def _ecdsa(deterministic: bool = True) -> ec.ECDSA:
    return ec.ECDSA(Prehashed(hashes.SHA256()), deterministic_signing=deterministic)


def sign_digest(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """DER ECDSA signature of a SHA-256 digest, deterministic (RFC 6979) where
    the OpenSSL underneath supports it (3.2 and later), random-k otherwise."""
    try:
        return key.sign(digest, _ecdsa())
    except UnsupportedAlgorithm:
        return key.sign(digest, _ecdsa(False))


def _verify_digest(key: ec.EllipticCurvePublicKey, signature: bytes, digest: bytes) -> bool:
    try:
        key.verify(signature, digest, _ecdsa(False))
    except (InvalidSignature, ValueError):
        return False
    return True


def _sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def _exchange(private: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey) -> bytes:
    try:
        return private.exchange(ec.ECDH(), peer)
    except ValueError:
        raise HandshakeFailure(
            "ECDH failed on the peer's point", AlertDescription.ILLEGAL_PARAMETER
        ) from None


class ServerKeyExchangeResult(NamedTuple):
    ephemeral_key: ec.EllipticCurvePrivateKey
    point: bytes
    signature: bytes


def server_key_exchange_work(
    server_key: ec.EllipticCurvePrivateKey,
    ephemeral_secret: bytes,
    randoms: bytes,
    encode_params: Callable[[bytes], bytes],
) -> ServerKeyExchangeResult:
    """The server's ephemeral key and its signature over randoms + ServerECDHParams."""
    ephemeral = private_key_from_bytes(ephemeral_secret)
    point = encode_point(ephemeral.public_key())
    signature = sign_digest(server_key, _sha256(randoms + encode_params(point)))
    return ServerKeyExchangeResult(ephemeral, point, signature)


class ServerVerifyResult(NamedTuple):
    premaster: bytes
    client_public_key: bytes  # SPKI DER, as the device sent it


def server_verify_work(
    ephemeral_key: ec.EllipticCurvePrivateKey,
    client_point: bytes,
    client_public_der: bytes,
    signature: bytes,
    transcript_digest: bytes,
) -> ServerVerifyResult:
    """ECDH with the client's point and the check of its CertificateVerify."""
    client_key = load_public_key(client_public_der, "client raw public key")
    peer = _load_point(client_point, "ClientKeyExchange point")
    if not _verify_digest(client_key, signature, transcript_digest):
        raise HandshakeFailure(
            "CertificateVerify signature does not match the client's key",
            AlertDescription.DECRYPT_ERROR,
        )
    return ServerVerifyResult(_exchange(ephemeral_key, peer), client_public_der)


class ClientKeyExchangeResult(NamedTuple):
    point: bytes
    premaster: bytes


def client_key_exchange_work(
    server_public: ec.EllipticCurvePublicKey,
    signed: bytes,
    signature: bytes,
    server_point: bytes,
    ephemeral_secret: bytes,
) -> ClientKeyExchangeResult:
    """The device's side: check the ServerKeyExchange signature, then ECDHE."""
    if not _verify_digest(server_public, signature, _sha256(signed)):
        raise HandshakeFailure(
            "ServerKeyExchange signature does not match the server key",
            AlertDescription.DECRYPT_ERROR,
        )
    peer = _load_point(server_point, "ServerKeyExchange point")
    ephemeral = private_key_from_bytes(ephemeral_secret)
    return ClientKeyExchangeResult(encode_point(ephemeral.public_key()), _exchange(ephemeral, peer))


def sign_digest_work(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    return sign_digest(key, digest)
