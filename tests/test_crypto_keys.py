"""Key loading, export, fingerprints and device ids (twisted_spark.crypto.keys)."""

import base64
import hashlib
import re
from pathlib import Path

import pytest
import vectors
from Crypto.IO import PEM
from Crypto.PublicKey import RSA
from Crypto.Util.asn1 import DerSequence

from twisted_spark.crypto.keys import (
    KeyFormatError,
    fingerprint,
    load_device_public_key,
    load_server_private_key,
    normalize_device_id,
    openssl_private_key,
    public_key_der,
    public_key_pem,
    server_key_files,
)

KEYS = Path(__file__).parent / "keys"
SPKI_1024_HEADER = bytes.fromhex("30819f300d06092a864886f70d010101050003818d0030818902818100")
SPKI_2048_HEADER = bytes.fromhex(
    "30820122300d06092a864886f70d01010105000382010f003082010a0282010100"
)


def read(name: str) -> bytes:
    return (KEYS / name).read_bytes()


@pytest.fixture(scope="module")
def device_private():
    return RSA.import_key(read("device-1.pem"))


@pytest.fixture(scope="module")
def server_private():
    return RSA.import_key(read("server.pem"))


def pkcs1_public_der(key) -> bytes:
    """RSAPublicKey (PKCS#1) DER: SEQUENCE { n, e }."""
    return DerSequence([key.n, key.e]).encode()


# -- accepted forms -------------------------------------------------------------------


def test_loads_spki_pem(device_private):
    """The usual <id>.pub.pem (BEGIN PUBLIC KEY) loads to the device's public key."""
    key = load_device_public_key(read("device-1.pub.pem"))
    assert not key.has_private()
    assert key.size_in_bits() == 1024
    assert (key.n, key.e) == (device_private.n, device_private.e)


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda k: k.public_key().export_key("DER"), id="spki-der"),
        pytest.param(pkcs1_public_der, id="pkcs1-der"),
        pytest.param(
            lambda k: PEM.encode(pkcs1_public_der(k), "RSA PUBLIC KEY").encode(), id="pkcs1-pem"
        ),
        pytest.param(lambda k: k.public_key().export_key("PEM").decode(), id="spki-pem-str"),
        pytest.param(lambda k: base64.b64encode(k.public_key().export_key("DER")), id="b64-der"),
        pytest.param(
            lambda k: base64.encodebytes(pkcs1_public_der(k)) + b"\n", id="b64-pkcs1-multiline"
        ),
        pytest.param(
            lambda k: b"\n  " + k.public_key().export_key("PEM") + b"\n\n",
            id="pem-with-blank-lines",
        ),
    ],
)
def test_loads_every_public_form(device_private, encode):
    """PEM or DER, SPKI or PKCS#1, and base64 of DER all give the same key."""
    key = load_device_public_key(encode(device_private))
    assert (key.n, key.e) == (device_private.n, device_private.e)
    assert not key.has_private()


def test_der_export_is_the_162_byte_spki_devices_send(device_private):
    """public_key_der is what a Photon puts in its handshake (§2.2)."""
    der = public_key_der(device_private)
    assert len(der) == 162
    assert der.startswith(SPKI_1024_HEADER)
    assert der.endswith(bytes.fromhex("0203010001"))
    assert der[len(SPKI_1024_HEADER) : -5] == device_private.n.to_bytes(128, "big")


def test_pem_export_round_trips(device_private):
    text = public_key_pem(device_private)
    assert text.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert text.endswith("-----END PUBLIC KEY-----\n")
    assert load_device_public_key(text).n == device_private.n


def test_upstream_core_key_public_half_loads():
    """The public half of the §13.1 Core test key is a valid device key."""
    private = RSA.import_key(vectors.HS_DEVICE_PRIVATE_DER)
    key = load_device_public_key(public_key_der(private))
    assert key.n == private.n


# -- refused forms ---------------------------------------------------------------------


def test_rsa_2048_public_key_is_refused_with_its_size(server_private):
    with pytest.raises(KeyFormatError, match="expected an RSA-1024 public key, found an RSA-2048"):
        load_device_public_key(server_private.public_key().export_key("PEM"))


def test_upstream_server_public_key_is_refused_as_device_key():
    with pytest.raises(KeyFormatError, match="RSA-2048"):
        load_device_public_key(vectors.HS_SERVER_PUBLIC_DER)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(read("device-1.pem"), id="pkcs1-pem"),
        pytest.param(vectors.HS_DEVICE_PRIVATE_DER, id="pkcs1-der-upstream"),
        pytest.param(
            RSA.import_key(read("device-2.pem")).export_key("PEM", pkcs=8), id="pkcs8-pem"
        ),
        pytest.param(
            RSA.import_key(read("device-2.pem")).export_key("DER", pkcs=8), id="pkcs8-der"
        ),
        pytest.param(
            base64.b64encode(RSA.import_key(read("device-3.pem")).export_key("DER")), id="b64-der"
        ),
        pytest.param(read("ec-p256.pem"), id="ec-private-pem"),
    ],
)
def test_private_keys_are_refused_clearly(data):
    """A private key is never silently used as a public key."""
    with pytest.raises(KeyFormatError, match="private key"):
        load_device_public_key(data)


