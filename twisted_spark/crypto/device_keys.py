# -*- test-case-name: tests.test_crypto_ec_keys -*-
"""Device public keys of either algorithm: RSA-1024 (Core, Photon, P1) or EC P-256 (Gen3).

API.md §4 names the algorithms ``rsa`` and ``ecc``; a key given without one
is taken for what it is.  Both are stored as SubjectPublicKeyInfo DER, whose
algorithm identifier says which is which (:func:`key_algorithm`), so the
device table needs no extra column.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, NamedTuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from twisted_spark.crypto import ec_keys, keys
from twisted_spark.crypto.keys import KeyFormatError

__all__ = [
    "ALGORITHMS",
    "ECC",
    "RSA",
    "DeviceKey",
    "der_fingerprint",
    "key_algorithm",
    "load_device_key",
    "load_stored_key",
]

RSA = "rsa"
ECC = "ecc"
ALGORITHMS = (RSA, ECC)


class DeviceKey(NamedTuple):
    """A device public key ready to store: its algorithm and its SPKI DER."""

    algorithm: str
    der: bytes

    @property
    def fingerprint(self) -> str:
        return der_fingerprint(self.der)


def _sniff(data: Any) -> tuple[str | None, KeyFormatError | None]:
    """The algorithm of whatever key ``data`` holds (None if no key we know), and why not."""
    try:
        key, _ = ec_keys.parse_key_material(data)
    except KeyFormatError as error:
        return None, error
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return RSA, None
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return ECC, None
    return None, None


def load_device_key(data: Any, algorithm: str | None = None) -> DeviceKey:
    """A device's public key, checked for its algorithm (inferred when ``algorithm`` is None).

    RSA keys go through :func:`twisted_spark.crypto.keys.load_device_public_key`
    (public keys only, 1024 bits); EC keys through
    :func:`twisted_spark.crypto.ec_keys.load_ec_device_public_key` (P-256,
    public or private key, of which only the public half is kept).  Data
    that is no key at all, with no algorithm given, gets the reason it could
    not be read.
    """
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise KeyFormatError(f"unknown key algorithm {algorithm!r}; use 'rsa' or 'ecc'")
    found, unreadable = _sniff(data)
    chosen = algorithm or found or RSA
    if chosen == RSA:
        try:
            key = keys.load_device_public_key(data)
        except KeyFormatError as error:
            if found == ECC:
                raise KeyFormatError(f"{error} (algorithm 'ecc' takes it)") from None
            if algorithm is None and unreadable is not None:
                raise unreadable from None
            raise
        return DeviceKey(RSA, keys.public_key_der(key))
    try:
        public = ec_keys.load_ec_device_public_key(data)
    except KeyFormatError as error:
        if found == RSA:
            raise KeyFormatError(f"{error} (algorithm 'rsa' takes it)") from None
        raise
    return DeviceKey(ECC, ec_keys.ec_public_key_der(public))


def load_stored_key(der: bytes) -> tuple[str, Any] | tuple[None, None]:
    """``("rsa", key)`` or ``("ecc", key)`` for a stored SPKI DER key, as an
    OpenSSL (``cryptography``) public key; ``(None, None)`` if it is neither
    (or not a key).  Parsing takes about a microsecond: no need to cache it.
    """
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None, None
    if isinstance(key, rsa.RSAPublicKey):
        return RSA, key
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECC, key
    return None, None


def key_algorithm(der: bytes) -> str | None:
    """``"rsa"`` or ``"ecc"`` for a stored SPKI DER key; None if it is neither (or not a key)."""
    return load_stored_key(der)[0]


def der_fingerprint(der: bytes) -> str:
    """``"SHA256:<unpadded base64>"`` of SPKI DER, as :func:`keys.fingerprint` writes it."""
    digest = hashlib.sha256(der).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")
