# -*- test-case-name: tests.test_dtls_messages -*-
"""Numbers of the Gen3 DTLS dialect and a bounded reader for its structures.

Every length a peer sends is checked against what is left before it is
used; a short or overlong structure raises :class:`DecodeError` naming what was
being read.
"""

from __future__ import annotations

from enum import IntEnum

from twisted_spark.dtls.errors import DecodeError

__all__ = [
    "CERT_TYPE_RAW_PUBLIC_KEY",
    "CIPHER_SUITE",
    "CLIENT_CERT_ECDSA_SIGN",
    "DTLS_1_0",
    "DTLS_1_2",
    "ECDSA_SHA256",
    "EC_CURVE_TYPE_NAMED",
    "EC_POINT_UNCOMPRESSED",
    "EMPTY_RENEGOTIATION_INFO_SCSV",
    "SECP256R1",
    "ContentType",
    "ExtensionType",
    "HandshakeType",
    "Reader",
    "u8",
    "u16",
    "u24",
    "u48",
    "vector8",
    "vector16",
    "vector24",
]

DTLS_1_2 = 0xFEFD
DTLS_1_0 = 0xFEFF
CIPHER_SUITE = 0xC0AE  # TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7251)
EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF
SECP256R1 = 23
ECDSA_SHA256 = 0x0403  # SignatureAndHashAlgorithm {sha256, ecdsa}
EC_CURVE_TYPE_NAMED = 3
EC_POINT_UNCOMPRESSED = 0
CERT_TYPE_RAW_PUBLIC_KEY = 2  # RFC 7250
CLIENT_CERT_ECDSA_SIGN = 64  # ClientCertificateType ecdsa_sign


class ContentType(IntEnum):
    """Record content types; 25 and 253 carry a connection ID."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    TLS12_CID = 25  # draft-ietf-tls-dtls-connection-id-05
    MOVED_CID = 253  # Device OS: a type-25 record sent after waking, "I may have moved"


class HandshakeType(IntEnum):
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    HELLO_VERIFY_REQUEST = 3
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


class ExtensionType(IntEnum):
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    CLIENT_CERTIFICATE_TYPE = 19
    SERVER_CERTIFICATE_TYPE = 20
    EXTENDED_MASTER_SECRET = 23
    CONNECTION_ID = 254  # the draft-05 code point Device OS uses, not RFC 9146's 54
    RENEGOTIATION_INFO = 0xFF01


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def u48(value: int) -> bytes:
    return value.to_bytes(6, "big")


def vector8(data: bytes) -> bytes:
    """opaque data<0..2^8-1>"""
    return u8(len(data)) + data


def vector16(data: bytes) -> bytes:
    """opaque data<0..2^16-1>"""
    return u16(len(data)) + data


def vector24(data: bytes) -> bytes:
    """opaque data<0..2^24-1>"""
    return u24(len(data)) + data


class Reader:
    """Reads big-endian fields from a byte string without running past its end.

    ``what`` names the structure in error messages ("ClientHello: ...").
    """

    __slots__ = ("_data", "_end", "_position", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._position = 0
        self._end = len(data)
        self.what = what

    @property
    def remaining(self) -> int:
        return self._end - self._position

    def take(self, count: int) -> bytes:
        """The next ``count`` bytes."""
        if count > self._end - self._position:
            raise DecodeError(
                f"{self.what}: needs {count} bytes at offset {self._position}, "
                f"{self._end - self._position} left"
            )
        start = self._position
        self._position += count
        return self._data[start : self._position]

    def integer(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def u8(self) -> int:
        return self.integer(1)

    def u16(self) -> int:
        return self.integer(2)

    def u24(self) -> int:
        return self.integer(3)

    def u48(self) -> int:
        return self.integer(6)

    def vector(self, length_size: int, minimum: int = 0, maximum: int | None = None) -> bytes:
        """A length-prefixed opaque vector, its length checked against the bounds."""
        length = self.integer(length_size)
        if length < minimum or (maximum is not None and length > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise DecodeError(f"{self.what}: vector length {length} outside {bound}")
        return self.take(length)

    def rest(self) -> bytes:
        return self.take(self._end - self._position)

    def end(self) -> None:
        """Raise unless everything has been read."""
        if self._position != self._end:
            raise DecodeError(
                f"{self.what}: {self._end - self._position} unexpected trailing bytes"
            )
