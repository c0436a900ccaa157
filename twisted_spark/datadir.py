# -*- test-case-name: tests.test_datadir -*-
"""The data directory: created private, holding the database and server keys.

Everything here is plain blocking file I/O, meant to run once at startup (in
a thread when the reactor is running) or from the command line.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from twisted.logger import Logger

from twisted_spark.crypto import keys

log = Logger()

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644


@dataclass(frozen=True)
class ServerKeyPaths:
    """Where the server key pair lives inside a data directory."""

    private_pem: Path
    public_pem: Path
    public_der: Path

    @classmethod
    def in_dir(cls, data_dir: Path) -> ServerKeyPaths:
        return cls(
            data_dir / "server_key.pem",
            data_dir / "server_key.pub.pem",
            data_dir / "server_key.pub.der",
        )


def prepare_data_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and return it absolute.

    An existing directory readable by others is tightened to 0700, with a
    warning, because it holds the server's private key and every token.
    """
    path = Path(path).absolute()
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode != PRIVATE_DIR_MODE:
        log.warn(
            "Data directory {path} had mode {mode:o}; setting it to 0700 because it "
            "holds the server private key and access tokens.",
            path=str(path),
            mode=mode,
        )
        path.chmod(PRIVATE_DIR_MODE)
    return path


def write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename.

    The file is created with ``mode`` from the start, so a private key is
    never readable by others, not even for a moment.
    """
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_or_create_server_key(data_dir: Path):
    """Return the server's RSA-2048 private key, generating it on first start.

    An existing ``server_key.pem`` is never overwritten; missing public key
    files are (re)derived from it, so ``particle keys server`` always has a
    DER file to load.
    """
    paths = ServerKeyPaths.in_dir(Path(data_dir))
    if paths.private_pem.exists():
        key = keys.load_server_private_key(paths.private_pem.read_bytes())
        created = False
    else:
        key = keys.generate_server_key()
        created = True
    files = keys.server_key_files(key)
    if created:
        write_file_atomically(paths.private_pem, files["server_key.pem"], PRIVATE_FILE_MODE)
        log.info("Generated a new server key pair in {dir}", dir=str(paths.private_pem.parent))
    for path, name in ((paths.public_pem, "server_key.pub.pem"),
                       (paths.public_der, "server_key.pub.der")):
        if created or not path.exists():
            write_file_atomically(path, files[name], PUBLIC_FILE_MODE)
    return key


@dataclass(frozen=True)
class EcServerKeyPaths:
    """Where the server's EC P-256 key pair (for Gen3 devices over UDP) lives."""

    private_pem: Path
    public_pem: Path
    public_der: Path
    #: The 320-byte block ``particle keys server`` flashes (key and address).
    udp_block: Path

    @classmethod
    def in_dir(cls, data_dir: Path) -> EcServerKeyPaths:
        return cls(
            data_dir / "server_key_ec.pem",
            data_dir / "server_key_ec.pub.pem",
            data_dir / "server_key_ec.pub.der",
            data_dir / "server_key_udp.der",
        )


def load_or_create_server_ec_key(data_dir: Path):
    """Return the server's EC P-256 private key, generating it the first time.

    Like :func:`load_or_create_server_key`: ``server_key_ec.pem`` (0600) is
    never overwritten, and missing public files are derived from it.
    """
    from twisted_spark.crypto import ec_keys

    paths = EcServerKeyPaths.in_dir(Path(data_dir))
    if paths.private_pem.exists():
        key = ec_keys.load_server_ec_private_key(paths.private_pem.read_bytes())
        created = False
    else:
        key = ec_keys.generate_server_ec_key()
        created = True
    files = ec_keys.server_ec_key_files(key)
    if created and not write_new_file(paths.private_pem, files["server_key_ec.pem"],
                                      PRIVATE_FILE_MODE):
        return load_or_create_server_ec_key(data_dir)  # another process made one first
    if created:
        log.info("Generated a new EC server key pair (for Gen3 devices) in {dir}",
                 dir=str(paths.private_pem.parent))
    for path, name in ((paths.public_pem, "server_key_ec.pub.pem"),
                       (paths.public_der, "server_key_ec.pub.der")):
        if created or not path.exists():
            write_file_atomically(path, files[name], PUBLIC_FILE_MODE)
    return key


def write_new_file(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` holding ``data`` unless it exists; False (and nothing written) if it does.

    The data is written and fsynced under a temporary name first, then
    hard-linked into place: the link fails if ``path`` exists, so a key
    made at the same moment by another process (the server and ``keys
    server``) is never replaced, and ``path`` never holds half a key.
    """
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


#: The file a running server holds a shared lock on, inside its data directory.
LOCK_FILE = ".server.lock"


class DataDirBusy(Exception):
    """Another process holds the data directory's lock (a server, or a restore)."""


def hold_data_dir(data_dir: Path, exclusive: bool = False):
    """Lock ``data_dir`` for as long as the returned open file stays open.

    A server takes a shared lock (several servers may share a directory);
    ``restore`` takes an exclusive one, so it cannot run while a server
    does, and no server starts in the middle of a restore.  The lock goes
    with the process (``flock``), so a killed server leaves none behind.

    :raises DataDirBusy: the lock is held the other way.
    """
    import fcntl

    path = Path(data_dir) / LOCK_FILE
    handle = open(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE), "r+b")
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError as error:
        handle.close()
        raise DataDirBusy(str(path)) from error
    except BaseException:
        handle.close()
        raise
    return handle
