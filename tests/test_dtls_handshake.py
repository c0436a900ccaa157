"""Full Gen3 handshakes between the sans-IO device and server, in memory, with explicit time."""

import pytest
from cryptography.hazmat.backends.openssl.backend import backend
from dtls_harness import DEVICE_ADDRESS, SERVER_ADDRESS, FixedRandom, Network, key, run_work

from twisted_spark.dtls import (
    ApplicationData,
    ClientHandshake,
    Closed,
    Dropped,
    DtlsServer,
    HandshakeComplete,
    ServerConfig,
    SessionTable,
)
from twisted_spark.dtls.ecc import public_key_der
from twisted_spark.dtls.fragments import encode_message, parse_fragments
from twisted_spark.dtls.record import encode_record, split_records


def plaintext_messages(datagram):
    """[(message type, message_seq)] of the plaintext handshake records of a datagram."""
    records, _ = split_records(datagram, 8)
    return [
        (fragment.msg_type, fragment.message_seq)
        for record in records
        if record.epoch == 0 and record.content_type == 22
        for fragment in parse_fragments(record.fragment)
    ]


def test_full_handshake_then_data_both_ways():
    net = Network()
    device, server = net.handshake()
    [server_done] = net.events_of("server", HandshakeComplete)
    [device_done] = net.events_of("device", HandshakeComplete)
    assert server_done.session.peer_public_key == public_key_der(net.device_key.public_key())
    assert device_done.session.peer_public_key == public_key_der(net.server_key.public_key())
    assert server_done.session.cid == device_done.session.cid == device.cid
    assert len(device.cid) == 8
    assert server.address == DEVICE_ADDRESS
    net.device_output(device.send(b"POST /h", net.now))
    assert net.to_server[0][0] == 25  # device records carry the CID
    net.pump()
    net.server_output(server.send(b"ACK", net.now))
    assert net.to_device[0][0] == 23  # the server's do not
    net.pump()
    assert net.events_of("server", ApplicationData) == [ApplicationData(b"POST /h")]
    assert net.events_of("device", ApplicationData) == [ApplicationData(b"ACK")]


def test_flights_follow_the_gen3_dialect():
    net = Network()
    net.handshake()
    flights = [(direction, plaintext_messages(d)) for direction, d in net.log]
    assert flights[0] == ("to_server", [(1, 0)])  # ClientHello
    assert flights[1] == ("to_device", [(3, 0)])  # HelloVerifyRequest
    assert flights[2] == ("to_server", [(1, 1)])  # ClientHello + cookie
    # ServerHello, ServerKeyExchange, CertificateRequest, ServerHelloDone: no Certificate
    assert flights[3] == ("to_device", [(2, 1), (12, 2), (13, 3), (14, 4)])
    # Certificate, ClientKeyExchange, CertificateVerify, then CCS and Finished (protected)
    assert flights[4][1] == [(11, 2), (16, 3), (15, 4)]
    final = split_records(net.log[4][1], 8)[0]
    assert [(r.content_type, r.epoch) for r in final[3:]] == [(20, 0), (25, 1)]
    server_final = split_records(net.log[5][1], None)[0]
    assert [(r.content_type, r.epoch, r.sequence) for r in server_final] == [(20, 0, 5), (22, 1, 0)]


def test_cookie_exchange_comes_before_any_work_or_state():
    net = Network()
    net.start_handshake()
    first = net.to_server.pop()
    out = net.server.datagram_received(first, DEVICE_ADDRESS, 0.0)
    assert out.work == [] and net.server.handshakes == 0
    [(address, verify)] = out.datagrams
    assert address == DEVICE_ADDRESS and plaintext_messages(verify) == [(3, 0)]
    assert verify[5:11] == first[5:11]  # HelloVerifyRequest reuses the record sequence number

    net.device_output(net.device.datagram_received(verify, SERVER_ADDRESS, 0.0))
    second = net.to_server.pop()
    elsewhere = net.server.datagram_received(second, ("192.0.2.99", 1), 0.0)
    assert elsewhere.work == [] and "does not match" in elsewhere.event_list()[0].reason
    late = net.server.datagram_received(second, DEVICE_ADDRESS, 61.0)
    assert late.work == [] and "s old" in late.event_list()[0].reason
    out = net.server.datagram_received(second, DEVICE_ADDRESS, 1.0)
    assert len(out.work) == 1 and out.datagrams == [] and net.server.handshakes == 1