def test_ec_public_key_is_named():
    with pytest.raises(KeyFormatError, match=r"found an EC \(NIST P-256\) public key"):
        load_device_public_key(read("ec-p256.pub.pem"))


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"", "empty input"),
        (b"   \n", "empty input"),
        (b"hello world, I am not a key", "unrecognised data"),
        (b"QUJDRA==", "not base64 of a DER key"),
        (b"\x30\x03\x02\x01\x05", "not a PEM or DER RSA key"),
        (b"\x30\x82\xff", "not a PEM or DER RSA key"),
        ("ключ", "non-ASCII"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "'CERTIFICATE'"),
        (b"-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3\n-----END PUBLIC KEY-----\n", "not a PEM"),
        (b"-----BEGIN PUBLIC KEY-----\nnot base64 !!\n-----END PUBLIC KEY-----\n", "not a PEM"),
    ],
)
def test_garbage_is_refused_with_a_reason(data, found):
    with pytest.raises(KeyFormatError, match=re.escape(found)):
        load_device_public_key(data)


def test_key_format_error_is_a_value_error():
    with pytest.raises(ValueError):
        load_device_public_key(b"nope")


# -- fingerprints ---------------------------------------------------------------------


def test_fingerprint_is_sha256_of_spki_der(device_private):
    expected = base64.b64encode(hashlib.sha256(public_key_der(device_private)).digest())
    value = fingerprint(device_private)
    assert value == "SHA256:" + expected.decode().rstrip("=")
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", value)


def test_fingerprint_ignores_encoding_and_private_half(device_private):
    """Same key in any form -> same fingerprint; another key -> a different one."""
    from_pem = load_device_public_key(read("device-1.pub.pem"))
    from_pkcs1 = load_device_public_key(pkcs1_public_der(device_private))
    assert fingerprint(from_pem) == fingerprint(from_pkcs1) == fingerprint(device_private)
    other = load_device_public_key(read("device-2.pub.pem"))
    assert fingerprint(other) != fingerprint(from_pem)


# -- device ids -----------------------------------------------------------------------


def test_device_id_is_lowercased_and_stripped():
    assert normalize_device_id(" 53FF73065067544816300187\n") == "53ff73065067544816300187"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "53ff7306506754481630018",
        "53ff730650675448163001870",
        "53ff7306506754481630018g",
        "0x" + "ab" * 11,
    ],
)
def test_bad_device_ids_raise_value_error(bad):
    with pytest.raises(ValueError, match="24 hex characters"):
        normalize_device_id(bad)


def test_non_string_device_id_raises_value_error():
    with pytest.raises(ValueError, match="string"):
        normalize_device_id(bytes(12))


# -- server key -----------------------------------------------------------------------


def test_server_key_loads(server_private):
    key = load_server_private_key(read("server.pem"))
    assert key.has_private()
    assert (key.n, key.d) == (server_private.n, server_private.d)


def test_server_key_loads_pkcs8_and_der(server_private):
    assert load_server_private_key(server_private.export_key("PEM", pkcs=8)).n == server_private.n
    assert load_server_private_key(server_private.export_key("DER")).n == server_private.n


def test_openssl_private_key_is_the_same_key(server_private):
    for validate in (True, False):
        numbers = openssl_private_key(server_private, validate=validate).private_numbers()
        assert (numbers.public_numbers.n, numbers.d) == (server_private.n, server_private.d)


def test_openssl_private_key_refuses_public_and_broken_keys(server_private):
    with pytest.raises(KeyFormatError, match="public key"):
        openssl_private_key(server_private.public_key())
    broken = RSA.construct(
        (server_private.n, server_private.e, server_private.d + 2, server_private.p,
         server_private.q),
        consistency_check=False,
    )
    with pytest.raises(KeyFormatError, match="OpenSSL refuses"):
        openssl_private_key(broken)


def test_server_key_refuses_public_key():
    with pytest.raises(KeyFormatError, match="public key"):
        load_server_private_key(read("server.pub.pem"))


def test_server_key_refuses_wrong_size():
    with pytest.raises(KeyFormatError, match="RSA-2048 server key, found an RSA-1024"):
        load_server_private_key(read("device-1.pem"))


def test_server_key_refuses_exponent_other_than_65537():
    """Devices assume e = 65537 (§2.3)."""
    with pytest.raises(KeyFormatError, match="exponent must be 65537, found 3"):
        load_server_private_key(read("server-e3.pem"))


def test_server_key_refuses_garbage():
    with pytest.raises(KeyFormatError, match="not a PEM or DER RSA private key"):
        load_server_private_key(b"garbage")


def test_server_key_needs_passphrase_when_encrypted(server_private):
    encrypted = server_private.export_key(
        "PEM",
        passphrase=b"sesame",
        pkcs=8,
        protection="PBKDF2WithHMAC-SHA256AndAES128-CBC",
        prot_params={"iteration_count": 1000},
    )
    with pytest.raises(KeyFormatError):
        load_server_private_key(encrypted)
    assert load_server_private_key(encrypted, passphrase=b"sesame").n == server_private.n


def test_server_key_files(server_private):
    files = server_key_files(server_private)
    assert set(files) == {"server_key.pem", "server_key.pub.pem", "server_key.pub.der"}
    der = files["server_key.pub.der"]
    assert len(der) == 294
    assert der.startswith(SPKI_2048_HEADER)
    assert der == (KEYS / "server.pub.der").read_bytes()
    assert files["server_key.pub.pem"] == read("server.pub.pem")
    assert files["server_key.pem"].startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    reloaded = load_server_private_key(files["server_key.pem"])
    assert (reloaded.n, reloaded.d) == (server_private.n, server_private.d)


def test_server_key_files_refuse_public_key(server_private):
    with pytest.raises(KeyFormatError):
        server_key_files(server_private.public_key())
