# -*- test-case-name: tests.test_dtls_messages -*-
"""Bodies of the handshake messages of the Gen3 dialect: parse and build.

Only the structure is checked here (lengths, sizes, no trailing bytes);
what the values mean for the handshake is decided in :mod:`~twisted_spark.dtls.negotiation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted_spark.dtls.errors import DecodeError
from twisted_spark.dtls.wire import (
    DTLS_1_2,
    EC_CURVE_TYPE_NAMED,
    ECDSA_SHA256,
    SECP256R1,
    Reader,
    u8,
    u16,
    vector8,
    vector16,
    vector24,
)

__all__ = [
    "RANDOM_LENGTH",
    "Certificate",
    "CertificateRequest",
    "CertificateVerify",
    "ClientHello",
    "ClientKeyExchange",
    "Finished",
    "HelloVerifyRequest",
    "ServerHello",
    "ServerKeyExchange",
    "decode_extensions",
    "encode_extensions",
]

RANDOM_LENGTH = 32
MAX_SESSION_ID = 32
MAX_COOKIE = 255
MAX_PUBLIC_KEY_DER = 512  # a P-256 SPKI is 91 bytes
MAX_SIGNATURE = 80  # a DER ECDSA P-256 signature is at most 72 bytes


def decode_extensions(reader: Reader) -> dict[int, bytes]:
    """The optional extensions block that ends a hello; a repeated type is an error."""
    extensions: dict[int, bytes] = {}
    if reader.remaining == 0:
        return extensions
    block = Reader(reader.vector(2), reader.what + " extensions")
    while block.remaining:
        kind = block.u16()
        data = block.vector(2)
        if kind in extensions:
            raise DecodeError(f"{reader.what}: extension {kind} appears twice")
        extensions[kind] = data
    return extensions


def encode_extensions(extensions: dict[int, bytes]) -> bytes:
    if not extensions:
        return b""
    return vector16(b"".join(u16(kind) + vector16(data) for kind, data in extensions.items()))


@dataclass(frozen=True, slots=True)
class ClientHello:
    random: bytes
    cipher_suites: tuple[int, ...]
    extensions: dict[int, bytes] = field(default_factory=dict)
    cookie: bytes = b""
    session_id: bytes = b""
    compression_methods: bytes = b"\x00"
    version: int = DTLS_1_2

    @classmethod
    def parse(cls, body: bytes) -> ClientHello:
        r = Reader(body, "ClientHello")
        version = r.u16()
        random = r.take(RANDOM_LENGTH)
        session_id = r.vector(1, 0, MAX_SESSION_ID)
        cookie = r.vector(1, 0, MAX_COOKIE)
        suites = r.vector(2, 2)
        if len(suites) % 2:
            raise DecodeError("ClientHello: odd cipher_suites length")
        compression = r.vector(1, 1)
        extensions = decode_extensions(r)
        r.end()
        cipher_suites = tuple(
            int.from_bytes(suites[i : i + 2], "big") for i in range(0, len(suites), 2)
        )
        return cls(random, cipher_suites, extensions, cookie, session_id, compression, version)

    def encode(self) -> bytes:
        return b"".join(
            (
                u16(self.version),
                self.random,
                vector8(self.session_id),
                vector8(self.cookie),
                vector16(b"".join(u16(s) for s in self.cipher_suites)),
                vector8(self.compression_methods),
                encode_extensions(self.extensions),
            )
        )


@dataclass(frozen=True, slots=True)
class HelloVerifyRequest:
    cookie: bytes
    version: int = 0xFEFF  # RFC 6347 §4.2.1: DTLS 1.0 here whatever is negotiated

    @classmethod
    def parse(cls, body: bytes) -> HelloVerifyRequest:
        r = Reader(body, "HelloVerifyRequest")
        version = r.u16()
        cookie = r.vector(1, 0, MAX_COOKIE)
        r.end()
        return cls(cookie, version)

    def encode(self) -> bytes:
        return u16(self.version) + vector8(self.cookie)


@dataclass(frozen=True, slots=True)
class ServerHello:
    random: bytes
    cipher_suite: int
    extensions: dict[int, bytes] = field(default_factory=dict)
    session_id: bytes = b""
    compression_method: int = 0
    version: int = DTLS_1_2

    @classmethod
    def parse(cls, body: bytes) -> ServerHello:
        r = Reader(body, "ServerHello")
        version = r.u16()
        random = r.take(RANDOM_LENGTH)
        session_id = r.vector(1, 0, MAX_SESSION_ID)
        suite = r.u16()
        compression = r.u8()
        extensions = decode_extensions(r)
        r.end()
        return cls(random, suite, extensions, session_id, compression, version)

    def encode(self) -> bytes:
        return b"".join(
            (
                u16(self.version),
                self.random,
                vector8(self.session_id),
                u16(self.cipher_suite),
                u8(self.compression_method),
                encode_extensions(self.extensions),
            )
        )


def _parse_signature(r: Reader) -> tuple[int, bytes]:
    algorithm = r.u16()
    signature = r.vector(2, 1, MAX_SIGNATURE)
    return algorithm, signature


@dataclass(frozen=True, slots=True)
class ServerKeyExchange:
    """ECDHE parameters on a named curve and the server's signature over them."""

    point: bytes
    signature: bytes
    curve: int = SECP256R1
    algorithm: int = ECDSA_SHA256

    @staticmethod
    def encode_params(point: bytes, curve: int = SECP256R1) -> bytes:
        """ServerECDHParams, the part the signature covers (after both randoms)."""
        return u8(EC_CURVE_TYPE_NAMED) + u16(curve) + vector8(point)

    @property
    def params(self) -> bytes:
        return self.encode_params(self.point, self.curve)

    @classmethod
    def parse(cls, body: bytes) -> ServerKeyExchange:
        r = Reader(body, "ServerKeyExchange")
        curve_type = r.u8()
        if curve_type != EC_CURVE_TYPE_NAMED:
            raise DecodeError(f"ServerKeyExchange: curve type {curve_type} is not named_curve")
        curve = r.u16()
        point = r.vector(1, 1)
        algorithm, signature = _parse_signature(r)
        r.end()
        return cls(point, signature, curve, algorithm)

    def encode(self) -> bytes:
        return self.params + u16(self.algorithm) + vector16(self.signature)


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    certificate_types: bytes
    signature_algorithms: tuple[int, ...]
    authorities: bytes = b""

    @classmethod
    def parse(cls, body: bytes) -> CertificateRequest:
        r = Reader(body, "CertificateRequest")
        types = r.vector(1, 1)
        algorithms = r.vector(2, 2)
        if len(algorithms) % 2:
            raise DecodeError("CertificateRequest: odd signature algorithms length")
        authorities = r.vector(2)
        r.end()
        pairs = tuple(
            int.from_bytes(algorithms[i : i + 2], "big") for i in range(0, len(algorithms), 2)
        )
        return cls(types, pairs, authorities)

    def encode(self) -> bytes:
        return (
            vector8(self.certificate_types)
            + vector16(b"".join(u16(a) for a in self.signature_algorithms))
            + vector16(self.authorities)
        )


