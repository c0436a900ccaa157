"""Known-answer tests of the DTLS crypto: PRF, AES-CCM-8, ECDSA, and the record layout."""

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from twisted_spark.dtls.ecc import (
    CryptoWork,
    client_key_exchange_work,
    encode_point,
    load_public_key,
    private_key_from_bytes,
    public_key_der,
    server_key_exchange_work,
    server_verify_work,
    sign_digest,
)
from twisted_spark.dtls.errors import AlertDescription, BadRecordMac, HandshakeFailure, RecordError
from twisted_spark.dtls.messages import ServerKeyExchange
from twisted_spark.dtls.prf import (
    derive_key_block,
    derive_master_secret,
    finished_verify_data,
    prf,
)
from twisted_spark.dtls.protection import RecordCipher


def key(label: str) -> ec.EllipticCurvePrivateKey:
    return private_key_from_bytes(hashlib.sha256(label.encode()).digest())


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


# -- TLS 1.2 PRF (P_SHA256) ---------------------------------------------------------------


def test_prf_sha256_ietf_vector():
    # The TLS WG's P_SHA256 vector (mail-archive/web/tls/current/msg03416.html).
    output = prf(
        h("9bbe436ba940f017b17652849a71db35"),
        b"test label",
        h("a0ba9f936cda311827a6f796ffd5198c"),
        100,
    )
    assert output == h(
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
        "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"
        "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
        "87347b66"
    )


def test_prf_sha256_mbedtls_vector():
    # mbedTLS tests/suites/test_suite_ssl.data, "SSL TLS_PRF MBEDTLS_SSL_TLS_PRF_SHA256".
    secret = h("1234567890abcdef" * 6)
    seed = h("1234567890abcdef" * 8)
    assert prf(secret, b"test tls_prf label", seed, 16) == h("7f9998393198a02c8d731ccc2ef90b2c")


def test_derived_secrets_use_the_rfc_5246_labels_and_seed_orders():
    pre, cr, sr = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    master = derive_master_secret(pre, cr, sr)
    assert master == prf(pre, b"master secret", cr + sr, 48)
    block = derive_key_block(master, cr, sr)
    raw = prf(master, b"key expansion", sr + cr, 40)
    assert block == (raw[:16], raw[16:32], raw[32:36], raw[36:40])
    digest = hashlib.sha256(b"messages").digest()
    assert finished_verify_data(master, True, digest) == prf(master, b"client finished", digest, 12)
    assert finished_verify_data(master, False, digest) == prf(
        master, b"server finished", digest, 12
    )


# -- AES-CCM-8 ----------------------------------------------------------------------------

CCM_KEY = h("404142434445464748494a4b4c4d4e4f")
CCM_NONCE = h("101112131415161718191a1b")
CCM_AAD = h("000102030405060708090a0b0c0d0e0f10111213")
CCM_PLAINTEXT = h("202122232425262728292a2b2c2d2e2f3031323334353637")
CCM_CIPHERTEXT = h("e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5 484392fbc1b09951")


def test_aes_ccm_8_nist_sp800_38c_example_3():
    # NIST SP 800-38C C.3: 12-byte nonce and 8-byte tag, the shape TLS CCM-8 uses.
    aead = AESCCM(CCM_KEY, tag_length=8)
    assert aead.encrypt(CCM_NONCE, CCM_PLAINTEXT, CCM_AAD) == CCM_CIPHERTEXT


def test_record_nonce_is_salt_then_epoch_and_sequence():
    """RFC 6655 §3: the nonce of the NIST example split as 4-byte salt + explicit part."""
    cipher = RecordCipher(CCM_KEY, CCM_NONCE[:4])
    epoch = int.from_bytes(CCM_NONCE[4:6], "big")
    sequence = int.from_bytes(CCM_NONCE[6:12], "big")
    wire_type, fragment = cipher.seal(23, epoch, sequence, CCM_PLAINTEXT)
    aad = CCM_NONCE[4:] + bytes([23]) + h("fefd") + len(CCM_PLAINTEXT).to_bytes(2, "big")
    assert wire_type == 23
    assert fragment == CCM_NONCE[4:] + AESCCM(CCM_KEY, tag_length=8).encrypt(
        CCM_NONCE, CCM_PLAINTEXT, aad
    )


def test_cid_record_layout_is_draft_05_as_particles_mbedtls_builds_it():
    """ssl_msg.c ssl_extract_add_data_from_record: seq + 25 + version + cid + cid_len + length,
    over content + real type + zero padding to 16."""
    key_, salt, cid = b"k" * 16, b"salt", h("0102030405060708")
    wire_type, fragment = RecordCipher(key_, salt).seal(23, 1, 5, b"hello", cid)
    explicit = h("0001 000000000005")
    inner = b"hello" + bytes([23]) + bytes(10)
    aad = explicit + bytes([25]) + h("fefd") + cid + bytes([8]) + len(inner).to_bytes(2, "big")
    assert wire_type == 25
    assert fragment == explicit + AESCCM(key_, tag_length=8).encrypt(salt + explicit, inner, aad)


def test_seal_open_round_trip_with_and_without_cid():
    cipher = RecordCipher(b"k" * 16, b"salt")
    for cid in (None, b"12345678"):
        for data in (b"", b"x", b"y" * 15, b"z" * 16, b"w" * 960):
            wire_type, fragment = cipher.seal(23, 1, 9, data, cid)
            assert cipher.open(wire_type, 1, 9, fragment, cid) == (23, data)


