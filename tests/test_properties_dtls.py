"""Property tests (hypothesis) of DTLS records and handshake fragments (``dtls/``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_spark.dtls.fragments import Reassembler, fragment_message, parse_fragments
from twisted_spark.dtls.record import MAX_SEQUENCE, encode_record, split_records
from twisted_spark.dtls.wire import DTLS_1_0, DTLS_1_2, ContentType

settings.register_profile("suite", deadline=None, max_examples=150)
settings.load_profile("suite")

CID_TYPES = (ContentType.TLS12_CID, ContentType.MOVED_CID)


@st.composite
def records(draw, cid_length=8):
    content_type = draw(st.sampled_from(list(ContentType)))
    return (
        int(content_type),
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, MAX_SEQUENCE)),
        draw(st.binary(max_size=300)),
        draw(st.binary(min_size=cid_length, max_size=cid_length))
        if content_type in CID_TYPES else b"",
        draw(st.sampled_from((DTLS_1_2, DTLS_1_0))),
    )


@given(st.lists(records(), max_size=5))
def test_split_records_inverts_encode_record(fields):
    datagram = b"".join(encode_record(*f) for f in fields)
    parsed, problem = split_records(datagram, 8)
    assert problem is None
    assert [(r.content_type, r.epoch, r.sequence, r.fragment, r.cid, r.version)
            for r in parsed] == fields


@given(st.lists(records(), min_size=1, max_size=4), st.data())
def test_a_truncated_datagram_keeps_the_whole_records_before_the_cut(fields, data):
    wires = [encode_record(*f) for f in fields]
    datagram = b"".join(wires)
    cut = data.draw(st.integers(0, len(datagram) - 1))
    parsed, problem = split_records(datagram[:cut], 8)
    whole = 0
    position = 0
    for wire in wires:
        if position + len(wire) > cut:
            break
        position += len(wire)
        whole += 1
    assert len(parsed) == whole
    assert (problem is None) == (position == cut)


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=2000),
       st.integers(1, 700), st.randoms(use_true_random=False))
def test_fragments_in_any_order_reassemble_the_message(msg_type, seq, body, size, shuffle):
    fragments = [f for wire in fragment_message(msg_type, seq, body, size)
                 for f in parse_fragments(wire)]
    shuffle.shuffle(fragments)
    reassembler = Reassembler(seq, max_message=4096)
    for fragment in fragments:
        reassembler.add(fragment)
    [message] = reassembler.pop_ready()
    assert (message.msg_type, message.message_seq, message.body) == (msg_type, seq, body)
    assert reassembler.pop_ready() == []