def hello_with_cookie(net):
    """Run the cookie exchange by hand; returns the device's second ClientHello."""
    net.start_handshake()
    out = net.server.datagram_received(net.to_server.pop(), net.device_address, net.now)
    net.device_output(net.device.datagram_received(out.datagrams[0][1], SERVER_ADDRESS, net.now))
    return net.to_server.pop()


def test_duplicate_client_hello_gets_the_flight_again_not_a_second_handshake():
    net = Network()
    hello = hello_with_cookie(net)
    first = run_work(net.server, net.server.datagram_received(hello, DEVICE_ADDRESS, 0.0), 0.0)
    again = run_work(net.server, net.server.datagram_received(hello, DEVICE_ADDRESS, 0.5), 0.5)
    assert net.server.handshakes == 1 and again.work == []
    [(_, flight)], [(_, resent)] = first.datagrams, again.datagrams
    assert (
        plaintext_messages(resent)
        == plaintext_messages(flight)
        == [(2, 1), (12, 2), (13, 3), (14, 4)]
    )
    assert resent[5:11] != flight[5:11]  # fresh record sequence numbers
    net.to_device.append(resent)
    net.pump()
    assert net.device.connection is not None


def test_lost_server_flight_is_retransmitted_on_the_timer():
    net = Network()
    lost = []

    def drop(direction, datagram):
        if direction == "to_device" and (2, 1) in plaintext_messages(datagram) and not lost:
            lost.append(datagram)
            return True
        return False

    net.drop = drop
    handshake = net.start_handshake()
    net.pump()
    assert lost and handshake.connection is None
    assert net.server.next_timer() == 1.0
    net.advance(0.9)
    assert net.to_device == []
    net.advance(1.0)
    [again] = net.to_device
    assert plaintext_messages(again) == plaintext_messages(lost[0])
    assert again[5:11] != lost[0][5:11]
    net.pump()
    assert handshake.connection is not None
    assert len(net.events_of("server", HandshakeComplete)) == 1


def test_lost_final_server_flight_is_resent_when_the_device_retransmits():
    net = Network()
    dropped = []

    def drop(direction, datagram):
        if direction == "to_device" and datagram[0] == 20 and not dropped:
            dropped.append(datagram)  # ChangeCipherSpec + Finished
            return True
        return False

    net.drop = drop
    handshake = net.start_handshake()
    net.pump()
    assert dropped and handshake.connection is None
    assert len(net.events_of("server", HandshakeComplete)) == 1
    assert handshake.next_timer() == 3.0  # Device OS: 3 s, doubling
    net.advance(3.0)
    net.pump()
    assert handshake.connection is not None
    assert len(net.events_of("server", HandshakeComplete)) == 1
    assert net.events_of("server", Dropped) == []  # the repeated flight is expected, not noise


def test_lost_device_flight_recovers_through_the_server_timer():
    net = Network()
    dropped = []

    def drop(direction, datagram):
        if direction == "to_server" and (11, 2) in plaintext_messages(datagram) and not dropped:
            dropped.append(datagram)
            return True
        return False

    net.drop = drop
    handshake = net.start_handshake()
    net.pump()
    assert dropped and handshake.connection is None
    net.advance(1.0)  # the server resends its flight; the device answers with its own again
    net.pump()
    assert handshake.connection is not None


