# -*- test-case-name: tests.test_dtls_record -*-
"""DTLS 1.2 record headers: split a datagram into records, encode one record.

A record header is type(1) version(2) epoch(2) sequence(6) [cid] length(2)
(RFC 6347 §4.1; the cid only in types 25 and 253, draft-05 CID).  The CID
has no length on the wire: the receiver knows how long the CIDs it issued
are, so the caller passes ``cid_length`` (8 on our server; None on a device,
which issues none and ignores CID records).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_spark.dtls.wire import DTLS_1_0, DTLS_1_2, ContentType, u8, u16, u48

__all__ = [
    "HEADER_LENGTH",
    "MAX_FRAGMENT_LENGTH",
    "MAX_SEQUENCE",
    "Record",
    "encode_record",
    "split_records",
]

HEADER_LENGTH = 13  # without a CID
MAX_FRAGMENT_LENGTH = 2**14 + 2048  # RFC 6347 §4.1 / RFC 5246 §6.2.3
MAX_SEQUENCE = 2**48 - 1
_CID_TYPES = (ContentType.TLS12_CID, ContentType.MOVED_CID)
_KNOWN_TYPES = frozenset(int(t) for t in ContentType)


@dataclass(frozen=True, slots=True)
class Record:
    """One record as it arrived; ``fragment`` is still protected if ``epoch`` > 0."""

    content_type: int
    version: int
    epoch: int
    sequence: int
    cid: bytes
    fragment: bytes

    @property
    def has_cid(self) -> bool:
        return self.content_type in _CID_TYPES

    @property
    def moved(self) -> bool:
        """A type-253 record: the device resumed a saved session, maybe from a new address."""
        return self.content_type == ContentType.MOVED_CID


def split_records(data: bytes, cid_length: int | None) -> tuple[list[Record], str | None]:
    """The records of one datagram, and why parsing stopped early (None if it did not).

    A malformed header makes the rest of the datagram unusable (the lengths
    can no longer be trusted), so parsing stops there; the records before it
    are still returned.
    """
    records: list[Record] = []
    position = 0
    end = len(data)
    while position < end:
        if end - position < HEADER_LENGTH:
            return records, f"{end - position} trailing bytes are too short for a record header"
        content_type = data[position]
        if content_type not in _KNOWN_TYPES:
            return records, f"unknown record content type {content_type}"
        version = int.from_bytes(data[position + 1 : position + 3], "big")
        if version not in (DTLS_1_2, DTLS_1_0):
            return records, f"record version {version:#06x} is not DTLS 1.0 or 1.2"
        epoch = int.from_bytes(data[position + 3 : position + 5], "big")
        sequence = int.from_bytes(data[position + 5 : position + 11], "big")
        header_end = position + 11
        cid = b""
        if content_type in _CID_TYPES:
            if cid_length is None:
                return records, f"connection-ID record (type {content_type}) where none is used"
            cid = data[header_end : header_end + cid_length]
            header_end += cid_length
        if end - header_end < 2:
            return records, "record header truncated"
        length = int.from_bytes(data[header_end : header_end + 2], "big")
        start = header_end + 2
        if length > MAX_FRAGMENT_LENGTH:
            return records, f"record length {length} exceeds {MAX_FRAGMENT_LENGTH}"
        if length > end - start:
            return records, f"record length {length} runs past the datagram ({end - start} left)"
        records.append(
            Record(content_type, version, epoch, sequence, cid, data[start : start + length])
        )
        position = start + length
    return records, None


def encode_record(
    content_type: int,
    epoch: int,
    sequence: int,
    fragment: bytes,
    cid: bytes = b"",
    version: int = DTLS_1_2,
) -> bytes:
    """The wire bytes of one record (the CID only goes in for types 25/253)."""
    return b"".join(
        (
            u8(content_type),
            u16(version),
            u16(epoch),
            u48(sequence),
            cid,
            u16(len(fragment)),
            fragment,
        )
    )
