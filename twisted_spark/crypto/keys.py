# -*- test-case-name: tests.test_crypto_keys -*-
"""RSA key loading, export and identification for devices and the server.

Devices own RSA-1024 key pairs; the server stores only their public halves
(PROTOCOL.md §2.2, §2.4).  The server owns one RSA-2048 key pair with
e = 65537, the only shape the device firmware can use (§2.3).

Nothing here touches the file system: callers pass bytes in and write the
bytes that come out (with whatever file modes they need).

Fingerprints are written OpenSSH-style: ``"SHA256:"`` followed by the
unpadded base64 of the SHA-256 of the key's SubjectPublicKeyInfo DER.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable

from Crypto.IO import PEM
from Crypto.PublicKey import ECC, RSA
from Crypto.PublicKey.RSA import RsaKey
from cryptography.hazmat.primitives.asymmetric import rsa as openssl_rsa

__all__ = [
    "DEVICE_KEY_BITS",
    "SERVER_KEY_BITS",
    "KeyFormatError",
    "RsaKey",
    "fingerprint",
    "generate_server_key",
    "load_device_public_key",
    "load_server_private_key",
    "normalize_device_id",
    "openssl_private_key",
    "openssl_public_key",
    "public_key_der",
    "public_key_pem",
    "server_key_files",
]

DEVICE_KEY_BITS = 1024
SERVER_KEY_BITS = 2048
SERVER_KEY_EXPONENT = 65537

KeyData = bytes | bytearray | memoryview | str

_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\s]+")
_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PUBLIC_LABELS = (b"PUBLIC KEY", b"RSA PUBLIC KEY")
_DEVICE_ID = re.compile(r"[0-9a-fA-F]{24}")


class KeyFormatError(ValueError):
    """A key was not in a usable format; the message says what was found."""


def _as_bytes(data: KeyData) -> bytes:
    if isinstance(data, str):
        try:
            return data.encode("ascii")
        except UnicodeEncodeError:
            raise KeyFormatError(
                "not a PEM or DER RSA key: text contains non-ASCII characters"
            ) from None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"key data must be bytes or str, not {type(data).__name__}")


def _pem_to_der(text: bytes) -> bytes:
    """Decode one PEM block; refuse private keys and non-key blocks early."""
    match = _PEM_LABEL.match(text)
    if match is None:
        raise KeyFormatError("not a PEM or DER RSA key: malformed PEM header")
    label = match.group(1)
    if b"PRIVATE KEY" in label:
        raise KeyFormatError(
            f"this is a private key ({label.decode()}); give the public key"
        )
    if label not in _PUBLIC_LABELS:
        raise KeyFormatError(
            f"not a PEM or DER RSA key: found a PEM {label.decode()!r} block"
        )
    try:
        der, _marker, _encrypted = PEM.decode(text.decode("ascii"))
    except (ValueError, IndexError, binascii.Error) as exc:
        raise KeyFormatError(f"not a PEM or DER RSA key: bad PEM ({exc})") from None
    return der


def _to_der(data: KeyData) -> bytes:
    """Turn PEM, DER or base64-of-DER input into DER bytes."""
    raw = _as_bytes(data)
    if raw[:1] == b"\x30":  # DER SEQUENCE; never strip binary data
        return raw
    text = raw.strip()
    if not text:
        raise KeyFormatError("not a PEM or DER RSA key: empty input")
    if text.startswith(b"-----BEGIN "):
        return _pem_to_der(text)
    if _BASE64_TEXT.fullmatch(text):
        try:
            der = base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            der = b""
        if der[:1] == b"\x30":
            return der
        raise KeyFormatError("not a PEM or DER RSA key: text is not base64 of a DER key")
    raise KeyFormatError(
        f"not a PEM or DER RSA key: unrecognised data starting {raw[:8].hex()}"
    )


def _describe_other_key(der: bytes) -> str | None:
    """Name a well-formed non-RSA key, so the error can say what it was."""
    try:
        ec_key = ECC.import_key(der)
    except (ValueError, IndexError, TypeError):
        return None
    kind = "private" if ec_key.has_private() else "public"
    return f"an EC ({ec_key.curve}) {kind} key"


def _import_rsa(data: KeyData, passphrase: bytes | None = None) -> RsaKey:
    der = _to_der(data)
    try:
        return RSA.import_key(der, passphrase)
    except (ValueError, IndexError, TypeError) as exc:
        other = _describe_other_key(der)
        if other is not None:
            raise KeyFormatError(f"expected an RSA key, found {other}") from None
        raise KeyFormatError(f"not a PEM or DER RSA key: {exc}") from None


def load_device_public_key(data: KeyData) -> RsaKey:
    """Load a device's RSA-1024 public key.

    Accepts PEM (``PUBLIC KEY`` or ``RSA PUBLIC KEY``), DER (SPKI or PKCS#1)
    or base64 of the DER.  Private keys and keys of other sizes or
    algorithms raise :class:`KeyFormatError`.
    """
    key = _import_rsa(data)
    if key.has_private():
        raise KeyFormatError("this is a private key; give the public key")
    bits = key.size_in_bits()
    if bits != DEVICE_KEY_BITS:
        raise KeyFormatError(
            f"expected an RSA-{DEVICE_KEY_BITS} public key, found an RSA-{bits} key"
        )
    return key


def public_key_der(key: RsaKey) -> bytes:
    """SubjectPublicKeyInfo DER of the key's public half (162 bytes for RSA-1024)."""
    return key.public_key().export_key("DER")


def public_key_pem(key: RsaKey) -> str:
    """SubjectPublicKeyInfo PEM (``BEGIN PUBLIC KEY``) with a final newline."""
    return key.public_key().export_key("PEM").decode("ascii") + "\n"


def fingerprint(key: RsaKey) -> str:
    """``"SHA256:<unpadded base64>"`` of the SPKI DER, as OpenSSH prints it."""
    digest = hashlib.sha256(public_key_der(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def normalize_device_id(device_id: str) -> str:
    """Return the id as 24 lowercase hex characters, or raise ValueError."""
    if not isinstance(device_id, str):
        raise ValueError(
            f"device id must be a string of 24 hex characters, not {type(device_id).__name__}"
        )
    candidate = device_id.strip()
    if not _DEVICE_ID.fullmatch(candidate):
        shown = candidate if len(candidate) <= 40 else candidate[:40] + "..."
        raise ValueError(
            f"device id must be 24 hex characters (12 bytes), got {len(candidate)} "
            f"characters: {shown!r}"
        )
    return candidate.lower()


def generate_server_key(randfunc: Callable[[int], bytes] | None = None) -> RsaKey:
    """Make a new RSA-2048, e = 65537 server key (takes about a second)."""
    return RSA.generate(SERVER_KEY_BITS, randfunc=randfunc, e=SERVER_KEY_EXPONENT)


def load_server_private_key(data: KeyData, passphrase: bytes | None = None) -> RsaKey:
    """Load the server's RSA-2048 private key (PEM or DER, PKCS#1 or PKCS#8).

    Refuses public keys, other sizes and exponents other than 65537,
    because devices can only use a 2048-bit, e = 65537 server key.
    """
    raw = _as_bytes(data)
    try:
        key = RSA.import_key(raw, passphrase)
    except (ValueError, IndexError, TypeError) as exc:
        raise KeyFormatError(f"not a PEM or DER RSA private key: {exc}") from None
    if not key.has_private():
        raise KeyFormatError("this is a public key; the server needs its private key")
    bits = key.size_in_bits()
    if bits != SERVER_KEY_BITS:
        raise KeyFormatError(
            f"expected an RSA-{SERVER_KEY_BITS} server key, found an RSA-{bits} key"
        )
    if key.e != SERVER_KEY_EXPONENT:
        raise KeyFormatError(
            f"server key exponent must be {SERVER_KEY_EXPONENT}, found {key.e}"
        )
    return key


def openssl_public_key(key: RsaKey | openssl_rsa.RSAPublicKey) -> openssl_rsa.RSAPublicKey:
    """The RSA public key (or a private key's public half) as an OpenSSL key.

    A virtual device's public-key work (encrypting its identity, checking the
    server's signature) is about ten times cheaper through OpenSSL than through
    pycryptodome's Python integers; the conversion itself takes 5 µs.
    """
    if isinstance(key, openssl_rsa.RSAPublicKey):
        return key
    return openssl_rsa.RSAPublicNumbers(key.e, key.n).public_key()


def openssl_private_key(key: RsaKey, validate: bool = True) -> openssl_rsa.RSAPrivateKey:
    """The same RSA private key as an OpenSSL key object (``cryptography``).

    OpenSSL's private-key operations are about 3.5x cheaper than
    pycryptodome's for RSA-2048, so the device server converts its key once
    at start-up and uses the result for every handshake.  ``validate`` runs
    OpenSSL's key check (about 40 ms); skip it only for a key that was
    already checked.

    :param key: a private :class:`RsaKey`.
    :raises KeyFormatError: for a public key, or a key OpenSSL finds inconsistent.
    """
    if not key.has_private():
        raise KeyFormatError("this is a public key; the server needs its private key")
    p, q, d = int(key.p), int(key.q), int(key.d)
    numbers = openssl_rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
        openssl_rsa.RSAPublicNumbers(int(key.e), int(key.n)),
    )
    try:
        return numbers.private_key(unsafe_skip_rsa_key_validation=not validate)
    except ValueError as exc:
        raise KeyFormatError(f"OpenSSL refuses this RSA private key: {exc}") from None


def server_key_files(key: RsaKey) -> dict[str, bytes]:
    """Contents of the three server key files, by file name.

    ``server_key.pem`` (PKCS#1 private PEM), ``server_key.pub.pem`` (SPKI PEM)
    and ``server_key.pub.der`` (SPKI DER, 294 bytes: what a device loads).
    """
    if not key.has_private():
        raise KeyFormatError("this is a public key; the server needs its private key")
    return {
        "server_key.pem": key.export_key("PEM", pkcs=1) + b"\n",
        "server_key.pub.pem": public_key_pem(key).encode("ascii"),
        "server_key.pub.der": public_key_der(key),
    }
