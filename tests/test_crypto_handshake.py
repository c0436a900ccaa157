"""RSA handshake steps, server and device side (twisted_spark.crypto.handshake)."""

import os
from pathlib import Path

import pytest
import vectors
from Crypto.Cipher import PKCS1_v1_5
from Crypto.PublicKey import RSA
from cryptography.hazmat.primitives import serialization

from twisted_spark.crypto.handshake import (
    HandshakeError,
    Identity,
    build_session_blob,
    decrypt_identity,
    encrypt_identity,
    make_nonce,
    open_session_blob,
    session_hmac,
    session_seeds,
    sign_raw,
    split_session,
    verify_raw,
)
from twisted_spark.crypto.keys import openssl_private_key, openssl_public_key, public_key_der

KEYS = Path(__file__).parent / "keys"
DEVICE_ID = "53ff73065067544816300187"


@pytest.fixture(scope="module")
def server_key():
    return RSA.import_key((KEYS / "server.pem").read_bytes())


@pytest.fixture(scope="module")
def openssl_key(server_key):
    """The same key as the device server holds it (an OpenSSL key object)."""
    return openssl_private_key(server_key)


@pytest.fixture(scope="module")
def device_key():
    return RSA.import_key((KEYS / "device-1.pem").read_bytes())


@pytest.fixture(scope="module")
def upstream_device_key():
    return RSA.import_key(vectors.HS_DEVICE_PRIVATE_DER)


@pytest.fixture(scope="module", params=["pycryptodome", "openssl"])
def upstream_server_public(request):
    """The upstream server key as a device holds it: either key kind works."""
    key = RSA.import_key(vectors.HS_SERVER_PUBLIC_DER)
    return key if request.param == "pycryptodome" else openssl_public_key(key)


# -- §13.1 upstream vectors -----------------------------------------------------------


def test_upstream_signature_raw_verifies(upstream_server_public):
    """S^e mod n is 00 01 FF..FF 00 || HMAC, with no DigestInfo."""
    numbers = RSA.import_key(vectors.HS_SERVER_PUBLIC_DER)
    recovered = pow(int.from_bytes(vectors.HS_S, "big"), numbers.e, numbers.n).to_bytes(256, "big")
    assert recovered == b"\x00\x01" + b"\xff" * 233 + b"\x00" + vectors.HS_HMAC
    assert verify_raw(upstream_server_public, vectors.HS_S, vectors.HS_HMAC)


def test_upstream_hmac(upstream_device_key):
    assert session_hmac(vectors.HS_SESSION, vectors.HS_C) == vectors.HS_HMAC


def test_upstream_c_decrypts_to_session(upstream_device_key):
    plain = PKCS1_v1_5.new(upstream_device_key).decrypt(vectors.HS_C, None)
    assert plain == vectors.HS_SESSION


def test_device_opens_upstream_blob(upstream_device_key, upstream_server_public):
    """The device-side check accepts the blob the real firmware tests accept."""
    blob = vectors.HS_C + vectors.HS_S
    assert (
        open_session_blob(upstream_device_key, upstream_server_public, blob) == vectors.HS_SESSION
    )


def test_verify_raw_rejects_another_message(upstream_server_public):
    assert not verify_raw(upstream_server_public, vectors.HS_S, bytes(20))
    assert not verify_raw(upstream_server_public, vectors.HS_S[:-1], vectors.HS_HMAC)
    assert not verify_raw(upstream_server_public, vectors.HS_S + b"\0", vectors.HS_HMAC)


def test_verify_raw_rejects_a_value_past_the_modulus(upstream_server_public):
    assert not verify_raw(upstream_server_public, b"\xff" * 256, vectors.HS_HMAC)


@pytest.mark.parametrize("platform_der", [False, True], ids=["core", "photon"])
def test_identity_encrypted_with_openssl_public_key(server_key, device_key, platform_der):
    """The simulator's OpenSSL public key makes identities the server reads alike."""
    nonce = make_nonce()
    der = public_key_der(device_key) if platform_der else None
    blob = encrypt_identity(openssl_public_key(server_key), nonce, DEVICE_ID, der)
    assert len(blob) == 256
    assert decrypt_identity(server_key, blob, nonce) == Identity(DEVICE_ID, der)


