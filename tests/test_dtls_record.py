"""DTLS record headers, the replay window, the epoch layer and handshake fragments."""

import pytest

from twisted_spark.dtls.errors import BadRecordMac, DecodeError, RecordError, ReplayedRecord
from twisted_spark.dtls.fragments import (
    Added,
    HandshakeFragment,
    Message,
    Reassembler,
    encode_message,
    fragment_message,
    parse_fragments,
)
from twisted_spark.dtls.layer import RecordLayer, ciphers_for
from twisted_spark.dtls.prf import KeyBlock
from twisted_spark.dtls.record import encode_record, split_records
from twisted_spark.dtls.replay import ReplayWindow

CID = bytes.fromhex("a1a2a3a4a5a6a7a8")

# -- records ----------------------------------------------------------------------------


def test_encode_then_split_plain_and_cid_records_in_one_datagram():
    datagram = (
        encode_record(22, 0, 7, b"hello")
        + encode_record(25, 1, 2**48 - 1, b"x" * 20, CID)
        + encode_record(253, 1, 3, b"y", CID)
    )
    records, problem = split_records(datagram, 8)
    assert problem is None
    assert [(r.content_type, r.epoch, r.sequence, r.cid, r.fragment) for r in records] == [
        (22, 0, 7, b"", b"hello"),
        (25, 1, 2**48 - 1, CID, b"x" * 20),
        (253, 1, 3, CID, b"y"),
    ]
    assert [r.moved for r in records] == [False, False, True]
    assert (
        encode_record(22, 0, 7, b"hello") == bytes.fromhex("16fefd00000000000000070005") + b"hello"
    )


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (encode_record(22, 0, 1, b"ok") + b"\x16\xfe\xfd", "too short for a record header"),
        (encode_record(99, 0, 1, b"x"), "unknown record content type 99"),
        (encode_record(22, 0, 1, b"x", version=0x0303), "not DTLS 1.0 or 1.2"),
        (encode_record(22, 0, 1, b"abc")[:-1], "runs past the datagram"),
        (encode_record(25, 1, 1, b"abc", CID)[:15], "header truncated"),
        (bytes.fromhex("17fefd00010000000000014801") + b"\0" * 18433, "exceeds"),
    ],
)
def test_malformed_headers_stop_parsing_but_keep_earlier_records(datagram, reason):
    records, problem = split_records(encode_record(23, 1, 9, b"first") + datagram, 8)
    assert records[0].fragment == b"first"
    assert reason in problem


def test_cid_records_are_refused_where_no_cid_is_used():
    records, problem = split_records(encode_record(25, 1, 1, b"abc", CID), None)
    assert records == [] and "connection-ID record" in problem


# -- replay window -------------------------------------------------------------------------


def test_replay_window_accepts_new_and_rejects_seen_or_too_old():
    window = ReplayWindow()
    for sequence in (0, 2, 1, 70):
        assert window.check(sequence)
        window.accept(sequence)
    assert not window.check(70)  # seen
    assert window.check(69) and window.check(7)  # unseen, inside the 64-record window
    assert not window.check(6) and not window.check(2)  # 64 or more below 70: too old
    window.accept(69)
    assert not window.check(69)
    window.accept(1000)
    assert window.latest == 1000 and window.bitmap == 1
    assert not window.check(936) and window.check(937)


def test_replay_window_check_does_not_move_the_window():
    window = ReplayWindow()
    window.accept(5)
    assert window.check(500)
    assert window.latest == 5 and window.check(4)


# -- record layer ----------------------------------------------------------------------------

KEYS = KeyBlock(b"c" * 16, b"s" * 16, b"csal", b"ssal")


def _pair():
    device = RecordLayer(out_cid=CID, in_cid=None)
    server = RecordLayer(out_cid=None, in_cid=CID)
    device.install(*ciphers_for(KEYS, is_client=True))
    server.install(*ciphers_for(KEYS, is_client=False))
    for layer in (device, server):
        layer.read_epoch = layer.write_epoch = 1
    return device, server


def _one(datagram, cid_length):
    records, problem = split_records(datagram, cid_length)
    assert problem is None and len(records) == 1
    return records[0]


