"""``simulate --platform gen3``: EC keys, registration commands, a fleet over loopback UDP."""

from __future__ import annotations

import pytest
import pytest_twisted
from gen3_loopback import SERVER_EC, Gen3Cloud
from loopback import until
from twisted.internet import reactor

from twisted_spark.crypto.ec_keys import ec_public_key_der, server_ec_key_files
from twisted_spark.models import DeviceRecord
from twisted_spark.sim import cli
from twisted_spark.sim.gen3_fleet import Gen3Fleet, ensure_ec_key, load_server_ec_public_key

pytestmark = pytest.mark.usefixtures("clean_reactor")


def test_register_only_makes_ec_keys_and_prints_the_keys_add_commands(tmp_path, capsys):
    cli.main(["--platform", "gen3", "--key-dir", str(tmp_path), "--count", "2",
              "--register-only", "--device-id-prefix", "e0"])
    out = capsys.readouterr().out
    device_id = "e0" + "0" * 22
    assert f"keys add {device_id} {tmp_path}/{device_id}.ec.pub.pem" in out
    key, created = ensure_ec_key(tmp_path, device_id)
    assert not created and key.curve.name == "secp256r1"


def test_gen3_defaults_point_at_the_udp_port_and_the_ec_key():
    options = cli.SimulateOptions()
    options.parseOptions(["--platform", "gen3"])
    assert (options["port"], options["server-key"]) == (5684, "spark-data/server_key_ec.pub.pem")


def test_the_server_ec_key_loads_from_its_public_or_private_file():
    files = server_ec_key_files(SERVER_EC)
    loaded = {ec_public_key_der(load_server_ec_public_key(data)) for data in files.values()}
    assert loaded == {ec_public_key_der(SERVER_EC)}


@pytest_twisted.ensureDeferred
async def test_a_fleet_of_gen3_devices_comes_online(tmp_path):
    cloud = await Gen3Cloud().start(register=False)
    keys = [ensure_ec_key(tmp_path, f"e1{i:022x}")[0] for i in range(5)]
    ids = [f"e1{i:022x}" for i in range(5)]
    for device_id, key in zip(ids, keys, strict=True):
        await cloud.store.put_device(DeviceRecord(device_id, public_key=ec_public_key_der(key)))
    fleet = Gen3Fleet(reactor, list(zip(ids, keys, strict=True)), SERVER_EC.public_key(),
                      cloud.udp_address, concurrency=2)
    try:
        online = await fleet.connect_all(timeout=20)
        assert len(online) == 5 and fleet.failures == []
        await until(lambda: cloud.registry.online_ids() == set(ids), what="all online")
    finally:
        await fleet.close()
        await cloud.stop()