def test_openssl_public_key_of_a_private_key_is_its_public_half(server_key):
    public = openssl_public_key(server_key).public_numbers()
    assert (public.n, public.e) == (server_key.n, server_key.e)
    converted = openssl_public_key(server_key)
    assert openssl_public_key(converted) is converted


def test_device_rejects_tampered_signature(upstream_device_key, upstream_server_public):
    signature = bytearray(vectors.HS_S)
    signature[100] ^= 1
    with pytest.raises(HandshakeError, match="signature"):
        open_session_blob(upstream_device_key, upstream_server_public, vectors.HS_C + signature)


def test_device_rejects_signature_from_another_server(
    upstream_device_key, server_key, upstream_server_public
):
    """A blob signed with our test key does not verify against the upstream server key."""
    _, blob = build_session_blob(server_key, upstream_device_key.public_key())
    with pytest.raises(HandshakeError, match="signature"):
        open_session_blob(upstream_device_key, upstream_server_public, blob)


def test_device_rejects_tampered_ciphertext(upstream_device_key, upstream_server_public):
    ciphertext = bytearray(vectors.HS_C)
    ciphertext[5] ^= 0x40
    with pytest.raises(HandshakeError):
        open_session_blob(
            upstream_device_key, upstream_server_public, bytes(ciphertext) + vectors.HS_S
        )


def test_device_rejects_blob_for_another_device(upstream_device_key, upstream_server_public):
    """The §13.3 blob was made for a different device key."""
    with pytest.raises(HandshakeError, match="decrypt"):
        open_session_blob(upstream_device_key, upstream_server_public, vectors.CF_BLOB)


def test_device_rejects_short_blob(upstream_device_key, upstream_server_public):
    with pytest.raises(HandshakeError, match="383 bytes, expected 384"):
        open_session_blob(upstream_device_key, upstream_server_public, vectors.CF_BLOB[:-1])


# -- H3 server side with the shipped keys ---------------------------------------------


def test_session_blob_round_trip(server_key, device_key):
    session, blob = build_session_blob(server_key, device_key.public_key())
    assert len(session) == 40
    assert len(blob) == 384
    assert open_session_blob(device_key, server_key.public_key(), blob) == session


def test_session_blob_parts(server_key, device_key):
    """C decrypts to the session with the device key; S signs HMAC(session, C)."""
    session = bytes(range(40))
    returned, blob = build_session_blob(server_key, device_key.public_key(), session)
    assert returned == session
    ciphertext, signature = blob[:128], blob[128:]
    assert PKCS1_v1_5.new(device_key).decrypt(ciphertext, None) == session
    assert verify_raw(server_key.public_key(), signature, session_hmac(session, ciphertext))


def test_session_blob_uses_randbytes_and_is_fresh(server_key, device_key):
    first, _ = build_session_blob(server_key, device_key.public_key())
    second, _ = build_session_blob(server_key, device_key.public_key())
    assert first != second
    fixed, _ = build_session_blob(
        server_key, device_key.public_key(), randbytes=lambda n: b"\x07" * n
    )
    assert fixed == b"\x07" * 40


def test_session_blob_for_upstream_device_key(server_key, upstream_device_key):
    """The §13.1 device key (a real Core test key) opens a blob we made."""
    session, blob = build_session_blob(
        server_key, upstream_device_key.public_key(), vectors.HS_SESSION
    )
    assert (
        open_session_blob(upstream_device_key, server_key.public_key(), blob) == vectors.HS_SESSION
    )


def test_session_blob_refuses_non_1024_device_key(server_key):
    with pytest.raises(HandshakeError, match="RSA-2048"):
        build_session_blob(server_key, server_key.public_key())


def test_session_blob_refuses_wrong_session_length(server_key, device_key):
    with pytest.raises(ValueError, match="40 bytes"):
        build_session_blob(server_key, device_key.public_key(), bytes(39))


def test_sign_raw_is_textbook_private_exponentiation(server_key):
    """S = EM^d mod n exactly (deterministic, no hashing, no DigestInfo)."""
    message = bytes(range(20))
    block = b"\x00\x01" + b"\xff" * 233 + b"\x00" + message
    expected = pow(int.from_bytes(block, "big"), server_key.d, server_key.n).to_bytes(256, "big")
    assert sign_raw(server_key, message) == expected
    assert sign_raw(server_key, message) == expected