@dataclass(frozen=True, slots=True)
class Certificate:
    """An RFC 7250 raw public key: the certificate is a bare SubjectPublicKeyInfo."""

    public_key_der: bytes

    @classmethod
    def parse(cls, body: bytes) -> Certificate:
        r = Reader(body, "Certificate")
        der = r.vector(3, 1, MAX_PUBLIC_KEY_DER)
        r.end()
        return cls(der)

    def encode(self) -> bytes:
        return vector24(self.public_key_der)


@dataclass(frozen=True, slots=True)
class ClientKeyExchange:
    point: bytes

    @classmethod
    def parse(cls, body: bytes) -> ClientKeyExchange:
        r = Reader(body, "ClientKeyExchange")
        point = r.vector(1, 1)
        r.end()
        return cls(point)

    def encode(self) -> bytes:
        return vector8(self.point)


@dataclass(frozen=True, slots=True)
class CertificateVerify:
    signature: bytes
    algorithm: int = ECDSA_SHA256

    @classmethod
    def parse(cls, body: bytes) -> CertificateVerify:
        r = Reader(body, "CertificateVerify")
        algorithm, signature = _parse_signature(r)
        r.end()
        return cls(signature, algorithm)

    def encode(self) -> bytes:
        return u16(self.algorithm) + vector16(self.signature)


@dataclass(frozen=True, slots=True)
class Finished:
    verify_data: bytes

    @classmethod
    def parse(cls, body: bytes) -> Finished:
        if len(body) != 12:
            raise DecodeError(f"Finished: verify_data is {len(body)} bytes, not 12")
        return cls(body)

    def encode(self) -> bytes:
        return self.verify_data
