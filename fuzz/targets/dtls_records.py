# -*- test-case-name: tests.test_fuzz_corpus -*-
"""DTLS record headers, handshake fragments and handshake message bodies (``dtls/``).

The first byte picks the layer:

* 0: :func:`split_records` (with and without connection IDs) never raises,
  and re-encoding the records it returned gives the bytes it consumed;
* 1: :func:`parse_fragments`, then a bounded :class:`Reassembler`: only
  :class:`DecodeError`, never more buffered than its bound;
* 2-10: one message body parser (ClientHello ... Finished): only
  :class:`DecodeError`, and a parsed message survives ``parse(encode(m))``
  (not byte for byte: an empty extensions block is written as none).
"""

from __future__ import annotations

from fuzz.harness import ContractBroken
from twisted_spark.dtls.errors import DecodeError
from twisted_spark.dtls.fragments import Reassembler, parse_fragments
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
from twisted_spark.dtls.record import encode_record, split_records

MESSAGES = (
    ClientHello,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
    CertificateRequest,
    Certificate,
    ClientKeyExchange,
    CertificateVerify,
    Finished,
)


def _records(data: bytes) -> None:
    for cid_length in (8, None):
        records, problem = split_records(data, cid_length)
        again = b"".join(
            encode_record(r.content_type, r.epoch, r.sequence, r.fragment, r.cid, r.version)
            for r in records)
        if not data.startswith(again) or (problem is None and again != data):
            raise ContractBroken(f"records do not re-encode to their bytes: {data.hex()}")


def _fragments(data: bytes) -> None:
    reassembler = Reassembler(0, max_message=1024, window=4, max_buffered=2048)
    try:
        for fragment in parse_fragments(data):
            reassembler.add(fragment)
            for message in reassembler.pop_ready():
                if len(message.body) > 1024:
                    raise ContractBroken(f"a message of {len(message.body)} bytes")
    except DecodeError:
        pass
    if reassembler._buffered > 2048:
        raise ContractBroken(f"{reassembler._buffered} bytes buffered")


def _message(kind, data: bytes) -> None:
    try:
        message = kind.parse(data)
    except DecodeError:
        return
    again = kind.parse(message.encode())
    if again != message:
        raise ContractBroken(f"{kind.__name__} of {data.hex()} does not survive re-encoding")


def one_input(data: bytes) -> None:
    if not data:
        return
    choice, rest = data[0] % (2 + len(MESSAGES)), data[1:]
    if choice == 0:
        _records(rest)
    elif choice == 1:
        _fragments(rest)
    else:
        _message(MESSAGES[choice - 2], rest)