def test_sign_raw_same_for_both_key_kinds(server_key, openssl_key):
    """The OpenSSL key object the server uses signs exactly as the RsaKey would."""
    message = os.urandom(20)
    block = b"\x00\x01" + b"\xff" * 233 + b"\x00" + message
    expected = pow(int.from_bytes(block, "big"), server_key.d, server_key.n).to_bytes(256, "big")
    assert sign_raw(openssl_key, message) == expected == sign_raw(server_key, message)


def test_sign_raw_refuses_long_message(server_key):
    with pytest.raises(ValueError):
        sign_raw(server_key, bytes(246))


# -- H2 ------------------------------------------------------------------------------


def test_core_identity_round_trip(server_key):
    """52-byte plaintext: nonce + id, no key (Core)."""
    nonce = make_nonce()
    blob = encrypt_identity(server_key.public_key(), nonce, bytes.fromhex(DEVICE_ID))
    assert len(blob) == 256
    assert decrypt_identity(server_key, blob, nonce) == Identity(DEVICE_ID, None)


def test_photon_identity_round_trip(server_key, device_key):
    """214-byte plaintext: nonce + id + the device's 162-byte SPKI DER (Photon)."""
    nonce = make_nonce()
    der = public_key_der(device_key)
    blob = encrypt_identity(server_key.public_key(), nonce, DEVICE_ID.upper(), der)
    identity = decrypt_identity(server_key, blob, nonce)
    assert identity.device_id == DEVICE_ID
    assert identity.public_key_der == der
    assert len(identity.public_key_der) == 162


def test_photon_identity_with_pkcs1_key_is_stored_as_spki(server_key, openssl_key, device_key):
    """A key sent as PKCS#1 DER (not what devices send) still comes out as canonical SPKI."""
    nonce = make_nonce()
    pkcs1 = (
        serialization.load_der_public_key(public_key_der(device_key))
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    )
    assert pkcs1 != public_key_der(device_key)
    blob = encrypt_identity(server_key.public_key(), nonce, DEVICE_ID, pkcs1)
    assert decrypt_identity(openssl_key, blob, nonce).public_key_der == public_key_der(device_key)


def test_photon_identity_with_2048_bit_key_is_refused(server_key, openssl_key):
    nonce = make_nonce()
    wrong = public_key_der(RSA.import_key(vectors.HS_SERVER_PUBLIC_DER))[:190]
    blob = encrypt_identity(server_key.public_key(), nonce, DEVICE_ID, wrong)
    with pytest.raises(HandshakeError, match="malformed public key"):
        decrypt_identity(openssl_key, blob, nonce)


def test_upstream_nonce_and_id(server_key):
    blob = encrypt_identity(server_key.public_key(), vectors.HS_NONCE, vectors.HS_DEVICE_ID)
    assert (
        decrypt_identity(server_key, blob, vectors.HS_NONCE).device_id == "1a118ad1c886d54240ce4b17"
    )


def test_identity_with_wrong_nonce(server_key):
    nonce = make_nonce()
    blob = encrypt_identity(server_key.public_key(), nonce, DEVICE_ID)
    other = bytes(b ^ 1 for b in nonce)
    with pytest.raises(HandshakeError, match="nonce"):
        decrypt_identity(server_key, blob, other)


def test_identity_with_wrong_length(server_key):
    with pytest.raises(HandshakeError, match="255 bytes, expected 256"):
        decrypt_identity(server_key, bytes(255), make_nonce())


def test_identity_for_another_server(server_key):
    """Encrypted to the upstream server key: our key cannot decrypt it."""
    upstream = RSA.import_key(vectors.HS_SERVER_PUBLIC_DER)
    nonce = make_nonce()
    blob = encrypt_identity(upstream, nonce, DEVICE_ID)
    with pytest.raises(HandshakeError, match="does not decrypt"):
        decrypt_identity(server_key, blob, nonce)


def test_identity_with_bad_padding_block(server_key):
    """A ciphertext whose plaintext block is not PKCS#1 type 2."""
    block = b"\x00\x01" + b"\xff" * 200 + b"\x00" + bytes(53)
    blob = pow(int.from_bytes(block, "big"), server_key.e, server_key.n).to_bytes(256, "big")
    with pytest.raises(HandshakeError, match="bad PKCS#1 padding"):
        decrypt_identity(server_key, blob, make_nonce())


