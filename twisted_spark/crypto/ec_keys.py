# -*- test-case-name: tests.test_crypto_ec_keys -*-
"""EC P-256 keys: Gen3 device keys and the server's key for the UDP/DTLS port.

Gen3 and later devices (Argon, Boron, P2, ...) own an EC P-256 key pair and
know the server by its EC P-256 public key (``shared/reference/gen3-dtls.md``).
The server stores a device's public key as SubjectPublicKeyInfo DER, the
same column RSA keys use; the algorithm is part of that DER, so nothing else
records it (:func:`twisted_spark.crypto.device_keys.key_algorithm`).

A device key may be given as its public key (SPKI, PEM or DER, or base64 of
the DER) or as its private key (SEC1 ``EC PRIVATE KEY`` or PKCS#8, e.g. what
``particle keys save`` or ``openssl ecparam -genkey`` writes): only the
public half is kept.  Anything else raises
:class:`~twisted_spark.crypto.keys.KeyFormatError` saying what was found.

Like :mod:`twisted_spark.crypto.keys`, nothing here touches the file system.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from twisted_spark.crypto.keys import KeyFormatError

__all__ = [
    "CURVE_NAME",
    "describe_key",
    "ec_public_key_der",
    "generate_server_ec_key",
    "load_ec_device_public_key",
    "load_server_ec_private_key",
    "parse_key_material",
    "server_ec_key_files",
]

#: The only curve Device OS uses (``crypto/inc/mbedtls_config_default.h``).
CURVE_NAME = "secp256r1"

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL)
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\s]+")
#: PEM blocks that travel with a key but are not one (``openssl ecparam -genkey``).
_NOT_KEYS = (b"EC PARAMETERS",)


def _pem_key_block(text: bytes) -> bytes:
    """The DER of the one key block in PEM ``text``, skipping ``EC PARAMETERS``."""
    blocks = []
    for match in _PEM_BLOCK.finditer(text):
        label, body, end = match.groups()
        if label != end:
            raise KeyFormatError(
                f"malformed PEM: BEGIN {label.decode()} ends with END {end.decode()}"
            )
        if label not in _NOT_KEYS:
            blocks.append((label, body))
    if not blocks:
        raise KeyFormatError("no key in this PEM text (no BEGIN ... KEY block)")
    if len(blocks) > 1:
        labels = ", ".join(label.decode() for label, _ in blocks)
        raise KeyFormatError(f"found {len(blocks)} PEM blocks ({labels}); give one key")
    label, body = blocks[0]
    if b"ENCRYPTED" in label or b"Proc-Type: 4,ENCRYPTED" in body:
        raise KeyFormatError("this private key is encrypted; decrypt it first (openssl ec -in ...)")
    lines = [line for line in body.split(b"\n") if b":" not in line]  # drop PEM headers
    try:
        return base64.b64decode(b"".join(b"".join(lines).split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"bad base64 in the PEM {label.decode()} block") from None


def _der_length(der: bytes) -> int | None:
    """The length of the DER element at the start of ``der`` (header included), if readable."""
    if len(der) < 2:
        return None
    first = der[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if not 1 <= count <= 2 or len(der) < 2 + count:
        return None
    return 2 + count + int.from_bytes(der[2 : 2 + count], "big")


def _trim_padding(der: bytes) -> bytes:
    """Drop the 0xFF (or 0x00) fill after a key read from a device's DCT.

    ``particle keys save`` writes the whole 192-byte key slot: the DER key,
    then the erased flash after it.  Other trailing bytes are an error.
    """
    length = _der_length(der)
    if length is None or length >= len(der):
        return der
    rest = der[length:]
    if rest.strip(b"\xff") and rest.strip(b"\x00"):
        raise KeyFormatError(f"{len(rest)} bytes follow the DER key and are not padding")
    return der[:length]


def _to_der(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise KeyFormatError(
                "not a PEM or DER key: text contains non-ASCII characters"
            ) from None
    raw = bytes(data)
    if raw[:1] == b"\x30":  # DER SEQUENCE: binary, never strip it
        return _trim_padding(raw)
    text = raw.strip()
    if not text:
        raise KeyFormatError("not a PEM or DER key: empty input")
    if b"-----BEGIN " in text:
        return _pem_key_block(text)
    if _BASE64_TEXT.fullmatch(text):
        try:
            der = base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            der = b""
        if der[:1] == b"\x30":
            return der
        raise KeyFormatError("not a PEM or DER key: text is not base64 of a DER key")
    raise KeyFormatError(f"not a PEM or DER key: unrecognised data starting {raw[:8].hex()}")


def parse_key_material(data: Any) -> tuple[Any, bool]:
    """``(key, is_private)`` for PEM, DER or base64-DER key bytes of any algorithm.

    Public keys are SPKI (or PKCS#1 for RSA); private keys PKCS#8, SEC1 or
    PKCS#1, unencrypted.  Raises :class:`KeyFormatError`.
    """
    der = _to_der(data)
    try:
        return serialization.load_der_public_key(der), False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    try:
        return serialization.load_der_private_key(der, password=None), True
    except TypeError:
        raise KeyFormatError("this private key is encrypted; decrypt it first") from None
    except (ValueError, UnsupportedAlgorithm) as error:
        raise KeyFormatError(f"not a PEM or DER key ({error})") from None


def describe_key(key: Any, is_private: bool) -> str:
    """Words for what a key is: ``"an RSA-1024 public key"``, ``"an EC secp384r1 private key"``."""
    kind = "private" if is_private else "public"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"an RSA-{key.key_size} {kind} key"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        curve = "P-256" if key.curve.name == CURVE_NAME else key.curve.name
        return f"an EC {curve} {kind} key"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return f"an Ed25519 {kind} key"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return f"an Ed448 {kind} key"
    if isinstance(key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
        return f"a DSA {kind} key"
    return f"a {type(key).__name__}"


def load_ec_device_public_key(data: Any) -> ec.EllipticCurvePublicKey:
    """A Gen3 device's EC P-256 public key, from its public or its private key."""
    key, is_private = parse_key_material(data)
    if not isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        raise KeyFormatError(f"expected an EC P-256 key, found {describe_key(key, is_private)}")
    if key.curve.name != CURVE_NAME:
        raise KeyFormatError(
            f"expected an EC P-256 key, found {describe_key(key, is_private)} "
            "(Gen3 devices use P-256 only)"
        )
    return key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key


def ec_public_key_der(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """SubjectPublicKeyInfo DER (91 bytes for P-256): what is stored and what a device holds."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_server_ec_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 server key (fast: no need to leave the reactor thread for it)."""
    return ec.generate_private_key(ec.SECP256R1())


def load_server_ec_private_key(data: Any) -> ec.EllipticCurvePrivateKey:
    """The server's EC P-256 private key (PEM or DER, PKCS#8 or SEC1)."""
    key, is_private = parse_key_material(data)
    if not is_private:
        raise KeyFormatError("this is a public key; the server needs its private key")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != CURVE_NAME:
        raise KeyFormatError(
            f"expected an EC P-256 server key, found {describe_key(key, is_private)}"
        )
    return key


def server_ec_key_files(key: ec.EllipticCurvePrivateKey) -> dict[str, bytes]:
    """Contents of the server's EC key files, by name.

    ``server_key_ec.pem`` (PKCS#8 private PEM), ``server_key_ec.pub.pem``
    (SPKI PEM) and ``server_key_ec.pub.der`` (SPKI DER, 91 bytes: the key a
    Gen3 device holds, first part of the server-key block).
    """
    public = key.public_key()
    return {
        "server_key_ec.pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "server_key_ec.pub.pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "server_key_ec.pub.der": ec_public_key_der(public),
    }
