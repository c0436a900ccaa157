"""Data directory creation, permissions and the server key files."""

import stat

from twisted_spark.crypto import keys
from twisted_spark.datadir import (
    ServerKeyPaths,
    load_or_create_server_key,
    prepare_data_dir,
    write_file_atomically,
)


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_created_private_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = prepare_data_dir("nested/spark-data")
    assert path.is_absolute()
    assert path == tmp_path / "nested" / "spark-data"
    assert mode_of(path) == 0o700


def test_existing_loose_directory_is_tightened(tmp_path):
    loose = tmp_path / "data"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    prepare_data_dir(loose)
    assert mode_of(loose) == 0o700


def test_atomic_write_uses_the_mode_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "secret"
    write_file_atomically(target, b"abc", 0o600)
    assert target.read_bytes() == b"abc"
    assert mode_of(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_server_key_files_generated_once(tmp_path):
    paths = ServerKeyPaths.in_dir(tmp_path)
    # First start: no key yet.  Generation is slow, so it is exercised once here.
    key = load_or_create_server_key(tmp_path)
    assert key.has_private() and key.size_in_bits() == 2048 and key.e == 65537
    assert mode_of(paths.private_pem) == 0o600
    der = paths.public_der.read_bytes()
    assert len(der) == 294 and der.startswith(bytes.fromhex("30820122"))
    assert keys.public_key_der(key.publickey()) == der
    assert b"BEGIN PUBLIC KEY" in paths.public_pem.read_bytes()

    # Second start: the same key, files untouched.
    before = paths.private_pem.read_bytes()
    again = load_or_create_server_key(tmp_path)
    assert again.n == key.n
    assert paths.private_pem.read_bytes() == before


def test_existing_key_is_never_overwritten_and_public_files_rederived(tmp_path, server_key_pem):
    paths = ServerKeyPaths.in_dir(tmp_path)
    paths.private_pem.write_bytes(server_key_pem)
    key = load_or_create_server_key(tmp_path)
    assert paths.private_pem.read_bytes() == server_key_pem
    assert keys.public_key_der(key.publickey()) == paths.public_der.read_bytes()
    paths.public_der.unlink()
    load_or_create_server_key(tmp_path)
    assert paths.public_der.read_bytes() == keys.public_key_der(key.publickey())