def test_unanswered_handshakes_give_up_on_both_sides():
    net = Network()
    net.drop = lambda direction, datagram: direction == "to_device" and datagram[13] != 3
    handshake = net.start_handshake()
    net.pump()
    for now in (1, 3, 7, 9, 15, 21, 31, 45, 55, 69, 100):
        net.advance(float(now))
        net.pump()
    assert handshake.failed and handshake.next_timer() is None
    [closed] = net.events_of("device", Closed)
    assert "no answer after 3 retransmissions" in closed.reason
    assert net.server.handshakes == 0 and net.server.next_timer() is None
    assert any("retransmissions" in c.reason for c in net.events_of("server", Closed))


def test_small_datagrams_fragment_and_reordering_is_tolerated():
    server_key = key("server")
    server = DtlsServer(ServerConfig(server_key, rng=FixedRandom("s"), datagram_budget=120))
    net = Network(server=server, server_key=server_key)
    net.to_server.append(hello_with_cookie(net))
    handshake = net.device
    handshake.datagram_budget = 70  # the ClientHellos went whole; fragment the rest
    for _ in range(20):
        net.to_server.reverse()
        net.to_device.reverse()
        net.step()
        if handshake.connection is not None:
            break
    assert handshake.connection is not None
    assert max(len(d) for _, d in net.log[2:]) <= 120
    fragments_to_device = [
        len(parse_fragments(r.fragment))
        for direction, d in net.log
        if direction == "to_device"
        for r in split_records(d, None)[0]
        if r.content_type == 22 and r.epoch == 0
    ]
    assert len(fragments_to_device) > 5


def test_application_data_is_delivered_once_and_forgeries_are_dropped():
    net = Network()
    device, server = net.handshake()
    out = device.send(b"once", net.now)
    [(_, datagram)] = out.datagrams
    first = net.server.datagram_received(datagram, DEVICE_ADDRESS, 1.0)
    again = net.server.datagram_received(datagram, DEVICE_ADDRESS, 1.0)
    assert first.event_list() == [ApplicationData(b"once")]
    [dropped] = again.event_list()
    assert isinstance(dropped, Dropped) and "replayed" in dropped.reason
    [(_, fresh)] = device.send(b"forged", net.now).datagrams
    forged = fresh[:-1] + bytes([fresh[-1] ^ 0x40])
    [bad] = net.server.datagram_received(forged, DEVICE_ADDRESS, 1.0).event_list()
    assert "bad record MAC" in bad.reason
    [(_, later)] = device.send(b"later", net.now).datagrams
    assert net.server.datagram_received(later, DEVICE_ADDRESS, 1.0).event_list() == [
        ApplicationData(b"later")
    ]


def test_unknown_connection_id_is_dropped_with_a_reason():
    net = Network()
    record = encode_record(25, 1, 1, b"x" * 24, b"\xee" * 8)
    [dropped] = net.server.datagram_received(record, DEVICE_ADDRESS, 0.0).event_list()
    assert "unknown connection ID eeeeeeeeeeeeeeee" in dropped.reason


def test_bad_certificate_verify_gets_a_decrypt_error_alert():
    net = Network()

    corrupted = []

    def corrupt(direction, datagram):
        if direction == "to_server" and (15, 4) in plaintext_messages(datagram) and not corrupted:
            corrupted.append(datagram)
            records, _ = split_records(datagram, 8)
            cv = records[2].fragment
            corrupt_cv = cv[:-2] + bytes([cv[-2] ^ 1]) + cv[-1:]
            patched = b"".join(
                encode_record(
                    r.content_type, r.epoch, r.sequence, corrupt_cv if i == 2 else r.fragment, r.cid
                )
                for i, r in enumerate(records)
            )
            net.to_server.append(patched)
            return True
        return False

    net.drop = corrupt
    handshake = net.start_handshake()
    net.pump()
    [server_closed] = net.events_of("server", Closed)
    assert server_closed.alert == 51 and "CertificateVerify" in server_closed.reason
    [device_closed] = net.events_of("device", Closed)
    assert device_closed.by_peer and "decrypt_error(51)" in device_closed.reason
    assert handshake.failed and net.server.handshakes == 0 and len(net.server.sessions) == 0


