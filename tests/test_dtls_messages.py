"""Handshake message bodies and what each side accepts from the other's hello."""

import pytest

from twisted_spark.dtls.errors import AlertDescription, DecodeError, HandshakeFailure
from twisted_spark.dtls.messages import (
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    ClientKeyExchange,
    Finished,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
)
from twisted_spark.dtls.negotiation import (
    Negotiated,
    check_server_hello,
    device_client_hello_extensions,
    negotiate,
    server_hello_extensions,
)
from twisted_spark.dtls.wire import ExtensionType

CID = bytes.fromhex("0102030405060708")


def device_hello(**changes):
    fields = dict(
        random=b"r" * 32,
        cipher_suites=(0xC0AE, 0x00FF),
        extensions=device_client_hello_extensions(),
        cookie=b"c" * 32,
    )
    fields.update(changes)
    return ClientHello(**fields)


MESSAGES = [
    device_hello(),
    HelloVerifyRequest(b"cookie"),
    ServerHello(b"s" * 32, 0xC0AE, {ExtensionType.CONNECTION_ID: b"\x08" + CID}),
    ServerKeyExchange(b"\x04" + b"p" * 64, b"0E" + b"s" * 60),
    CertificateRequest(b"\x40", (0x0403,)),
    Certificate(b"0Y" + b"k" * 89),
    ClientKeyExchange(b"\x04" + b"q" * 64),
    CertificateVerify(b"0F" + b"v" * 60),
    Finished(b"f" * 12),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_and_refuse_truncation_and_trailing_bytes(message):
    body = message.encode()
    assert type(message).parse(body) == message
    with pytest.raises(DecodeError):
        type(message).parse(body[:-1])
    with pytest.raises(DecodeError):
        type(message).parse(body + b"\0")


def test_device_client_hello_bytes():
    """The extension block Device OS writes (ssl_cli.c order, its config)."""
    body = device_hello(cookie=b"").encode()
    assert body[:2] == bytes.fromhex("fefd")
    assert body[34:40] == bytes.fromhex("00000004c0ae")
    assert body[40:44] == bytes.fromhex("00ff0100")
    assert body[44:] == bytes.fromhex(
        "002d"
        "000d000a00080403040103030301"  # signature_algorithms
        "000a000400020017"  # supported_groups: secp256r1
        "000b00020100"  # ec_point_formats: uncompressed
        "00fe000100"  # connection_id (draft-05 code point), empty CID
        "0013000201020014000201 02".replace(" ", "")  # client/server cert type: raw key
    )


def test_hello_with_a_repeated_or_overrunning_extension_is_malformed():
    bare = device_hello(extensions={}).encode()
    twice = bare + bytes.fromhex("000c000b00020100000b00020100")
    with pytest.raises(DecodeError, match="twice"):
        ClientHello.parse(twice)
    overrun = bare + bytes.fromhex("0006000b00030100")
    with pytest.raises(DecodeError):
        ClientHello.parse(overrun)


def test_server_key_exchange_signs_named_curve_params():
    ske = ServerKeyExchange(b"\x04" + b"p" * 64, b"sig")
    assert ske.params == bytes.fromhex("03001741") + b"\x04" + b"p" * 64
    with pytest.raises(DecodeError, match="named_curve"):
        ServerKeyExchange.parse(b"\x01" + ske.encode()[1:])


def test_finished_is_exactly_twelve_bytes():
    with pytest.raises(DecodeError, match="13 bytes"):
        Finished.parse(b"f" * 13)


# -- server negotiation -----------------------------------------------------------------------


def test_device_offer_is_accepted_and_answered_like_mbedtls():
    negotiated = negotiate(device_hello())
    assert negotiated == Negotiated(
        secure_renegotiation=True, point_formats=True, server_certificate_type=True
    )
    extensions = server_hello_extensions(negotiated, CID)
    assert list(extensions.items()) == [
        (ExtensionType.RENEGOTIATION_INFO, b"\x00"),
        (ExtensionType.EC_POINT_FORMATS, b"\x01\x00"),
        (ExtensionType.CONNECTION_ID, b"\x08" + CID),
        (ExtensionType.CLIENT_CERTIFICATE_TYPE, b"\x02"),
        (ExtensionType.SERVER_CERTIFICATE_TYPE, b"\x02"),
    ]
    hello = ServerHello(b"s" * 32, 0xC0AE, extensions)
    assert check_server_hello(ServerHello.parse(hello.encode())) == CID


def _without(kind):
    extensions = device_client_hello_extensions()
    del extensions[kind]
    return extensions


def _with(kind, value):
    return {**device_client_hello_extensions(), kind: value}


@pytest.mark.parametrize(
    ("hello", "alert", "reason"),
    [
        (device_hello(version=0xFEFF), AlertDescription.PROTOCOL_VERSION, "not DTLS 1.2"),
        (device_hello(cipher_suites=(0xC02B,)), AlertDescription.HANDSHAKE_FAILURE, "0xc02b"),
        (device_hello(compression_methods=b"\x01"), AlertDescription.HANDSHAKE_FAILURE, "null"),
        (device_hello(extensions=_with(10, bytes.fromhex("00020018"))), 40, "P-256"),
        (device_hello(extensions=_with(11, bytes.fromhex("0101"))), 40, "uncompressed"),
        (device_hello(extensions=_without(13)), 40, "ECDSA with SHA-256"),
        (device_hello(extensions=_with(13, bytes.fromhex("00020401"))), 40, "ECDSA with SHA-256"),
        (device_hello(extensions=_without(254)), 40, "connection ID extension (254)"),
        (device_hello(extensions=_with(254, b"\x01\x07")), 47, "of its own"),
        (device_hello(extensions=_without(19)), 43, "raw public key certificate"),
        (device_hello(extensions=_with(19, b"\x01\x00")), 43, "raw public key certificate"),
        (device_hello(extensions=_with(20, b"\x01\x00")), 43, "raw public key from the server"),
        (device_hello(extensions=_with(0xFF01, b"\x01\x00")), 40, "renegotiation_info"),
    ],
)
def test_offers_outside_the_dialect_are_refused_precisely(hello, alert, reason):
    with pytest.raises(HandshakeFailure) as caught:
        negotiate(hello)
    assert caught.value.alert == alert
    assert reason in caught.value.reason


def test_malformed_extension_bodies_are_decode_errors():
    with pytest.raises(DecodeError):
        negotiate(device_hello(extensions=_with(10, bytes.fromhex("0003001700"))))
    with pytest.raises(DecodeError):
        negotiate(device_hello(extensions=_with(254, b"\x05")))


def test_without_renegotiation_scsv_or_point_formats_they_are_not_echoed():
    hello = device_hello(cipher_suites=(0xC0AE,), extensions=_without(11))
    extensions = server_hello_extensions(negotiate(hello), CID)
    assert ExtensionType.RENEGOTIATION_INFO not in extensions
    assert ExtensionType.EC_POINT_FORMATS not in extensions
    assert ExtensionType.EXTENDED_MASTER_SECRET not in extensions


# -- what the device accepts ---------------------------------------------------------------------


def _server_hello(**changes):
    fields = dict(
        random=b"s" * 32,
        cipher_suite=0xC0AE,
        extensions=server_hello_extensions(negotiate(device_hello()), CID),
    )
    fields.update(changes)
    return ServerHello(**fields)


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        (_server_hello(version=0xFEFF), "version"),
        (_server_hello(cipher_suite=0xC02B), "cipher suite"),
        (_server_hello(compression_method=1), "compression"),
        (_server_hello(extensions={254: b"\x08" + CID}), "raw public key client certificate"),
        (_server_hello(extensions={254: b"\x08" + CID, 19: b"\x02", 20: b"\x00"}), "other than"),
        (_server_hello(extensions={19: b"\x02"}), "did not send a connection ID"),
        (_server_hello(extensions={19: b"\x02", 254: b"\x04abcd"}), "requires 8"),
    ],
)
def test_device_refuses_server_hellos_it_cannot_use(hello, reason):
    with pytest.raises(HandshakeFailure, match=reason):
        check_server_hello(hello)
