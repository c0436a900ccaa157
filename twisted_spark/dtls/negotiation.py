# -*- test-case-name: tests.test_dtls_messages -*-
"""What each side accepts from the other's hello, in the Gen3 dialect.

Server side (:func:`negotiate`): the device offers DTLS 1.2, the one suite
TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, P-256, ECDSA-SHA256, raw public keys
(RFC 7250) and the draft-05 connection ID with an empty CID of its own.
Anything else is refused with the alert that names the problem.  Extended
master secret and encrypt-then-MAC are not echoed (Device OS builds
without them), so they stay off.

Device side (:func:`check_server_hello`): the behaviour of Device OS's mbedTLS
configuration: the suite, raw public keys and an 8-byte server CID are
required.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_spark.dtls.errors import AlertDescription, DecodeError, HandshakeFailure
from twisted_spark.dtls.messages import ClientHello, ServerHello
from twisted_spark.dtls.wire import (
    CERT_TYPE_RAW_PUBLIC_KEY,
    CIPHER_SUITE,
    DTLS_1_2,
    EC_POINT_UNCOMPRESSED,
    ECDSA_SHA256,
    EMPTY_RENEGOTIATION_INFO_SCSV,
    SECP256R1,
    ExtensionType,
    Reader,
    u8,
    vector8,
)

__all__ = [
    "CID_LENGTH",
    "Negotiated",
    "check_server_hello",
    "device_client_hello_extensions",
    "negotiate",
    "server_hello_extensions",
]

CID_LENGTH = 8
_RAW_ONLY = vector8(u8(CERT_TYPE_RAW_PUBLIC_KEY))
_EMPTY_RENEGOTIATION = b"\x00"


def _list(data: bytes, length_size: int, item_size: int, what: str) -> list[int]:
    r = Reader(data, what)
    body = r.vector(length_size, item_size)
    r.end()
    if len(body) % item_size:
        raise DecodeError(f"{what}: list length {len(body)} is not a multiple of {item_size}")
    return [int.from_bytes(body[i : i + item_size], "big") for i in range(0, len(body), item_size)]


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What the ServerHello must answer to this ClientHello."""

    secure_renegotiation: bool
    point_formats: bool
    server_certificate_type: bool


def negotiate(hello: ClientHello) -> Negotiated:
    """Accept the device's offer or raise :class:`HandshakeFailure` (or :class:`DecodeError`)."""
    if hello.version != DTLS_1_2:
        raise HandshakeFailure(
            f"client offers version {hello.version:#06x}, not DTLS 1.2",
            AlertDescription.PROTOCOL_VERSION,
        )
    if CIPHER_SUITE not in hello.cipher_suites:
        offered = ", ".join(f"{s:#06x}" for s in hello.cipher_suites)
        raise HandshakeFailure(
            f"client does not offer TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (offers {offered})"
        )
    if 0 not in hello.compression_methods:
        raise HandshakeFailure("client does not offer null compression")
    ext = hello.extensions
    groups = ext.get(ExtensionType.SUPPORTED_GROUPS)
    if groups is not None and SECP256R1 not in _list(groups, 2, 2, "supported_groups"):
        raise HandshakeFailure("client does not support the P-256 curve")
    formats = ext.get(ExtensionType.EC_POINT_FORMATS)
    if formats is not None and EC_POINT_UNCOMPRESSED not in _list(
        formats, 1, 1, "ec_point_formats"
    ):
        raise HandshakeFailure("client does not accept uncompressed points")
    algorithms = ext.get(ExtensionType.SIGNATURE_ALGORITHMS)
    if algorithms is None or ECDSA_SHA256 not in _list(algorithms, 2, 2, "signature_algorithms"):
        raise HandshakeFailure("client does not offer ECDSA with SHA-256 signatures")
    cid = ext.get(ExtensionType.CONNECTION_ID)
    if cid is None:
        raise HandshakeFailure("client does not offer the connection ID extension (254)")
    own_cid = Reader(cid, "connection_id")
    if own_cid.vector(1) or own_cid.remaining:
        raise HandshakeFailure(
            "client asks for a connection ID of its own; the Gen3 dialect has none",
            AlertDescription.ILLEGAL_PARAMETER,
        )
    client_types = ext.get(ExtensionType.CLIENT_CERTIFICATE_TYPE)
    if client_types is None or CERT_TYPE_RAW_PUBLIC_KEY not in _list(
        client_types, 1, 1, "client_certificate_type"
    ):
        raise HandshakeFailure(
            "client does not offer a raw public key certificate",
            AlertDescription.UNSUPPORTED_CERTIFICATE,
        )
    server_types = ext.get(ExtensionType.SERVER_CERTIFICATE_TYPE)
    if server_types is not None and CERT_TYPE_RAW_PUBLIC_KEY not in _list(
        server_types, 1, 1, "server_certificate_type"
    ):
        raise HandshakeFailure(
            "client does not accept a raw public key from the server",
            AlertDescription.UNSUPPORTED_CERTIFICATE,
        )
    renegotiation = ext.get(ExtensionType.RENEGOTIATION_INFO)
    if renegotiation is not None and renegotiation != _EMPTY_RENEGOTIATION:
        raise HandshakeFailure("renegotiation_info is not empty in an initial handshake")
    return Negotiated(
        secure_renegotiation=(
            renegotiation is not None or EMPTY_RENEGOTIATION_INFO_SCSV in hello.cipher_suites
        ),
        point_formats=formats is not None,
        server_certificate_type=server_types is not None,
    )


