# -*- test-case-name: tests.test_backup -*-
"""Backups of a data directory: one dated ``tar.gz`` holding the database and the keys.

:func:`make_backup` copies the SQLite database with SQLite's online backup
API (a consistent snapshot, taken while the server keeps writing: the copy
holds every transaction committed before it started and nothing half done),
checks the copy (``PRAGMA integrity_check``), and archives it with the
server key files and a ``MANIFEST.json`` (file names, sizes, SHA-256).  The
archive is written under a temporary name with mode 0600, fsynced and then
renamed, so a half-written backup never carries the final name.

:func:`restore_backup` checks an archive (only the names a backup holds,
regular files, checksums, database integrity) before it touches the data
directory, then puts the files in place, removing the old database's
``-wal``/``-shm`` files, which belong to the database being replaced.

Everything here is blocking file I/O, for the command line
(:mod:`twisted_spark.cli_backup`) or a thread.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from twisted_spark.datadir import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, prepare_data_dir

DATABASE = "spark.sqlite"
MANIFEST = "MANIFEST.json"
#: Key files a backup carries when the data directory has them: name -> mode.
KEY_FILES = {
    "server_key.pem": PRIVATE_FILE_MODE,
    "server_key.pub.pem": PUBLIC_FILE_MODE,
    "server_key.pub.der": PUBLIC_FILE_MODE,
    "server_key_ec.pem": PRIVATE_FILE_MODE,
    "server_key_ec.pub.pem": PUBLIC_FILE_MODE,
    "server_key_ec.pub.der": PUBLIC_FILE_MODE,
    "server_key_udp.der": PUBLIC_FILE_MODE,
}
#: Every file a backup may hold, with the mode it is restored with.
ARCHIVED = {DATABASE: PRIVATE_FILE_MODE, **KEY_FILES}
#: Files of the live database that a restore removes with it.
DATABASE_COMPANIONS = (DATABASE + "-wal", DATABASE + "-shm", DATABASE + "-journal")
FORMAT = 1


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class BackupResult:
    """What :func:`make_backup` wrote: the archive and the files in it."""

    path: Path
    files: tuple[str, ...]
    size: int


def archive_name(now: float) -> str:
    """``twisted-spark-backup-YYYYMMDDTHHMMSSZ.tar.gz`` for the UTC time ``now``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"twisted-spark-backup-{stamp}.tar.gz"


def _destination(dest: Path, now: float) -> Path:
    """The archive path: ``dest`` itself if it names a ``.tar.gz``, else a dated name in it."""
    if dest.name.endswith(".tar.gz") and not dest.is_dir():
        if dest.exists():
            raise BackupError(f"{dest} exists; name a new file or a directory to write into")
        if not dest.parent.is_dir():
            raise BackupError(f"directory {dest.parent} does not exist; create it first")
        return dest
    if not dest.is_dir():
        raise BackupError(
            f"{dest} is not a directory; create it, or name the archive (ending in .tar.gz)")
    path = dest / archive_name(now)
    if path.exists():
        raise BackupError(f"{path} exists already; wait a second and run the backup again")
    return path


def copy_database(source: Path, target: Path) -> None:
    """Copy the SQLite database ``source`` to ``target`` with the online backup API.

    One step (``pages=-1``): the copy is the database as of one instant,
    whatever other connections write meanwhile.  The copy is a single file
    (journal mode DELETE) and must pass ``PRAGMA integrity_check``.
    """
    # The backup only reads; a URI in read-only mode would still need the
    # -shm file writable, so the source is opened normally and never written.
    origin = sqlite3.connect(os.fspath(source), timeout=30.0)
    try:
        copy = sqlite3.connect(os.fspath(target))
        try:
            origin.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")
            check_database(copy, target)
        finally:
            copy.close()
    finally:
        origin.close()