def test_identity_with_bad_padding_openssl_key(server_key, openssl_key):
    """OpenSSL's implicit rejection gives random bytes; the error still names the padding."""
    block = b"\x00\x01" + b"\xff" * 200 + b"\x00" + bytes(53)
    blob = pow(int.from_bytes(block, "big"), server_key.e, server_key.n).to_bytes(256, "big")
    with pytest.raises(HandshakeError, match="bad PKCS#1 padding.*another server's public key"):
        decrypt_identity(openssl_key, blob, make_nonce())


def test_identity_round_trip_openssl_key(server_key, openssl_key, device_key):
    nonce = make_nonce()
    der = public_key_der(device_key)
    blob = encrypt_identity(server_key.public_key(), nonce, DEVICE_ID, der)
    assert decrypt_identity(openssl_key, blob, nonce) == Identity(DEVICE_ID, der)
    with pytest.raises(HandshakeError, match="does not echo our nonce"):
        decrypt_identity(openssl_key, blob, bytes(40))


def test_identity_with_short_plaintext_openssl_key(server_key, openssl_key):
    nonce = make_nonce()
    blob = PKCS1_v1_5.new(server_key.public_key()).encrypt(nonce + bytes(11))
    with pytest.raises(HandshakeError, match="51 bytes, expected at least 52"):
        decrypt_identity(openssl_key, blob, nonce)


def test_identity_larger_than_modulus_openssl_key(openssl_key):
    with pytest.raises(HandshakeError, match="does not decrypt"):
        decrypt_identity(openssl_key, b"\xff" * 256, make_nonce())


def test_identity_larger_than_modulus(server_key):
    with pytest.raises(HandshakeError, match="does not decrypt"):
        decrypt_identity(server_key, b"\xff" * 256, make_nonce())


def test_identity_with_short_plaintext(server_key):
    nonce = make_nonce()
    blob = PKCS1_v1_5.new(server_key.public_key()).encrypt(nonce + bytes(11))
    with pytest.raises(HandshakeError, match="51 bytes, expected at least 52"):
        decrypt_identity(server_key, blob, nonce)


def test_identity_with_malformed_key(server_key):
    nonce = make_nonce()
    blob = encrypt_identity(server_key.public_key(), nonce, DEVICE_ID, b"\x30" + bytes(161))
    with pytest.raises(HandshakeError, match="malformed public key"):
        decrypt_identity(server_key, blob, nonce)


def test_identity_with_wrong_size_nonce(server_key):
    with pytest.raises(HandshakeError, match="nonce"):
        decrypt_identity(server_key, bytes(256), bytes(39))


def test_encrypt_identity_checks_inputs(server_key):
    with pytest.raises(ValueError):
        encrypt_identity(server_key.public_key(), make_nonce(), bytes(11))
    with pytest.raises(ValueError):
        encrypt_identity(server_key.public_key(), bytes(39), bytes(12))
    with pytest.raises(ValueError):
        encrypt_identity(server_key.public_key(), make_nonce(), "not-an-id")


# -- small helpers --------------------------------------------------------------------


def test_make_nonce():
    assert len(make_nonce()) == 40
    assert make_nonce() != make_nonce()
    assert make_nonce(lambda n: b"\x2a" * n) == b"\x2a" * 40
    with pytest.raises(ValueError):
        make_nonce(lambda n: b"short")


def test_split_session():
    keys = split_session(vectors.CF_SESSION)
    assert keys.aes_key == bytes.fromhex("ead9e1e2014903b9e76632f6fa5afa66")
    assert keys.iv == bytes.fromhex("9522a567e100cd3cfe5215473921b63d")
    assert keys.salt == bytes.fromhex("97b197250038fa09")
    aes_key, iv, salt = keys
    assert (aes_key, iv, salt) == tuple(keys)
    with pytest.raises(ValueError):
        split_session(bytes(41))


@pytest.mark.parametrize(
    ("session", "seeds"),
    [
        (vectors.CF_SESSION, (vectors.CF_DEVICE_MID_SEED, vectors.CF_DEVICE_TOKEN_SEED)),
        (
            vectors.FIXTURE_SESSION,
            (vectors.FIXTURE_DEVICE_MID_SEED, vectors.FIXTURE_DEVICE_TOKEN_SEED),
        ),
    ],
)
def test_session_seeds(session, seeds):
    """Device message-id and token seeds come from salt bytes 32..34 (§3 H3)."""
    assert session_seeds(session) == seeds
