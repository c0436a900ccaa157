"""Malformed input: a precise error or alert, never another exception, and the server goes on."""

import random

import pytest
from dtls_harness import DEVICE_ADDRESS, SERVER_ADDRESS, Network, run_work

from twisted_spark.dtls import ApplicationData, Closed, DecodeError, Output
from twisted_spark.dtls.fragments import encode_message, parse_fragments
from twisted_spark.dtls.messages import (
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    ClientKeyExchange,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
)
from twisted_spark.dtls.record import encode_record, split_records


def mutations(datagram: bytes, rng: random.Random, count: int):
    """Bit flips, truncations, extensions, splices and length-field damage."""
    for _ in range(count):
        data = bytearray(datagram)
        kind = rng.randrange(5)
        if kind == 0:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data = data[: rng.randrange(len(data))]
        elif kind == 2:
            data += rng.randbytes(rng.randint(1, 40))
        elif kind == 3:
            position = rng.randrange(len(data))
            data[position:position] = rng.randbytes(rng.randint(1, 8))
        else:
            position = rng.choice([11, 12, 13, 21, 22, 25, 26, 27]) % max(len(data), 1)
            data[position] = rng.choice([0, 1, 0x7F, 0xFF])
        yield bytes(data)


def test_mutated_handshake_traffic_never_raises_and_the_server_keeps_serving():
    reference = Network()
    reference_device, reference_server = reference.handshake()
    reference.device_output(reference_device.send(b"data from the device", 1.0))
    reference.server_output(reference_server.send(b"data from the server", 1.0))
    reference.pump()
    rng = random.Random(1404)
    net = Network(seed="other")  # other keys: replayed records must not authenticate
    device, server = net.handshake()
    for _, datagram in reference.log:
        for mutated in mutations(datagram, rng, 150):
            out = net.server.datagram_received(mutated, DEVICE_ADDRESS, 5.0)
            out = run_work(net.server, out, 5.0)
            assert isinstance(out, Output)
            out = device.datagram_received(mutated, SERVER_ADDRESS, 5.0)
            assert isinstance(out, Output)
    assert not device.closed
    net.device_output(device.send(b"still here", 6.0))
    net.pump()
    assert net.events_of("server", ApplicationData)[-1] == ApplicationData(b"still here")


def replay(net, log):
    """Feed recorded datagrams to a fresh network with the same seeds; returns the last output."""
    out = Output()
    for direction, datagram in log:
        target = net.server if direction == "to_server" else net.device
        out = run_work(target, target.datagram_received(datagram, DEVICE_ADDRESS, 0.0), 0.0)
    return out


def test_mutated_flights_against_fresh_handshakes_never_raise():
    reference = Network()
    reference.handshake()
    fresh = Network()
    handshake = fresh.start_handshake()
    replay(fresh, reference.log)
    assert handshake.connection is not None and len(fresh.server.sessions) == 1  # replay works
    rng = random.Random(7)
    for index, (direction, datagram) in enumerate(reference.log):
        for mutated in mutations(datagram, rng, 60):
            net = Network()
            net.start_handshake()
            out = replay(net, [*reference.log[:index], (direction, mutated)])
            assert isinstance(out, Output)
            for _, event in out.events:
                if isinstance(event, Closed):
                    assert event.reason


def test_random_bytes_are_dropped_with_reasons():
    rng = random.Random(99)
    net = Network()
    for _ in range(300):
        out = net.server.datagram_received(rng.randbytes(rng.randint(0, 80)), DEVICE_ADDRESS, 0.0)
        assert out.work == [] and all(event.reason for event in out.event_list())


@pytest.mark.parametrize(
    "parse",
    [
        ClientHello.parse,
        ServerHello.parse,
        HelloVerifyRequest.parse,
        ServerKeyExchange.parse,
        CertificateRequest.parse,
        Certificate.parse,
        ClientKeyExchange.parse,
        CertificateVerify.parse,
        parse_fragments,
    ],
)
def test_parsers_raise_only_decode_errors(parse):
    rng = random.Random(parse.__qualname__)
    for _ in range(400):
        try:
            parse(rng.randbytes(rng.randint(0, 120)))
        except DecodeError:
            pass