def test_device_refuses_a_server_signed_with_another_key():
    net = Network()
    net.device_key = key("device")
    handshake = ClientHandshake(
        net.client_config().__class__(
            net.device_key, key("impostor").public_key(), rng=FixedRandom("d")
        ),
        SERVER_ADDRESS,
    )
    net.device = handshake
    net.device_output(handshake.start(0.0))
    net.pump()
    [closed] = net.events_of("device", Closed)
    assert "ServerKeyExchange signature" in closed.reason and closed.alert == 51
    assert net.server.handshakes == 0  # the server saw the alert and forgot the handshake


def test_device_refuses_a_server_certificate_message():
    """Device OS: 'server key exchange message must not be skipped'."""
    net = Network()
    hello = hello_with_cookie(net)
    out = run_work(net.server, net.server.datagram_received(hello, DEVICE_ADDRESS, 0.0), 0.0)
    server_hello = parse_fragments(split_records(out.datagrams[0][1], 8)[0][0].fragment)[0]
    fake = encode_record(22, 0, 1, encode_message(2, 1, server_hello.data)) + encode_record(
        22, 0, 2, encode_message(11, 2, b"\x00\x00\x00")
    )
    result = net.device.datagram_received(fake, SERVER_ADDRESS, 0.0)
    [closed] = result.event_list()
    assert closed.alert == 10 and "expected ServerKeyExchange" in closed.reason
    [(_, alert)] = result.datagrams
    assert alert == encode_record(21, 0, 2, bytes([2, 10]))


def test_handshakes_are_bounded():
    server = DtlsServer(ServerConfig(key("server"), rng=FixedRandom("s")), max_handshakes=2)
    outputs = []
    for index in range(3):
        net = Network(server=server)
        net.device_address = ("192.0.2.1", 1000 + index)
        outputs.append(server.datagram_received(hello_with_cookie(net), net.device_address, 0.0))
    assert server.handshakes == 2
    assert [len(out.work) for out in outputs] == [1, 1, 0]
    [dropped] = outputs[2].event_list()
    assert "2 handshakes already running" in dropped.reason


def test_session_table_evicts_the_least_recent_and_expires_idle_sessions():
    server = DtlsServer(
        ServerConfig(key("server"), rng=FixedRandom("s")),
        SessionTable(max_sessions=1, idle_timeout=100.0),
    )
    first = Network(server=server)
    first.handshake()
    second = Network(server=server, device_key=key("device-2"))
    second.device_address = ("192.0.2.2", 2)
    second.handshake()
    evictions = [e for e in second.events_of("server", Closed) if "evicted" in e.reason]
    assert len(evictions) == 1 and len(server.sessions) == 1
    assert server.expire(50.0).event_list() == []
    assert server.expire(101.0).event_list() == [Closed("session expired")]
    assert len(server.sessions) == 0


def test_close_notify_ends_the_session_on_both_sides():
    net = Network()
    device, server = net.handshake()
    net.device_output(device.close(net.now))
    net.pump()
    [closed] = [e for e in net.events_of("server", Closed)]
    assert closed.by_peer and "close_notify" in closed.reason
    assert len(net.server.sessions) == 0
    with pytest.raises(Exception, match="closed"):
        device.send(b"x", net.now)


@pytest.mark.skipif(
    not backend.ecdsa_deterministic_supported(), reason="OpenSSL without RFC 6979 signatures"
)
def test_fixed_randomness_reproduces_the_handshake_byte_for_byte():
    logs = []
    for _ in range(2):
        net = Network(seed="fixed")
        net.handshake()
        logs.append(net.log)
    assert logs[0] == logs[1]
