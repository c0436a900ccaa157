# -*- test-case-name: tests.test_dtls_crypto -*-
"""AES-128-CCM-8 record protection, with the draft-05 connection-ID layout.

Nonce (RFC 6655 §3): the 4-byte implicit salt from the key block, then the
8-byte explicit part, which is epoch + sequence number and travels in front
of the ciphertext.  Additional data (RFC 5246 §6.2.3.3)::

    seq_num(8) + type(1) + version(2) + length(2)

and for connection-ID records (draft-ietf-tls-dtls-connection-id-05, as
Particle's mbedTLS fork builds it in ssl_extract_add_data_from_record)::

    seq_num(8) + 25(1) + version(2) + cid + cid_length(1) + length(2)

where length is that of the DTLSInnerPlaintext (content, real type, zero
padding).  A type-253 record is a type-25 record whose first byte Device OS
rewrote after sealing, so it is opened with 25 in the additional data.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from twisted_spark.dtls.errors import BadRecordMac, RecordError
from twisted_spark.dtls.wire import DTLS_1_2, ContentType, u8, u16, u48

__all__ = [
    "CID_PADDING_GRANULARITY",
    "OVERHEAD",
    "RecordCipher",
]

EXPLICIT_NONCE_LENGTH = 8
TAG_LENGTH = 8
OVERHEAD = EXPLICIT_NONCE_LENGTH + TAG_LENGTH
CID_PADDING_GRANULARITY = 16  # mbedTLS MBEDTLS_SSL_CID_PADDING_GRANULARITY default


def _sequence_bytes(epoch: int, sequence: int) -> bytes:
    return u16(epoch) + u48(sequence)


class RecordCipher:
    """Seals and opens the records of one direction of one epoch."""

    __slots__ = ("_aead", "_salt")

    def __init__(self, key: bytes, salt: bytes) -> None:
        if len(key) != 16 or len(salt) != 4:
            raise ValueError("AES-128-CCM-8 needs a 16-byte key and a 4-byte salt")
        self._aead = AESCCM(key, tag_length=TAG_LENGTH)
        self._salt = salt

    def seal(
        self,
        content_type: int,
        epoch: int,
        sequence: int,
        plaintext: bytes,
        cid: bytes | None = None,
        padding: int = CID_PADDING_GRANULARITY,
        version: int = DTLS_1_2,
    ) -> tuple[int, bytes]:
        """(wire content type, protected fragment) for one record.

        With a ``cid`` (even an empty one is not used: pass None for records
        without CID) the content is wrapped in a DTLSInnerPlaintext padded to
        a multiple of ``padding`` and the wire type becomes 25.
        """
        explicit = _sequence_bytes(epoch, sequence)
        if cid is None:
            wire_type = content_type
            inner = plaintext
            aad = explicit + u8(content_type) + u16(version) + u16(len(inner))
        else:
            wire_type = ContentType.TLS12_CID
            pad = (padding - (len(plaintext) + 1) % padding) % padding if padding else 0
            inner = plaintext + u8(content_type) + bytes(pad)
            aad = explicit + u8(wire_type) + u16(version) + cid + u8(len(cid)) + u16(len(inner))
        sealed = self._aead.encrypt(self._salt + explicit, inner, aad)
        return wire_type, explicit + sealed

    def open(
        self,
        content_type: int,
        epoch: int,
        sequence: int,
        fragment: bytes,
        cid: bytes | None = None,
        version: int = DTLS_1_2,
    ) -> tuple[int, bytes]:
        """(real content type, plaintext) of one protected record.

        Raises :class:`BadRecordMac` if the tag does not verify and :class:`RecordError`
        for a fragment too short to be protected or an inner plaintext with
        no content type.
        """
        if len(fragment) < OVERHEAD:
            raise RecordError(
                f"protected record of {len(fragment)} bytes is shorter than {OVERHEAD}"
            )
        explicit = fragment[:EXPLICIT_NONCE_LENGTH]
        length = len(fragment) - OVERHEAD
        header_sequence = _sequence_bytes(epoch, sequence)
        if cid is None:
            aad = header_sequence + u8(content_type) + u16(version) + u16(length)
        else:
            aad = (
                header_sequence
                + u8(ContentType.TLS12_CID)
                + u16(version)
                + cid
                + u8(len(cid))
                + u16(length)
            )
        try:
            inner = self._aead.decrypt(self._salt + explicit, fragment[EXPLICIT_NONCE_LENGTH:], aad)
        except InvalidTag:
            raise BadRecordMac(f"bad record MAC (epoch {epoch}, sequence {sequence})") from None
        if cid is None:
            return content_type, inner
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise RecordError("connection-ID record has no inner content type")
        return stripped[-1], stripped[:-1]
