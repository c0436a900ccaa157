"""The simulator's fleet helpers and CLI."""

from __future__ import annotations

import pytest
import pytest_twisted
from device_fixtures import DEVICE_KEYS, KEYS
from test_e2e_devices import LoopbackServer

from twisted_spark.crypto.keys import public_key_der
from twisted_spark.models import DeviceRecord
from twisted_spark.sim import cli
from twisted_spark.sim.fleet import (
    Fleet,
    device_ids,
    ensure_key,
    load_server_public_key,
    make_factory,
)


def test_device_ids():
    assert device_ids(3, "ab") == [
        "ab" + "0" * 21 + "0",
        "ab" + "0" * 21 + "1",
        "ab" + "0" * 21 + "2",
    ]
    with pytest.raises(ValueError):
        device_ids(1, "xyz")


def test_register_only_generates_keys_and_prints_commands(tmp_path, capsys):
    cli.main(
        ["--key-dir", str(tmp_path), "--count", "1", "--register-only", "--device-id-prefix", "aa"]
    )
    out = capsys.readouterr().out
    device_id = "aa" + "0" * 22
    assert f"python -m twisted_spark keys add {device_id} {tmp_path}/{device_id}.pub.pem" in out
    assert (tmp_path / f"{device_id}.pem").exists()
    key, created = ensure_key(tmp_path, device_id)
    assert not created and key.size_in_bits() == 1024


def test_bad_options_exit_2():
    with pytest.raises(SystemExit) as e:
        cli.main(["--platform", "toaster"])
    assert e.value.code == 2


def test_server_key_loads_from_pem_der_and_private():
    pub = load_server_public_key((KEYS / "server.pub.der").read_bytes())
    assert pub == load_server_public_key((KEYS / "server.pem").read_bytes())
    assert not pub.has_private()


@pytest_twisted.ensureDeferred
async def test_fleet_mixed_platforms(reactor, tmp_path):
    (tmp_path / "shared.pem").write_bytes((KEYS / "device-1.pem").read_bytes())
    server = LoopbackServer()
    factory, port = await server.start(reactor)
    try:
        ids = device_ids(6, "cc")
        keys = [(i, ensure_key(tmp_path, i)[0]) for i in ids]
        for i in ids:
            factory.store._devices[i] = DeviceRecord(i, public_key=public_key_der(DEVICE_KEYS[0]))
        pub = load_server_public_key((KEYS / "server.pub.pem").read_bytes())
        fleet = Fleet(reactor, "127.0.0.1", port, make_factory(pub, keys, "mixed", reactor), 6)
        online = await fleet.connect_all(timeout=10)
        assert len(online) == 6 and not fleet.failures
        platforms = {factory.registry.get(i).platform_id for i in ids}
        assert platforms == {0, 6}
        fleet.disconnect_all()
    finally:
        await server.stop()


def test_a_device_key_opens_the_session_as_pycryptodome_does_and_names_bad_padding():
    from Crypto.PublicKey import RSA

    from twisted_spark.crypto.handshake import HandshakeError, build_session_blob
    from twisted_spark.crypto.keys import openssl_private_key
    from twisted_spark.sim.keys import DeviceKey

    server = RSA.import_key((KEYS / "server.pem").read_bytes())
    device_key = DeviceKey(DEVICE_KEYS[0])
    assert device_key.der == public_key_der(DEVICE_KEYS[0])
    session, blob = build_session_blob(openssl_private_key(server), DEVICE_KEYS[0].public_key())
    assert device_key.open_session_blob(server.public_key(), blob) == session
    # A ciphertext whose plaintext is no PKCS#1 type-2 block: OpenSSL's
    # implicit rejection would make it random bytes, the error still says why.
    public = DEVICE_KEYS[0].public_key()
    block = int.from_bytes(b"\x00\x01" + b"\xff" * 80 + b"\x00" + bytes(45), "big")
    bad = pow(block, public.e, public.n).to_bytes(128, "big") + blob[128:]
    with pytest.raises(HandshakeError, match="bad PKCS#1 padding"):
        device_key.open_session_blob(server.public_key(), bad)


def test_a_fleet_converts_each_key_once():
    from twisted_spark.sim.fleet import make_factory

    keys = [("aa" * 12, DEVICE_KEYS[0]), ("bb" * 12, DEVICE_KEYS[0]), ("cc" * 12, DEVICE_KEYS[1])]
    make_device = make_factory(None, keys, "photon", None)
    first, second, third = (make_device(i) for i in range(3))
    assert first._key is second._key is not third._key
    assert first.private_key is DEVICE_KEYS[0] and third.private_key is DEVICE_KEYS[1]


def test_a_virtual_device_pings_after_its_keepalive_plus_the_jitter():
    from device_fixtures import CORE_ID, Server

    from twisted_spark.config import Settings

    # The server's own pings out of the way: only the device's are seen.
    server = Server(Settings(device_ping_interval=100.0, device_idle_timeout=200.0))
    server.register(CORE_ID)
    extra = iter([0.5, 0.25, 0.75])
    device = server.device(keepalive=15.0, keepalive_jitter=lambda: next(extra))
    _, pump = server.connect(device)
    pump.flush()
    session = server.registry.get(CORE_ID)
    assert session is not None and device.online.called
    online_at = server.clock.seconds()
    heard = []

    def advance_to(seconds):
        server.clock.advance(online_at + seconds - server.clock.seconds())
        pump.flush()
        heard.append(session.last_heard - online_at)

    advance_to(15.4)  # past the keep-alive, short of its 0.5 s of jitter: silent
    advance_to(15.5)  # pinged, and the server's answer came back at once
    advance_to(30.7)  # the next wait: 15 s + 0.25 s from the ping
    advance_to(30.75)
    assert heard == [0.0, 15.5, 15.5, 30.75]