def server_hello_extensions(negotiated: Negotiated, cid: bytes) -> dict[int, bytes]:
    """The ServerHello extensions, in the order mbedTLS writes them."""
    extensions: dict[int, bytes] = {}
    if negotiated.secure_renegotiation:
        extensions[ExtensionType.RENEGOTIATION_INFO] = _EMPTY_RENEGOTIATION
    if negotiated.point_formats:
        extensions[ExtensionType.EC_POINT_FORMATS] = vector8(u8(EC_POINT_UNCOMPRESSED))
    extensions[ExtensionType.CONNECTION_ID] = vector8(cid)
    extensions[ExtensionType.CLIENT_CERTIFICATE_TYPE] = u8(CERT_TYPE_RAW_PUBLIC_KEY)
    if negotiated.server_certificate_type:
        extensions[ExtensionType.SERVER_CERTIFICATE_TYPE] = u8(CERT_TYPE_RAW_PUBLIC_KEY)
    return extensions


def device_client_hello_extensions() -> dict[int, bytes]:
    """The ClientHello extensions Device OS sends, in its order (ssl_cli.c)."""
    return {
        # sig_hashes SHA-256 and SHA-224, each with ECDSA and RSA (MBEDTLS_RSA_C is on)
        ExtensionType.SIGNATURE_ALGORITHMS: bytes.fromhex("0008 0403 0401 0303 0301"),
        ExtensionType.SUPPORTED_GROUPS: bytes.fromhex("00020017"),
        ExtensionType.EC_POINT_FORMATS: bytes.fromhex("0100"),
        ExtensionType.CONNECTION_ID: b"\x00",
        ExtensionType.CLIENT_CERTIFICATE_TYPE: _RAW_ONLY,
        ExtensionType.SERVER_CERTIFICATE_TYPE: _RAW_ONLY,
    }


def check_server_hello(hello: ServerHello) -> bytes:
    """The server's connection ID, if the ServerHello is one a device accepts."""
    if hello.version != DTLS_1_2:
        raise HandshakeFailure(
            f"server chose version {hello.version:#06x}", AlertDescription.PROTOCOL_VERSION
        )
    if hello.cipher_suite != CIPHER_SUITE:
        raise HandshakeFailure(
            f"server chose cipher suite {hello.cipher_suite:#06x}",
            AlertDescription.ILLEGAL_PARAMETER,
        )
    if hello.compression_method != 0:
        raise HandshakeFailure("server chose compression", AlertDescription.ILLEGAL_PARAMETER)
    ext = hello.extensions
    client_type = ext.get(ExtensionType.CLIENT_CERTIFICATE_TYPE)
    if client_type != u8(CERT_TYPE_RAW_PUBLIC_KEY):
        raise HandshakeFailure(
            "server did not select a raw public key client certificate",
            AlertDescription.UNSUPPORTED_CERTIFICATE,
        )
    server_type = ext.get(ExtensionType.SERVER_CERTIFICATE_TYPE)
    if server_type is not None and server_type != u8(CERT_TYPE_RAW_PUBLIC_KEY):
        raise HandshakeFailure(
            "server selected a certificate type other than raw public key",
            AlertDescription.UNSUPPORTED_CERTIFICATE,
        )
    renegotiation = ext.get(ExtensionType.RENEGOTIATION_INFO)
    if renegotiation is not None and renegotiation != _EMPTY_RENEGOTIATION:
        raise HandshakeFailure("renegotiation_info is not empty")
    formats = ext.get(ExtensionType.EC_POINT_FORMATS)
    if formats is not None and EC_POINT_UNCOMPRESSED not in _list(
        formats, 1, 1, "ec_point_formats"
    ):
        raise HandshakeFailure("server does not accept uncompressed points")
    cid_data = ext.get(ExtensionType.CONNECTION_ID)
    if cid_data is None:
        raise HandshakeFailure("server did not send a connection ID (Device OS requires one)")
    r = Reader(cid_data, "connection_id")
    cid = r.vector(1)
    r.end()
    if len(cid) != CID_LENGTH:
        raise HandshakeFailure(
            f"server connection ID is {len(cid)} bytes; the device requires 8",
            AlertDescription.ILLEGAL_PARAMETER,
        )
    return cid
