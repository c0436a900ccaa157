"""Sessions that outlive their handshake: type-253 resumption, moves, persistence, leases."""

import json

import pytest
from dtls_harness import DEVICE_ADDRESS, SERVER_ADDRESS, FixedRandom, Network, key

from twisted_spark.dtls import (
    AddressChanged,
    ApplicationData,
    DtlsServer,
    ServerConfig,
    SessionCheckpoint,
    SessionState,
    resume,
)
from twisted_spark.dtls.connection import LEASE
from twisted_spark.dtls.record import split_records

NEW_ADDRESS = ("100.64.9.9", 61000)


def saved_device_session(net, device):
    """What the device writes to flash before sleeping, through JSON."""
    return SessionState.from_dict(json.loads(json.dumps(device.snapshot().to_dict())))


def test_device_resumes_with_type_253_from_a_new_address():
    net = Network()
    device, server = net.handshake()
    net.device_output(device.send(b"before sleep", net.now))
    net.pump()
    saved = saved_device_session(net, device)

    net.now = 3600.0
    net.device = woken = resume(saved)
    net.device_address = NEW_ADDRESS
    net.device_output(woken.send(b"ping", net.now))
    [datagram] = net.to_server
    assert datagram[0] == 253
    net.server_events.clear()
    net.pump()
    events = [event for _, event in net.server_events]
    assert AddressChanged(DEVICE_ADDRESS, NEW_ADDRESS, moved=True) in events
    assert ApplicationData(b"ping") in events
    assert any(
        isinstance(e, SessionCheckpoint) and e.session.peer_address == NEW_ADDRESS for e in events
    )
    assert server.address == NEW_ADDRESS and server.last_seen == 3600.0

    net.server_output(server.send(b"pong", net.now))  # goes to the new address
    net.pump()
    assert net.events_of("device", ApplicationData)[-1] == ApplicationData(b"pong")
    net.device_output(woken.send(b"awake", net.now))
    assert net.to_server[0][0] == 25  # answered: no longer "moved"


def test_type_253_resume_after_a_server_restart_from_the_persisted_record():
    net = Network()
    device, server = net.handshake()
    [complete] = [e for _, e in net.server_events if hasattr(e, "connection")]
    stored = json.dumps(complete.session.to_dict())  # the store persisted this
    for index in range(5):  # the server sent more than the stored record knows of
        net.server_output(server.send(b"event %d" % index, net.now))
    net.pump()
    used = server.snapshot().write_sequence
    saved = saved_device_session(net, device)

    restarted = DtlsServer(ServerConfig(net.server_key, rng=FixedRandom("after restart")))
    restored = restarted.restore(SessionState.from_dict(json.loads(stored)), 10.0)
    [checkpoint] = restored.event_list()
    persisted = SessionState.from_dict(json.loads(stored))
    assert checkpoint.session.write_sequence == persisted.write_reserved > used
    assert checkpoint.session.write_reserved == persisted.write_reserved + LEASE

    net.server = restarted
    net.device = woken = resume(saved)
    net.device_address = NEW_ADDRESS
    net.device_output(woken.send(b"hello again", net.now))
    net.pump()
    assert net.events_of("server", ApplicationData)[-1] == ApplicationData(b"hello again")
    connection = restarted.sessions.get(saved.cid)
    net.server_output(connection.send(b"welcome back", net.now))
    [reply] = net.to_device
    record = split_records(reply, None)[0][0]
    assert record.sequence == persisted.write_reserved  # never a sequence number used before
    net.pump()
    assert net.events_of("device", ApplicationData)[-1] == ApplicationData(b"welcome back")


def test_sequence_lease_is_renewed_half_way():
    net = Network()
    device, server = net.handshake()
    reserved = server.snapshot().write_reserved
    checkpoints = []
    for _ in range(LEASE):
        out = server.send(b"x", net.now)
        checkpoints += [e.session for e in out.event_list() if isinstance(e, SessionCheckpoint)]
        sequence = split_records(out.datagrams[0][1], None)[0][0].sequence
        assert sequence < reserved or checkpoints  # never past a bound not yet announced
        reserved = max([reserved] + [c.write_reserved for c in checkpoints])
    assert len(checkpoints) == 2
    assert all(c.write_reserved - c.write_sequence >= LEASE // 2 for c in checkpoints)


def test_nat_rebinding_moves_on_the_newest_record_only():
    net = Network()
    device, server = net.handshake()
    [(_, older)] = device.send(b"older", net.now).datagrams
    [(_, newer)] = device.send(b"newer", net.now).datagrams
    out = net.server.datagram_received(newer, NEW_ADDRESS, 1.0)
    assert AddressChanged(DEVICE_ADDRESS, NEW_ADDRESS, moved=False) in out.event_list()
    stale = net.server.datagram_received(older, ("192.0.2.50", 9), 1.0)
    assert stale.event_list() == [ApplicationData(b"older")]  # delivered, but no move
    assert server.address == NEW_ADDRESS


def test_unknown_or_forged_resumption_does_not_move_anything():
    net = Network()
    device, server = net.handshake()
    saved = saved_device_session(net, device)
    forged = resume(SessionState.from_dict({**saved.to_dict(), "master_secret": "00" * 48}))
    [(_, datagram)] = forged.send(b"let me in", net.now).datagrams
    [dropped] = net.server.datagram_received(datagram, NEW_ADDRESS, 1.0).event_list()
    assert "bad record MAC" in dropped.reason and server.address == DEVICE_ADDRESS


def test_session_state_round_trips_and_rejects_bad_records():
    net = Network()
    _, server = net.handshake()
    state = server.snapshot()
    data = json.loads(json.dumps(state.to_dict()))
    assert SessionState.from_dict(data) == state
    for change, message in [
        ({"cid": "00"}, "cid has 1 bytes"),
        ({"role": "both"}, "role"),
        ({"epoch": 2}, "epoch"),
        ({"write_sequence": -1}, "write_sequence"),
        ({"read_bitmap": 2**64}, "read_bitmap"),
        ({"surprise": 1}, "unknown session fields"),
        ({"master_secret": "zz"}, "non-hexadecimal"),
        ({"peer_address": "server"}, "not \\[host, port\\]"),
        ({"peer_address": ["h", "1"]}, "not \\[host, port\\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            SessionState.from_dict({**data, **change})
    incomplete = dict(data)
    del incomplete["server_random"]
    with pytest.raises(ValueError, match="server_random"):
        SessionState.from_dict(incomplete)


def test_restore_refuses_device_sessions():
    net = Network()
    device, _ = net.handshake()
    server = DtlsServer(ServerConfig(key("server"), rng=FixedRandom("x")))
    with pytest.raises(ValueError, match="server-side"):
        server.restore(device.snapshot(), 0.0)
    with pytest.raises(ValueError, match="device-side"):
        resume(net.server.sessions.get(device.cid).snapshot())
    assert SERVER_ADDRESS  # the device side keeps the server's address in its session
    assert device.snapshot().peer_address == SERVER_ADDRESS
