"""The keys and users administration commands, against a real SQLite database."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from conftest import KEYS_DIR, PROJECT_ROOT

from twisted_spark import cli
from twisted_spark.crypto import keys
from twisted_spark.store.sqlite import SQLiteStore

DEVICE_ID = "53ff6f065067544816300187"


def parsed(options_class, *argv):
    options = options_class()
    options.parseOptions(list(argv))
    return options


async def run(reactor, table, data_dir, *argv):
    """Run one subcommand and return what it printed."""
    group = parsed(cli.KeysOptions if table is cli.KEYS_COMMANDS else cli.UsersOptions, *argv)
    out = io.StringIO()
    command = table[group.subCommand]
    await command(reactor, Path(data_dir), group.subOptions, out=out)
    return out.getvalue()


async def stored_devices(reactor, data_dir):
    store = await SQLiteStore.open(Path(data_dir) / "spark.sqlite", reactor=reactor)
    try:
        return await store.list_devices()
    finally:
        await store.close()


@pytest.fixture
def fast_passwords(monkeypatch):
    from twisted_spark import passwords

    monkeypatch.setattr(passwords, "ITERATIONS", 1000, raising=False)


@pytest_twisted.ensureDeferred
async def test_keys_add_and_list(reactor, data_dir):
    key_file = KEYS_DIR / "device-1.pub.pem"
    printed = await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", DEVICE_ID.upper(),
                        str(key_file))
    expected_key = keys.load_device_public_key(key_file.read_bytes())
    assert f"Registered device {DEVICE_ID}" in printed
    [record] = await stored_devices(reactor, data_dir)
    assert record.device_id == DEVICE_ID
    assert record.public_key == keys.public_key_der(expected_key)
    assert record.owner is None

    listing = await run(reactor, cli.KEYS_COMMANDS, data_dir, "list")
    assert DEVICE_ID in listing and keys.fingerprint(expected_key) in listing


@pytest_twisted.ensureDeferred
async def test_keys_add_der_file(reactor, data_dir, tmp_path):
    key = keys.load_device_public_key((KEYS_DIR / "device-2.pub.pem").read_bytes())
    der_file = tmp_path / "device.der"
    der_file.write_bytes(keys.public_key_der(key))
    await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", DEVICE_ID, str(der_file))
    [record] = await stored_devices(reactor, data_dir)
    assert record.public_key == keys.public_key_der(key)


@pytest_twisted.ensureDeferred
async def test_keys_add_refuses_a_server_sized_key(reactor, data_dir):
    with pytest.raises(cli.CommandError, match="RSA-1024"):
        await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", DEVICE_ID,
                  str(KEYS_DIR / "server.pub.pem"))
    assert await stored_devices(reactor, data_dir) == []


@pytest_twisted.ensureDeferred
async def test_keys_add_refuses_bad_id_and_unknown_owner(reactor, data_dir):
    with pytest.raises(cli.CommandError, match="24"):
        await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", "not-a-device",
                  str(KEYS_DIR / "device-1.pub.pem"))
    with pytest.raises(cli.CommandError, match="users add bob"):
        await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", DEVICE_ID,
                  str(KEYS_DIR / "device-1.pub.pem"), "--owner", "bob")
    assert await stored_devices(reactor, data_dir) == []


@pytest_twisted.ensureDeferred
async def test_keys_import_spark_server_directory(reactor, data_dir, tmp_path, fast_passwords):
    core_keys = tmp_path / "core_keys"
    core_keys.mkdir()
    second = "0123456789abcdef01234567"
    (core_keys / f"{DEVICE_ID}.pub.pem").write_bytes((KEYS_DIR / "device-1.pub.pem").read_bytes())
    (core_keys / f"{second}.pub.pem").write_bytes((KEYS_DIR / "device-2.pub.pem").read_bytes())
    (core_keys / f"{DEVICE_ID}.json").write_text(json.dumps({"name": "kitchen"}))
    (core_keys / "garbage.pub.pem").write_text("not a key")
    user_file = tmp_path / "pw"
    user_file.write_text("correct horse\n")
    await run(reactor, cli.USERS_COMMANDS, data_dir, "add", "alice", "--password-file",
              str(user_file))

    printed = await run(reactor, cli.KEYS_COMMANDS, data_dir, "import", str(core_keys),
                        "--owner", "alice")
    assert "Imported 2 device key(s)" in printed and "skipped 1" in printed
    assert "garbage.pub.pem" in printed
    records = {r.device_id: r for r in await stored_devices(reactor, data_dir)}
    assert set(records) == {DEVICE_ID, second}
    assert records[DEVICE_ID].name == "kitchen" and records[second].name is None
    assert {r.owner for r in records.values()} == {"alice"}


@pytest_twisted.ensureDeferred
async def test_keys_import_keeps_names_unique_per_owner(reactor, data_dir, tmp_path,
                                                        fast_passwords):
    """spark-server let two devices share a name; here the later one imports unnamed."""
    core_keys = tmp_path / "core_keys"
    core_keys.mkdir()
    second = "0123456789abcdef01234567"
    for device_id, n in ((DEVICE_ID, 1), (second, 2)):
        (core_keys / f"{device_id}.pub.pem").write_bytes(
            (KEYS_DIR / f"device-{n}.pub.pem").read_bytes())
        (core_keys / f"{device_id}.json").write_text(json.dumps({"name": "kitchen"}))
    user_file = tmp_path / "pw"
    user_file.write_text("correct horse\n")
    await run(reactor, cli.USERS_COMMANDS, data_dir, "add", "alice", "--password-file",
              str(user_file))
    printed = await run(reactor, cli.KEYS_COMMANDS, data_dir, "import", str(core_keys),
                        "--owner", "alice")
    assert "Imported 2 device key(s)" in printed
    assert f"{DEVICE_ID}: alice already has a device called 'kitchen'" in printed
    records = {r.device_id: r for r in await stored_devices(reactor, data_dir)}
    assert records[second].name == "kitchen" and records[DEVICE_ID].name is None
    assert {r.owner for r in records.values()} == {"alice"}
    # bob's "kitchen" cannot be given to alice by 'keys add': refused, clearly.
    bobs = tmp_path / "bobs"
    bobs.mkdir()
    third = "a" * 24
    (bobs / f"{third}.pub.pem").write_bytes((KEYS_DIR / "device-3.pub.pem").read_bytes())
    (bobs / f"{third}.json").write_text(json.dumps({"name": "kitchen"}))
    await run(reactor, cli.USERS_COMMANDS, data_dir, "add", "bob", "--password-file",
              str(user_file))
    await run(reactor, cli.KEYS_COMMANDS, data_dir, "import", str(bobs), "--owner", "bob")
    with pytest.raises(cli.CommandError, match="alice already has a device called 'kitchen'"):
        await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", third,
                  str(KEYS_DIR / "device-3.pub.pem"), "--owner", "alice")
    assert {r.device_id: r.owner for r in await stored_devices(reactor, data_dir)}[third] == "bob"


@pytest_twisted.ensureDeferred
async def test_users_add_list_and_duplicate(reactor, data_dir, tmp_path, fast_passwords):
    from twisted_spark.passwords import verify_password

    password_file = tmp_path / "pw"
    password_file.write_text("s3cret-password\n")
    first = await run(reactor, cli.USERS_COMMANDS, data_dir, "add", "Alice",
                      "--password-file", str(password_file))
    second = await run(reactor, cli.USERS_COMMANDS, data_dir, "add", "bob",
                       "--password-file", str(password_file))
    assert "alice (administrator)" in first.replace("Created user ", "")
    assert "administrator" not in second
    with pytest.raises(cli.CommandError, match="already exists"):
        await run(reactor, cli.USERS_COMMANDS, data_dir, "add", "bob",
                  "--password-file", str(password_file))
    listing = await run(reactor, cli.USERS_COMMANDS, data_dir, "list")
    assert listing.splitlines() == ["alice  (administrator)", "bob"]

    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    try:
        alice = await store.get_user("alice")
    finally:
        await store.close()
    assert verify_password("s3cret-password", alice.password_hash)
    assert not verify_password("wrong-password", alice.password_hash)


@pytest.mark.parametrize("name,why", [
    ("a:b", "':'"), ("with space", "without spaces"), ("a\u200bb", "invisible"), ("x" * 255, "254"),
])
@pytest_twisted.ensureDeferred
async def test_users_add_refuses_names_basic_auth_cannot_carry(reactor, data_dir, tmp_path,
                                                               fast_passwords, name, why):
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret-password\n")
    with pytest.raises(cli.CommandError, match=why):
        await run(reactor, cli.USERS_COMMANDS, data_dir, "add", name,
                  "--password-file", str(password_file))


def test_users_add_rejects_short_password(tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("short\n")
    options = parsed(cli.UsersAddOptions, "carol", "--password-file", str(password_file))
    with pytest.raises(cli.CommandError, match="at least 8"):
        cli._password(options)


def test_users_add_prompt_must_match():
    options = parsed(cli.UsersAddOptions, "carol")
    answers = iter(["first-password", "other-password"])
    with pytest.raises(cli.CommandError, match="do not match"):
        cli._password(options, prompt=lambda _: next(answers))


def test_command_line_error_exit_status(data_dir):
    """A mistake prints one line on stderr and exits 1; no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "twisted_spark", "keys", "add", DEVICE_ID,
         str(data_dir / "missing.pem"), "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read")
    assert "Traceback" not in result.stderr