def test_malformed_device_certificate_gets_a_decode_error_alert():
    net = Network()
    patched = []

    def patch(direction, datagram):
        if direction != "to_server" or patched:
            return False
        records, _ = split_records(datagram, 8)
        if not records or records[0].epoch or records[0].fragment[:1] != b"\x0b":
            return False
        patched.append(datagram)
        garbage = encode_message(11, 2, b"\x00\x00\x05abc")
        net.to_server.append(encode_record(22, 0, records[0].sequence, garbage))
        return True

    net.drop = patch
    handshake = net.start_handshake()
    net.pump()
    [closed] = net.events_of("server", Closed)
    assert closed.alert == 50 and "Certificate" in closed.reason
    assert handshake.failed and net.events_of("device", Closed)[0].by_peer
    assert net.server.handshakes == 0


def test_authentic_records_with_garbage_inside_never_raise():
    """Records that decrypt fine but carry nonsense: odd alerts, handshake junk, unknown types."""
    net = Network()
    device, server = net.handshake()
    rng = random.Random(253)
    layer = device._layer  # seal arbitrary content under the real session keys
    for _ in range(300):
        content_type = rng.choice([20, 21, 22, 24, 25, 99, 255])
        payload = rng.randbytes(rng.randint(0, 40))
        if content_type == 21 and len(payload) >= 2:
            payload = bytes([1, payload[1] or 1]) + payload[2:]  # no fatal alerts or close_notify
        out = net.server.datagram_received(layer.seal(content_type, payload), DEVICE_ADDRESS, 1.0)
        assert all(event.reason for event in out.event_list())
    net.device_output(device.send(b"still fine", 2.0))
    net.pump()
    assert net.events_of("server", ApplicationData)[-1] == ApplicationData(b"still fine")


def _cookie_hello(reference):
    """(record, fragment) of the ClientHello with the cookie, from a real handshake."""
    reference.handshake()
    hellos = []
    for direction, datagram in reference.log:
        records, _ = split_records(datagram, None)
        for record in records:
            if direction == "to_server" and record.content_type == 22 and record.epoch == 0:
                [fragment] = parse_fragments(record.fragment)
                if fragment.msg_type == 1:  # ClientHello
                    hellos.append((record, fragment))
    record, fragment = hellos[-1]
    assert ClientHello.parse(fragment.data).cookie
    return record, fragment


@pytest.mark.parametrize("record_sequence, message_seq, reason", [
    # Found by fuzz/targets/dtls_server.py: message_seq 65535 left the server's
    # flight numbers past 16 bits (OverflowError while encoding its ServerHello).
    (None, 0xFFFF, "leaves no room"),
    # Found by the same target: a record sequence near 2**48 - 1 left the
    # server's records none to number a retransmission with (RecordError).
    (2**48 - 2, None, "too few record numbers"),
])
def test_a_client_hello_numbered_near_a_limit_is_dropped_with_a_reason(
        record_sequence, message_seq, reason):
    reference = Network()
    record, fragment = _cookie_hello(reference)
    renumbered = encode_record(
        22, 0, record.sequence if record_sequence is None else record_sequence,
        encode_message(1, fragment.message_seq if message_seq is None else message_seq,
                       fragment.data))
    out = reference.server.datagram_received(renumbered, DEVICE_ADDRESS, 2.0)
    out = run_work(reference.server, out, 2.0)
    reasons = [str(event) for _, event in out.events]
    assert any(reason in text for text in reasons), reasons
    assert out.datagrams == []
    out = reference.server.timer_expired(30.0)  # nothing left to retransmit or to fail
    assert isinstance(out, Output)
