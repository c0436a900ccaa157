"""Backups: archive contents and modes, restore refusals, and a round trip under write load."""

import io
import json
import os
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest
import pytest_twisted
import treq
from loopback import until
from server_process import Server, run
from twisted.internet import defer

from twisted_spark import backup, cli_backup
from twisted_spark.cli_base import CommandError
from twisted_spark.datadir import hold_data_dir
from twisted_spark.models import AccessToken, User
from twisted_spark.store.sqlite import SQLiteStore


def _token(n, username="alice"):
    return AccessToken(f"{n:040x}", username, "particle", 1000.0 + n, None)


async def _populate(reactor, data_dir, tokens=3):
    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    try:
        await store.add_user(User("alice", "pbkdf2$x", is_admin=True, created_at=1.0))
        for n in range(tokens):
            await store.add_token(_token(n))
    finally:
        await store.close()


def _token_values(database: Path) -> set[str]:
    connection = sqlite3.connect(database)
    try:
        return {row[0] for row in connection.execute("SELECT token FROM access_tokens")}
    finally:
        connection.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest_twisted.ensureDeferred
async def test_backup_holds_database_keys_and_manifest_and_is_private(reactor, data_dir, tmp_path):
    await _populate(reactor, data_dir)
    (data_dir / "server_key_ec.pem").write_bytes(b"ec key")
    out = tmp_path / "backups"
    out.mkdir()
    result = backup.make_backup(data_dir, out, now=1764500000.0)
    assert result.path == out / "twisted-spark-backup-20251130T105320Z.tar.gz"
    assert _mode(result.path) == 0o600
    with tarfile.open(result.path) as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("MANIFEST.json"))
        modes = {member.name: member.mode for member in archive.getmembers()}
    assert sorted(names) == ["MANIFEST.json", "server_key.pem", "server_key_ec.pem",
                             "spark.sqlite"]
    assert modes["server_key.pem"] == 0o600
    assert manifest["created"] == "2025-11-30T10:53:20Z"
    assert set(manifest["files"]) == {"server_key.pem", "server_key_ec.pem", "spark.sqlite"}
    assert [p.name for p in out.iterdir()] == [result.path.name]  # no temporary left


@pytest_twisted.ensureDeferred
async def test_restore_round_trip_into_an_empty_directory(reactor, data_dir, tmp_path):
    await _populate(reactor, data_dir, tokens=5)
    archive = backup.make_backup(data_dir, tmp_path / "b.tar.gz").path
    target = tmp_path / "restored"
    restored = await _restore(reactor, archive, target)
    assert "Restored spark.sqlite, server_key.pem" in restored
    assert _token_values(target / "spark.sqlite") == {_token(n).token for n in range(5)}
    assert (target / "server_key.pem").read_bytes() == (data_dir / "server_key.pem").read_bytes()
    assert _mode(target / "server_key.pem") == 0o600
    assert _mode(target) == 0o700
    store = await SQLiteStore.open(target / "spark.sqlite", reactor=reactor)  # migrations agree
    try:
        assert (await store.get_user("alice")).is_admin
    finally:
        await store.close()


async def _restore(reactor, archive, target, *flags):
    options = cli_backup.RestoreOptions()
    options.parseOptions([str(archive), *flags])
    out = io.StringIO()
    await cli_backup.restore(reactor, Path(target), options, out=out)
    return out.getvalue()


@pytest_twisted.ensureDeferred
async def test_restore_refuses_a_directory_in_use_unless_forced(reactor, data_dir, tmp_path):
    await _populate(reactor, data_dir, tokens=2)
    archive = backup.make_backup(data_dir, tmp_path / "b.tar.gz").path
    await _populate_more(reactor, data_dir)
    with pytest.raises(CommandError, match=r"is not empty \(.*spark.sqlite.*add --force"):
        await _restore(reactor, archive, data_dir)
    assert len(_token_values(data_dir / "spark.sqlite")) == 3  # untouched

    lock = hold_data_dir(data_dir)  # what a running server holds
    try:
        with pytest.raises(CommandError, match="a twisted-spark server is running .* stop it"):
            await _restore(reactor, archive, data_dir, "--force")
    finally:
        lock.close()
    (data_dir / "spark.sqlite-wal").write_bytes(b"stale log of the replaced database")
    await _restore(reactor, archive, data_dir, "--force")
    assert len(_token_values(data_dir / "spark.sqlite")) == 2
    assert not (data_dir / "spark.sqlite-wal").exists()


async def _populate_more(reactor, data_dir):
    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    try:
        await store.add_token(_token(99))
    finally:
        await store.close()


def _tampered(source: Path, target: Path, name: str, data: bytes) -> Path:
    with tarfile.open(source) as original, tarfile.open(target, "w:gz") as copy:
        for member in original.getmembers():
            content = original.extractfile(member).read()
            if member.name == name:
                content = data
            member.size = len(content)
            copy.addfile(member, io.BytesIO(content))
    return target