def test_layers_carry_data_both_ways_with_cid_only_towards_the_server():
    device, server = _pair()
    to_server = device.seal(23, b"from device")
    assert to_server[0] == 25 and to_server[11:19] == CID
    assert server.open(_one(to_server, 8)) == (23, b"from device")
    to_device = server.seal(23, b"from server")
    assert to_device[0] == 23
    assert device.open(_one(to_device, None)) == (23, b"from server")


def test_layer_rejects_replays_forgeries_and_wrong_epochs():
    device, server = _pair()
    record = _one(device.seal(23, b"once"), 8)
    server.open(record)
    with pytest.raises(ReplayedRecord):
        server.open(record)
    forged = _one(device.seal(23, b"twice")[:-1] + b"\0", 8)
    with pytest.raises(BadRecordMac):
        server.open(forged)
    assert server.windows[1].check(forged.sequence)  # a forgery does not move the window
    with pytest.raises(RecordError, match="epoch 2"):
        server.open(_one(encode_record(25, 2, 1, b"x" * 20, CID), 8))
    with pytest.raises(RecordError, match="without the connection ID"):
        server.open(_one(encode_record(23, 1, 5, b"x" * 20), 8))
    with pytest.raises(RecordError, match="another connection ID"):
        server.open(_one(encode_record(25, 1, 5, b"x" * 20, b"zzzzzzzz"), 8))


def test_epoch_sequence_numbers_are_separate():
    layer = RecordLayer(out_cid=None, in_cid=None, first_sequence=5)
    layer.install(*ciphers_for(KEYS, is_client=False))
    assert _one(layer.seal(22, b"a", 0), None).sequence == 5
    assert _one(layer.seal(22, b"b", 1), None).sequence == 0
    assert _one(layer.seal(22, b"c", 0), None).sequence == 6


# -- handshake fragments ------------------------------------------------------------------------


def test_message_encoding_has_the_dtls_header():
    assert encode_message(1, 3, b"abc") == bytes.fromhex("010000030003000000000003") + b"abc"


def test_fragments_reassemble_out_of_order_and_overlapping():
    body = bytes(range(256)) * 4
    pieces = parse_fragments(b"".join(fragment_message(11, 2, body, 100)))
    assert len(pieces) == 11 and all(len(p.data) <= 100 for p in pieces)
    reassembler = Reassembler(next_seq=2)
    for piece in reversed(pieces):
        assert reassembler.add(piece) is Added.BUFFERED
        if piece.offset:
            assert reassembler.pop_ready() == []
    reassembler.add(HandshakeFragment(11, len(body), 2, 50, body[50:300]))  # overlap
    assert reassembler.pop_ready() == [Message(11, 2, body)]
    assert reassembler.next_seq == 3
    assert reassembler.add(pieces[0]) is Added.OLD


def test_reassembler_is_bounded_and_checks_consistency():
    reassembler = Reassembler(next_seq=0, max_message=100, window=4, max_buffered=150)
    with pytest.raises(DecodeError, match="exceeds 100"):
        reassembler.add(HandshakeFragment(11, 101, 0, 0, b""))
    assert reassembler.add(HandshakeFragment(11, 10, 4, 0, b"x" * 10)) is Added.IGNORED
    assert reassembler.add(HandshakeFragment(11, 100, 1, 0, b"x" * 10)) is Added.BUFFERED
    assert reassembler.add(HandshakeFragment(11, 60, 2, 0, b"x" * 10)) is Added.IGNORED  # 160 > 150
    with pytest.raises(DecodeError, match="disagree"):
        reassembler.add(HandshakeFragment(12, 100, 1, 10, b"y"))
    with pytest.raises(DecodeError, match="disagree"):
        reassembler.add(HandshakeFragment(11, 99, 1, 10, b"y"))


def test_parse_fragments_rejects_fragments_past_their_message():
    bad = bytes.fromhex("0b0000040000000003000002") + b"ab"
    with pytest.raises(DecodeError, match="runs past"):
        parse_fragments(bad)
    with pytest.raises(DecodeError):
        parse_fragments(encode_message(1, 0, b"abcdef")[:-1])