def test_open_rejects_tampering_and_wrong_context():
    cipher = RecordCipher(b"k" * 16, b"salt")
    _, fragment = cipher.seal(23, 1, 9, b"data", b"12345678")
    tampered = fragment[:-1] + bytes([fragment[-1] ^ 1])
    for args in [
        (25, 1, 9, tampered, b"12345678"),
        (25, 1, 10, fragment, b"12345678"),  # another sequence number
        (25, 1, 9, fragment, b"12345679"),  # another CID
        (25, 1, 9, fragment, None),  # read as a record without CID
    ]:
        with pytest.raises(BadRecordMac):
            cipher.open(*args)
    with pytest.raises(RecordError, match="shorter"):
        cipher.open(25, 1, 9, fragment[:15], b"12345678")


def test_type_253_opens_with_25_in_the_additional_data():
    """Device OS rewrites the type byte after sealing, so 253 is authenticated as 25."""
    cipher = RecordCipher(b"k" * 16, b"salt")
    _, fragment = cipher.seal(23, 1, 3, b"ping", b"12345678")
    assert cipher.open(253, 1, 3, fragment, b"12345678") == (23, b"ping")


def test_inner_plaintext_of_zeros_only_is_rejected():
    key_, salt, cid = b"k" * 16, b"salt", b"12345678"
    explicit = h("0001 000000000001")
    inner = bytes(16)
    aad = explicit + bytes([25]) + h("fefd") + cid + bytes([8]) + len(inner).to_bytes(2, "big")
    fragment = explicit + AESCCM(key_, tag_length=8).encrypt(salt + explicit, inner, aad)
    with pytest.raises(RecordError, match="no inner content type"):
        RecordCipher(key_, salt).open(25, 1, 1, fragment, cid)


# -- ECDSA and ECDH -------------------------------------------------------------------------


def test_ecdsa_p256_sha256_rfc_6979_vector():
    # RFC 6979 A.2.5, P-256, SHA-256, message "sample".
    private = ec.derive_private_key(
        0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721, ec.SECP256R1()
    )
    signature = sign_digest(private, hashlib.sha256(b"sample").digest())
    assert decode_dss_signature(signature) == (
        0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8,
    )


def test_key_exchange_work_agrees_on_the_premaster():
    server_key = key("server")
    randoms = b"r" * 64
    ske = server_key_exchange_work(server_key, b"e" * 32, randoms, ServerKeyExchange.encode_params)
    signed = randoms + ServerKeyExchange.encode_params(ske.point)
    client = client_key_exchange_work(
        server_key.public_key(), signed, ske.signature, ske.point, b"c" * 32
    )
    device = key("device")
    digest = hashlib.sha256(b"transcript").digest()
    verified = server_verify_work(
        ske.ephemeral_key,
        client.point,
        public_key_der(device.public_key()),
        sign_digest(device, digest),
        digest,
    )
    assert verified.premaster == client.premaster and len(client.premaster) == 32


def test_key_exchange_work_reports_peer_errors_as_values():
    server_key = key("server")
    randoms = b"r" * 64
    ske = server_key_exchange_work(server_key, b"e" * 32, randoms, ServerKeyExchange.encode_params)
    signed = randoms + ServerKeyExchange.encode_params(ske.point)
    wrong = CryptoWork(
        "x",
        client_key_exchange_work,
        key("other").public_key(),
        signed,
        ske.signature,
        ske.point,
        b"c" * 32,
    ).run()
    assert isinstance(wrong, HandshakeFailure) and wrong.alert == AlertDescription.DECRYPT_ERROR
    device = key("device")
    der = public_key_der(device.public_key())
    digest = hashlib.sha256(b"t").digest()
    cases = {
        "not on the P-256 curve": (b"\x04" + b"\x01" * 64, der, sign_digest(device, digest)),
        "uncompressed": (b"\x02" + b"\x01" * 32, der, sign_digest(device, digest)),
        "SubjectPublicKeyInfo": (encode_point(device.public_key()), b"junk", b"sig"),
        "does not match": (encode_point(device.public_key()), der, sign_digest(key("x"), digest)),
    }
    for reason, (point, spki, signature) in cases.items():
        result = CryptoWork(
            "x", server_verify_work, ske.ephemeral_key, point, spki, signature, digest
        ).run()
        assert isinstance(result, HandshakeFailure) and reason in result.reason


def test_load_public_key_accepts_only_canonical_p256_spki():
    der = public_key_der(key("device").public_key())
    assert public_key_der(load_public_key(der)) == der
    p384 = public_key_der(ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(HandshakeFailure, match="P-256"):
        load_public_key(p384)
    with pytest.raises(HandshakeFailure, match="SubjectPublicKeyInfo"):
        load_public_key(der[:-1])


def test_private_key_from_bytes_is_deterministic_and_in_range():
    assert private_key_from_bytes(b"\xff" * 32).private_numbers().private_value > 0
    a, b = private_key_from_bytes(b"a" * 32), private_key_from_bytes(b"a" * 32)
    assert a.private_numbers() == b.private_numbers()
    assert private_key_from_bytes(bytes(32)).private_numbers().private_value == 1