@pytest_twisted.ensureDeferred
async def test_damaged_or_foreign_archives_change_nothing(reactor, data_dir, tmp_path):
    await _populate(reactor, data_dir)
    archive = backup.make_backup(data_dir, tmp_path / "b.tar.gz").path
    damaged = _tampered(archive, tmp_path / "d.tar.gz", "server_key.pem", b"not the key")
    target = tmp_path / "target"
    with pytest.raises(CommandError, match="server_key.pem .* does not match its checksum"):
        await _restore(reactor, damaged, target)
    assert [p.name for p in target.iterdir()] == [".server.lock"]

    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        info = tarfile.TarInfo("../etc/passwd")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(CommandError, match=r"not a twisted-spark backup .*\.\./etc/passwd"):
        await _restore(reactor, foreign, target)
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    with pytest.raises(CommandError, match="cannot read"):
        await _restore(reactor, tmp_path / "junk.tar.gz", target)


@pytest_twisted.ensureDeferred
async def test_backup_command_errors_say_what_to_do(reactor, data_dir, tmp_path):
    async def command(*argv, data=data_dir):
        options = cli_backup.BackupOptions()
        options.parseOptions(list(argv))
        await cli_backup.backup(reactor, data, options, out=io.StringIO())

    with pytest.raises(CommandError, match="back it up with pg_dump"):
        await command(str(tmp_path), "--database", "postgresql://spark:secret@db/spark")
    try:
        await command(str(tmp_path), "--database", "postgresql://spark:secret@db/spark")
    except CommandError as error:
        assert "secret" not in str(error)
    with pytest.raises(CommandError, match="restore it with pg_restore"):
        await _restore(reactor, tmp_path / "any.tar.gz", data_dir, "--database",
                       "postgresql://spark@db/spark")
    with pytest.raises(CommandError, match="no database at .*--data-dir"):
        await command(str(tmp_path), data=tmp_path / "nowhere")
    await _populate(reactor, data_dir)
    with pytest.raises(CommandError, match="is not a directory; create it"):
        await command(str(tmp_path / "missing"))
    (tmp_path / "x.tar.gz").write_bytes(b"")
    with pytest.raises(CommandError, match="exists; name a new file"):
        await command(str(tmp_path / "x.tar.gz"))


@pytest_twisted.ensureDeferred
async def test_backup_under_write_load_restores_every_acknowledged_write(
        reactor, data_dir, tmp_path, monkeypatch):
    """A real server issues tokens as fast as clients ask while ``backup`` runs in
    another process; the restored database holds every token acknowledged before
    the backup began, and is sound."""
    from twisted_spark import passwords

    monkeypatch.setattr(passwords, "ITERATIONS", 1000)  # the hash carries its own count
    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    try:
        await store.add_user(User("alice", passwords.hash_password("correct horse"),
                                  is_admin=True, created_at=1.0))
    finally:
        await store.close()
    server = await Server(reactor, data_dir).start()
    acknowledged: list[str] = []
    running = True

    async def writer():
        while running:
            response = await treq.post(
                f"{server.url}/oauth/token", auth=("particle", "particle"),
                data={"grant_type": "password", "username": "alice",
                      "password": "correct horse"}, persistent=False)
            assert response.code == 200, await response.text()
            acknowledged.append((await response.json())["access_token"])

    writers = [defer.ensureDeferred(writer()) for _ in range(4)]
    try:
        await until(lambda: len(acknowledged) >= 40, timeout=60, what="40 tokens")
        before = set(acknowledged)
        dest = tmp_path / "backups"
        dest.mkdir()
        code, text = await run(reactor, "backup", str(dest), "--data-dir", str(data_dir))
        assert code == 0, text
        assert "Backed up spark.sqlite, server_key.pem" in text
        during = len(acknowledged) - len(before)
    finally:
        running = False
        for d in writers:
            await d
        await server.stop()
    assert during > 0, "no write landed while the backup ran: the test proves nothing"
    [archive] = dest.iterdir()
    target = tmp_path / "restored"
    code, text = await run(reactor, "restore", str(archive), "--data-dir", str(target))
    assert code == 0, text
    restored = _token_values(target / "spark.sqlite")
    assert before <= restored
    assert restored <= set(acknowledged)  # nothing invented, nothing half-written


def test_lock_is_shared_between_servers_and_exclusive_for_restore(tmp_path):
    from twisted_spark.datadir import DataDirBusy

    first, second = hold_data_dir(tmp_path), hold_data_dir(tmp_path)
    with pytest.raises(DataDirBusy):
        hold_data_dir(tmp_path, exclusive=True)
    first.close()
    second.close()
    hold_data_dir(tmp_path, exclusive=True).close()
    assert os.path.exists(tmp_path / ".server.lock")


def test_a_server_does_not_start_while_a_restore_holds_its_data_directory(data_dir):
    from twisted.internet.testing import MemoryReactorClock

    from twisted_spark.config import Settings
    from twisted_spark.executors import Executors
    from twisted_spark.service import SparkService
    from twisted_spark.store.memory import MemoryStore

    restore_lock = hold_data_dir(data_dir, exclusive=True)
    try:
        reactor = MemoryReactorClock()
        service = SparkService(Settings(data_dir=data_dir), reactor,
                               open_store=lambda *_: defer.succeed(MemoryStore()),
                               executors=Executors.synchronous())
        service.startService()
        failures = []
        service.ready.addErrback(failures.append)
        assert failures and "is being restored" in failures[0].getErrorMessage()
        assert reactor.tcpServers == []
    finally:
        restore_lock.close()
