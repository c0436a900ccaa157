"""CoAP over UDP, sans-IO: retransmission, duplicates, message ids (explicit times)."""

import pytest

from twisted_spark.coap.codec import CoapMessage, Code, MessageType, decode, encode_message
from twisted_spark.coap.reliability import MessageLayer, TransmissionParameters

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST


def layer(**options):
    options.setdefault("rng", lambda: 0.0)  # no random stretch: timeouts of exactly 4, 8, 16 s
    options.setdefault("first_message_id", 100)
    return MessageLayer(**options)


def device_con(mid, path=b"E", payload=b"x", token=b"\x07"):
    return encode_message(CON, Code.POST, mid, token, ((11, path),), payload)


def test_parameters_are_device_os_ones_and_give_the_rfc_lifetimes():
    p = TransmissionParameters()
    assert (p.ack_timeout, p.ack_random_factor, p.max_retransmit) == (4.0, 1.5, 3)
    assert p.max_transmit_span == 42.0  # 4 s * (2**3 - 1) * 1.5
    assert p.exchange_lifetime == 246.0  # + 2 * 100 s latency + 4 s processing


def test_con_is_resent_with_doubling_timeouts_then_fails():
    m = layer()
    mid, data = m.send(CoapMessage(CON, Code.POST, 0, b"\x01", ((11, b"f"),)), now=0.0)
    assert mid == 100 and decode(data).message_id == 100
    assert m.next_timer() == 4.0
    assert m.timer_expired(3.9).send == []
    resends = []
    for t in (4.0, 12.0, 28.0):  # waits of 4, 8 and 16 s
        step = m.timer_expired(t)
        assert step.send == [data] and step.failed == []
        resends.append(m.next_timer())
    assert resends == [12.0, 28.0, 60.0]  # the last wait is 32 s
    step = m.timer_expired(60.0)
    assert step.failed == [100] and step.send == []
    assert m.next_timer() is None and m.outstanding == 0


def test_random_factor_stretches_the_first_timeout():
    m = layer(rng=lambda: 0.5)  # between 4 s and 6 s: 5 s
    m.send(CoapMessage(CON, Code.GET, 0), now=10.0)
    assert m.next_timer() == 15.0


def test_ack_stops_retransmission_and_carries_the_response():
    m = layer()
    mid, _ = m.send(CoapMessage(CON, Code.POST, 0, b"\x09"), now=0.0)
    ack = encode_message(ACK, Code.CHANGED, mid, b"\x09", (), b"\x00\x00\x00\x01")
    step = m.received(ack, now=1.0)
    assert [(i, r.payload) for i, r in step.acked] == [(mid, b"\x00\x00\x00\x01")]
    assert m.next_timer() is None
    again = m.received(ack, now=1.5)  # a duplicated ACK is only logged
    assert again.acked == [] and "not awaited" in again.dropped[0]


def test_rst_is_reported():
    m = layer()
    mid, _ = m.send(CoapMessage(CON, Code.GET, 0), now=0.0)
    assert m.received(encode_message(RST, Code.EMPTY, mid), now=0.5).reset == [mid]


def test_duplicate_con_gets_the_same_answer_and_is_not_delivered_twice():
    m = layer()
    first = m.received(device_con(7), now=0.0)
    [request] = first.deliver
    assert request.message_id == 7 and first.send == []
    pending = m.received(device_con(7), now=1.0)  # the device resent before we answered
    assert pending.deliver == [] and pending.send == []
    assert "still being handled" in pending.dropped[0]
    answer = m.acknowledge(request)
    assert decode(answer) == CoapMessage(ACK, Code.EMPTY, 7)
    late = m.received(device_con(7), now=5.0)
    assert late.deliver == [] and late.send == [answer]
    coded = m.respond(request, encode_message(ACK, Code.CHANGED, 7, b"\x07"))
    assert m.received(device_con(7), now=6.0).send == [coded]


def test_duplicate_non_is_dropped_and_a_con_with_the_same_id_is_not_a_duplicate():
    m = layer()
    non = encode_message(NON, Code.POST, 9, b"", ((11, b"E"),), b"hi")
    assert len(m.received(non, now=0.0).deliver) == 1
    assert m.received(non, now=0.1).deliver == []
    assert len(m.received(device_con(9), now=0.2).deliver) == 1


def test_duplicates_are_remembered_for_the_exchange_lifetime_only():
    m = layer()
    m.received(device_con(7), now=0.0)
    assert m.received(device_con(7), now=246.0).deliver == []
    assert len(m.received(device_con(7), now=246.1).deliver) == 1  # a new exchange


def test_remembered_ids_are_bounded():
    m = layer(max_remembered=4)
    for mid in range(10):
        m.received(device_con(mid), now=0.0)
    assert len(m._seen) == 4
    assert len(m.received(device_con(0), now=1.0).deliver) == 1  # forgotten: delivered again


def test_message_ids_run_on_wrap_and_skip_ids_in_flight():
    m = layer(first_message_id=0xFFFF)
    ids = [m.send(CoapMessage(CON, Code.GET, 0), now=0.0)[0] for _ in range(3)]
    assert ids == [0xFFFF, 0, 1]
    m._next_id = 0  # wrapped round again while 0 and 1 still await their ACK
    assert m.send(CoapMessage(NON, Code.POST, 0), now=0.0)[0] == 2


def test_outstanding_cons_are_bounded():
    m = layer(max_outstanding=2)
    m.send(CoapMessage(CON, Code.GET, 0), now=0.0)
    m.send(CoapMessage(CON, Code.GET, 0), now=0.0)
    with pytest.raises(OverflowError):
        m.send(CoapMessage(CON, Code.GET, 0), now=0.0)
    m.send(CoapMessage(NON, Code.POST, 0), now=0.0)  # NONs are not held


def test_malformed_input_is_dropped_with_a_reason():
    step = layer().received(b"\x40\x01", now=0.0)
    assert step.deliver == [] and "malformed CoAP message" in step.dropped[0]


def test_respond_checks_what_it_is_given():
    m = layer()
    [request] = m.received(device_con(3), now=0.0).deliver
    with pytest.raises(ValueError, match="id 4 != request id 3"):
        m.respond(request, encode_message(ACK, Code.EMPTY, 4))
    with pytest.raises(ValueError, match="ACK or RST"):
        m.respond(request, encode_message(CON, Code.EMPTY, 3))