def test_command_line_server_key(data_dir):
    result = subprocess.run(
        [sys.executable, "-m", "twisted_spark", "keys", "server", "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    key = keys.load_server_private_key((data_dir / "server_key.pem").read_bytes())
    assert keys.fingerprint(key.publickey()) in result.stdout
    assert str(data_dir / "server_key.pub.der") in result.stdout


@pytest_twisted.ensureDeferred
async def test_keys_add_refuses_a_private_key_and_says_how_to_get_the_public_one(reactor, data_dir):
    with pytest.raises(cli.CommandError, match="private key.*openssl rsa .* -pubout"):
        await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", DEVICE_ID,
                  str(KEYS_DIR / "device-1.pem"))
    assert await stored_devices(reactor, data_dir) == []


# -- Gen3 (EC P-256) keys --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_keys_add_a_gen3_private_key_read_from_the_device(reactor, data_dir, tmp_path):
    """``particle keys save`` writes the whole 192-byte key slot; only the public half is kept."""
    from cryptography.hazmat.primitives import serialization

    from twisted_spark.crypto.device_keys import der_fingerprint

    private = serialization.load_pem_private_key((KEYS_DIR / "ec-p256.pem").read_bytes(), None)
    sec1 = private.private_bytes(serialization.Encoding.DER,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    slot = tmp_path / "device.der"
    slot.write_bytes(sec1 + b"\xff" * (192 - len(sec1)))
    printed = await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", DEVICE_ID, str(slot))
    spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    assert f"Registered device {DEVICE_ID} (EC P-256 key {der_fingerprint(spki)})" in printed
    [record] = await stored_devices(reactor, data_dir)
    assert record.public_key == spki

    listing = await run(reactor, cli.KEYS_COMMANDS, data_dir, "list")
    assert f"key={der_fingerprint(spki)} (ecc)" in listing


@pytest_twisted.ensureDeferred
async def test_keys_server_udp_writes_the_block_and_keeps_the_key(reactor, data_dir):
    from twisted_spark.crypto import ec_keys, server_key_block

    printed = await run(reactor, cli.KEYS_COMMANDS, data_dir, "server", "--udp",
                        "--address", "spark.example.net:15684")
    private_pem = data_dir / "server_key_ec.pem"
    assert private_pem.stat().st_mode & 0o777 == 0o600
    key = ec_keys.load_server_ec_private_key(private_pem.read_bytes())
    public_der = (data_dir / "server_key_ec.pub.der").read_bytes()
    assert public_der == ec_keys.ec_public_key_der(key)
    block = (data_dir / "server_key_udp.der").read_bytes()
    assert server_key_block.decode_block(block) == (
        public_der, server_key_block.ServerAddress("spark.example.net", 15684))
    assert f"particle keys server {data_dir / 'server_key_udp.der'}" in printed
    assert (f"particle keys server {data_dir / 'server_key_ec.pub.der'} "
            "--host spark.example.net --port 15684") in printed

    # Run again with another address: same key, new block.
    await run(reactor, cli.KEYS_COMMANDS, data_dir, "server", "--udp", "--address", "192.0.2.1")
    assert private_pem.read_bytes() == ec_keys.server_ec_key_files(key)["server_key_ec.pem"]
    block = (data_dir / "server_key_udp.der").read_bytes()
    assert server_key_block.decode_block(block)[1] == server_key_block.ServerAddress("192.0.2.1")


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--udp"], "needs --address HOST"),
        (["--udp", "--address", "fe80::1"], "IPv6"),
        (["--udp", "--address", "host:99999"], "out of range"),
        (["--address", "10.0.0.1"], "--address goes with --udp"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_keys_server_udp_mistakes(reactor, data_dir, argv, why):
    with pytest.raises(cli.CommandError, match=why):
        await run(reactor, cli.KEYS_COMMANDS, data_dir, "server", *argv)
    assert not (data_dir / "server_key_udp.der").exists()


def test_the_ec_server_key_is_never_replaced(tmp_path):
    """Two makers racing (the server starting and ``keys server --udp``) end with one key."""
    from twisted_spark.datadir import load_or_create_server_ec_key, write_new_file

    first = load_or_create_server_ec_key(tmp_path)
    assert not write_new_file(tmp_path / "server_key_ec.pem", b"other", 0o600)
    again = load_or_create_server_ec_key(tmp_path)
    assert again.private_numbers() == first.private_numbers()
    assert list(tmp_path.glob("*.tmp")) == []


def test_command_line_udp_server_key(data_dir):
    result = subprocess.run(
        [sys.executable, "-m", "twisted_spark", "keys", "server", "--udp", "--address",
         "127.0.0.1", "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1, port 5684" in result.stdout
    assert len((data_dir / "server_key_udp.der").read_bytes()) == 320


@pytest_twisted.ensureDeferred
async def test_commands_use_the_servers_postgresql_database(reactor, data_dir, postgres_url):
    """``--database`` as the server's: keys land in PostgreSQL, nothing in the data dir."""
    key_file = KEYS_DIR / "device-1.pub.pem"
    await run(reactor, cli.KEYS_COMMANDS, data_dir, "add", DEVICE_ID, str(key_file),
              "--database", postgres_url)
    listing = await run(reactor, cli.KEYS_COMMANDS, data_dir, "list", "--database", postgres_url)
    assert DEVICE_ID in listing
    assert not (Path(data_dir) / "spark.sqlite").exists()
    # Without --database the commands use the data dir's SQLite file, as before.
    assert "No devices" in await run(reactor, cli.KEYS_COMMANDS, data_dir, "list")


def test_a_bad_or_unreachable_database_is_one_line(data_dir):
    def command(url):
        return subprocess.run(
            [sys.executable, "-m", "twisted_spark", "users", "list", "--data-dir", str(data_dir),
             "--database", url], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)

    refused = command("mysql://root@localhost/spark")
    assert refused.returncode != 0 and "unsupported database URL" in refused.stderr
    unreachable = command("postgresql://spark:s3cret@127.0.0.1:1/spark")
    assert unreachable.returncode == 1, unreachable.stderr
    assert unreachable.stderr.startswith("error: PostgreSQL at postgresql://spark:***@127.0.0.1:1")
    assert "s3cret" not in unreachable.stderr and "Traceback" not in unreachable.stderr
