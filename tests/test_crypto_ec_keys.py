"""EC P-256 device keys, the algorithm dispatch, and the Gen3 server-key block."""

import base64

import pytest
from conftest import KEYS_DIR
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from twisted_spark.crypto import ec_keys, server_key_block
from twisted_spark.crypto.device_keys import (
    DeviceKey,
    der_fingerprint,
    key_algorithm,
    load_device_key,
)
from twisted_spark.crypto.keys import KeyFormatError, fingerprint, load_device_public_key

EC_PEM = (KEYS_DIR / "ec-p256.pem").read_bytes()
EC_KEY = serialization.load_pem_private_key(EC_PEM, None)
EC_SPKI = EC_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
RSA_PUB_PEM = (KEYS_DIR / "device-1.pub.pem").read_bytes()


def private(encoding, fmt, key=EC_KEY):
    return key.private_bytes(encoding, fmt, serialization.NoEncryption())


SEC1_DER = private(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL)
SEC1_PEM = private(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL)
PKCS8_DER = private(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8)
EC_PARAMETERS = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param((KEYS_DIR / "ec-p256.pub.pem").read_bytes(), id="spki-pem"),
        pytest.param(EC_SPKI, id="spki-der"),
        pytest.param(base64.b64encode(EC_SPKI), id="spki-der-base64"),
        pytest.param((KEYS_DIR / "ec-p256.pub.pem").read_text(), id="spki-pem-str"),
        pytest.param(EC_PEM, id="pkcs8-pem"),
        pytest.param(PKCS8_DER, id="pkcs8-der"),
        pytest.param(SEC1_PEM, id="sec1-pem"),
        pytest.param(SEC1_DER, id="sec1-der"),
        pytest.param(EC_PARAMETERS + SEC1_PEM, id="openssl-ecparam-genkey"),
        pytest.param(SEC1_DER + b"\xff" * (192 - len(SEC1_DER)), id="particle-keys-save-slot"),
    ],
)
def test_every_form_of_a_p256_key_gives_its_public_half(data):
    key = load_device_key(data)
    assert key == DeviceKey("ecc", EC_SPKI)
    assert len(key.der) == 91
    assert load_device_key(data, "ecc") == key


def test_der_with_trailing_data_that_is_not_padding_is_refused():
    with pytest.raises(KeyFormatError, match="7 bytes follow the DER key"):
        load_device_key(SEC1_DER + b"garbage")


@pytest.mark.parametrize(
    ("data", "algorithm", "message"),
    [
        (RSA_PUB_PEM, "ecc", r"expected an EC P-256 key, found an RSA-1024 public key.*'rsa'"),
        (EC_SPKI, "rsa", r"found an EC \(NIST P-256\) public key.*'ecc' takes it"),
        (
            private(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                ec.derive_private_key(7, ec.SECP384R1()),
            ),
            None,
            r"found an EC secp384r1 private key \(Gen3 devices use P-256 only\)",
        ),
        (
            ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "ecc",
            "found an Ed25519 public key",
        ),
        (EC_PEM, "dsa", "unknown key algorithm 'dsa'"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE-----", "ecc", "malformed PEM"),
        (EC_PARAMETERS, "ecc", "no key in this PEM text"),
        (SEC1_PEM + SEC1_PEM, "ecc", "found 2 PEM blocks"),
        (b"hello, no key here", "ecc", "unrecognised data"),
        (b"", "ecc", "empty input"),
        (
            EC_KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
            None,
            "encrypted",
        ),
    ],
)
def test_wrong_keys_say_what_was_found(data, algorithm, message):
    with pytest.raises(KeyFormatError, match=message):
        load_device_key(data, algorithm)


def test_rsa_keys_keep_the_rsa_rules():
    key = load_device_key(RSA_PUB_PEM)
    rsa = load_device_public_key(RSA_PUB_PEM)
    assert key.algorithm == "rsa" and key.fingerprint == fingerprint(rsa)
    with pytest.raises(KeyFormatError, match="private key"):
        load_device_key((KEYS_DIR / "device-1.pem").read_bytes())  # RSA private: still refused
    with pytest.raises(KeyFormatError, match="RSA-2048"):
        load_device_key((KEYS_DIR / "server.pub.pem").read_bytes())


def test_stored_der_says_its_algorithm():
    assert key_algorithm(EC_SPKI) == "ecc"
    assert key_algorithm(load_device_key(RSA_PUB_PEM).der) == "rsa"
    assert key_algorithm(b"\x30\x03\x02\x01\x05") is None
    assert der_fingerprint(EC_SPKI).startswith("SHA256:") and "=" not in der_fingerprint(EC_SPKI)


def test_server_ec_key_files_round_trip():
    key = ec_keys.generate_server_ec_key()
    files = ec_keys.server_ec_key_files(key)
    assert set(files) == {"server_key_ec.pem", "server_key_ec.pub.pem", "server_key_ec.pub.der"}
    loaded = ec_keys.load_server_ec_private_key(files["server_key_ec.pem"])
    assert ec_keys.ec_public_key_der(loaded) == files["server_key_ec.pub.der"]
    assert len(files["server_key_ec.pub.der"]) == 91
    with pytest.raises(KeyFormatError, match="public key; the server needs its private key"):
        ec_keys.load_server_ec_private_key(files["server_key_ec.pub.pem"])
    with pytest.raises(KeyFormatError, match="found an RSA-2048 private key"):
        ec_keys.load_server_ec_private_key((KEYS_DIR / "server.pem").read_bytes())


# -- the server-key block ---------------------------------------------------------------------


def test_block_for_an_ip_address_matches_the_device_os_layout():
    block = server_key_block.encode_block(
        EC_KEY.public_key(), server_key_block.parse_address("192.0.2.10:15684")
    )
    assert len(block) == 320
    assert block[:91] == EC_SPKI
    assert block[91:192] == b"\xff" * 101
    assert block[192:198] == bytes.fromhex("0004c000020a")  # IP_ADDRESS, 4, 192.0.2.10
    assert block[198:258] == b"\xff" * 60
    assert block[258:260] == (15684).to_bytes(2, "big")
    assert block[260:] == b"\xff" * 60
    assert server_key_block.decode_block(block) == (
        EC_SPKI,
        server_key_block.ServerAddress("192.0.2.10", 15684),
    )


def test_block_for_a_host_name_and_the_default_port():
    address = server_key_block.parse_address("$id.spark.example.net")
    block = server_key_block.encode_block(EC_SPKI, address)
    assert block[192:194] == bytes((1, 21))  # DOMAIN_NAME, length
    assert block[194:215] == b"$id.spark.example.net"
    assert block[258:260] == bytes.fromhex("1634")  # 5684
    assert server_key_block.decode_block(block)[1] == address
    blank = bytearray(block)
    blank[192] = 0xFF  # no address: the device falls back to Particle's
    assert server_key_block.decode_block(bytes(blank))[1] is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("::1", "IPv6"),
        ("[2001:db8::1]:5684", "IPv6"),
        ("1.2.3", "not a valid IPv4 address"),
        ("host:http", "is not a number"),
        ("host:0", "out of range"),
        ("host:65535", "out of range"),
        (":5684", "has no host"),
        ("a" * 64, "at most 63"),
        ("bad name.example", "printable ASCII without spaces"),
    ],
)
def test_bad_addresses_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        server_key_block.parse_address(text)


def test_block_refuses_keys_that_are_not_p256():
    with pytest.raises(KeyFormatError, match="RSA-1024"):
        server_key_block.encode_block(
            load_device_key(RSA_PUB_PEM).der, server_key_block.parse_address("10.0.0.1")
        )