def check_database(connection: sqlite3.Connection, label) -> None:
    """BackupError unless ``PRAGMA integrity_check`` of ``connection`` says ``ok``."""
    try:
        [(verdict,)] = connection.execute("PRAGMA integrity_check").fetchall()
    except (sqlite3.DatabaseError, ValueError) as error:
        raise BackupError(f"{label} is not a usable SQLite database: {error}") from error
    if verdict != "ok":
        raise BackupError(f"{label} fails SQLite's integrity check: {verdict}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_backup(data_dir: Path, dest: Path, now: float | None = None) -> BackupResult:
    """Archive ``data_dir``'s database and key files into ``dest``; the :class:`BackupResult`.

    :param dest: a directory (the archive gets a dated name in it) or a new
        file name ending in ``.tar.gz``.
    :param now: the time the name and manifest carry (default: now).
    :raises BackupError: no database in ``data_dir``, or ``dest`` unusable.
    """
    now = time.time() if now is None else now
    data_dir, dest = Path(data_dir), Path(dest)
    database = data_dir / DATABASE
    if not database.is_file():
        raise BackupError(f"no database at {database}; is --data-dir the server's data directory?")
    path = _destination(dest, now)
    with tempfile.TemporaryDirectory(prefix="spark-backup-") as scratch:
        copied = Path(scratch) / DATABASE
        copy_database(database, copied)
        sources = {DATABASE: copied}
        for name in KEY_FILES:
            if (data_dir / name).is_file():
                sources[name] = data_dir / name
        manifest = {
            "format": FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "data_dir": str(data_dir.absolute()),
            "files": {name: {"size": source.stat().st_size, "sha256": _sha256(source)}
                      for name, source in sources.items()},
        }
        _write_archive(path, sources, manifest, now)
    return BackupResult(path, tuple(sources), path.stat().st_size)


def _write_archive(path: Path, sources: dict, manifest: dict, now: float) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w:gz") as archive:
                data = json.dumps(manifest, indent=2, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(data), PRIVATE_FILE_MODE, int(now)
                archive.addfile(info, io.BytesIO(data))
                for name, source in sources.items():
                    info = archive.gettarinfo(os.fspath(source), arcname=name)
                    info.mode, info.uid, info.gid, info.uname, info.gname = (
                        ARCHIVED[name], 0, 0, "", "")
                    with open(source, "rb") as content:
                        archive.addfile(info, content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, PRIVATE_FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_archive(archive: Path, scratch: Path) -> list[str]:
    """Extract and check ``archive`` into ``scratch``; the names of the files it restores."""
    try:
        tar = tarfile.open(archive, mode="r:gz")
    except (OSError, tarfile.TarError) as error:
        raise BackupError(f"cannot read {archive}: {error}") from error
    with tar:
        try:
            members = tar.getmembers()
        except (OSError, tarfile.TarError, EOFError) as error:
            raise BackupError(f"{archive} is damaged: {error}") from error
        names = [member.name for member in members]
        unknown = [name for name in names if name not in ARCHIVED and name != MANIFEST]
        if unknown or MANIFEST not in names or DATABASE not in names:
            raise BackupError(
                f"{archive} is not a twisted-spark backup (it should hold {MANIFEST} and "
                f"{DATABASE}; unexpected: {', '.join(unknown) or 'none'})")
        if any(not member.isfile() for member in members) or len(set(names)) != len(names):
            raise BackupError(f"{archive} holds links or duplicate names; refusing to restore it")
        for member in members:  # plain names only (checked above): written by hand
            source = tar.extractfile(member)
            if source is None:  # not a regular file: excluded above
                raise BackupError(f"{archive} holds {member.name} as something other than a file")
            descriptor = os.open(scratch / member.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 PRIVATE_FILE_MODE)
            with os.fdopen(descriptor, "wb") as target, source:
                shutil.copyfileobj(source, target, 1 << 20)
    manifest = json.loads((scratch / MANIFEST).read_text())
    expected = manifest.get("files", {})
    restored = [name for name in names if name != MANIFEST]
    for name in restored:
        entry = expected.get(name)
        if entry is None or _sha256(scratch / name) != entry.get("sha256"):
            raise BackupError(f"{name} in {archive} does not match its checksum; the archive "
                              "is damaged, use another backup")
    connection = sqlite3.connect(os.fspath(scratch / DATABASE))
    try:
        check_database(connection, f"{DATABASE} in {archive}")
    finally:
        connection.close()
    return restored


def restore_backup(archive: Path, data_dir: Path, force: bool = False) -> list[str]:
    """Put the files of ``archive`` into ``data_dir``; the names restored.

    The caller makes sure no server uses ``data_dir`` (see
    :func:`twisted_spark.datadir.hold_data_dir`).

    :param force: replace the files of a data directory that is not empty.
    :raises BackupError: the archive is not a sound backup, or ``data_dir``
        holds files and ``force`` is false.  Nothing is changed then.
    """
    archive, data_dir = Path(archive), Path(data_dir)
    if not archive.is_file():
        raise BackupError(f"no backup archive at {archive}")
    present = sorted(p.name for p in data_dir.iterdir()) if data_dir.is_dir() else []
    present = [name for name in present if not name.startswith(".")]
    if present and not force:
        raise BackupError(
            f"data directory {data_dir} is not empty ({', '.join(present[:5])}"
            f"{', ...' if len(present) > 5 else ''}); restore into an empty directory, "
            "or add --force to replace its database and keys with the backup's")
    data_dir = prepare_data_dir(data_dir)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=data_dir) as scratch:
        restored = _read_archive(archive, Path(scratch))
        # The old database's log belongs to it, and keys the backup lacks
        # would not match the restored database.
        for name in DATABASE_COMPANIONS + tuple(set(ARCHIVED) - set(restored)):
            (data_dir / name).unlink(missing_ok=True)
        for name in restored:
            source = Path(scratch) / name
            os.chmod(source, ARCHIVED[name])
            os.replace(source, data_dir / name)
    _fsync_directory(data_dir)
    return restored


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
