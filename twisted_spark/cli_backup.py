# -*- test-case-name: tests.test_backup -*-
"""``backup`` and ``restore``: the data directory to one archive and back.

``backup`` runs beside a running server (SQLite's online backup API takes a
consistent snapshot); ``restore`` refuses while a server holds the data
directory (:func:`twisted_spark.datadir.hold_data_dir`).  The work itself is
in :mod:`twisted_spark.backup`, run in a thread.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted_spark.backup import BackupError, make_backup, restore_backup
from twisted_spark.cli_base import CommandError, DataDirOptions, in_thread
from twisted_spark.datadir import DataDirBusy, hold_data_dir, prepare_data_dir

PG_DUMP_ADVICE = (
    "the database is PostgreSQL ({url}); back it up with pg_dump, e.g. "
    "'pg_dump --format=custom --file spark.dump {url}' (restore with pg_restore), "
    "and copy the server key files (server_key*.pem, server_key*.der) from {data_dir} "
    "beside it; 'backup' copies SQLite databases only")


class BackupOptions(DataDirOptions):
    synopsis = "<destination directory or file.tar.gz> [--data-dir DIR]"
    longdesc = ("Copy the SQLite database (consistently, while the server runs) and the "
                "server keys into a dated tar.gz archive (mode 0600).  With "
                "--database postgresql://... it says how to use pg_dump instead.")

    def parseArgs(self, destination):
        self["destination"] = destination


class RestoreOptions(DataDirOptions):
    synopsis = "<archive.tar.gz> [--data-dir DIR] [--force]"
    longdesc = ("Put a backup's database and keys into a data directory; the server "
                "using it must be stopped.")
    optFlags = [["force", None, "Replace the database and keys of a data directory "
                                "that is not empty."]]

    def parseArgs(self, archive):
        self["archive"] = archive


async def backup(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    """Write the archive; print its path, its files and its size."""
    from twisted_spark.store.url import POSTGRESQL, parse_database_url

    database = parse_database_url(options["database"])  # checked when parsed
    if database.kind == POSTGRESQL:
        raise CommandError(PG_DUMP_ADVICE.format(url=database.redacted, data_dir=data_dir))
    try:
        result = await in_thread(reactor, make_backup, data_dir, Path(options["destination"]))
    except BackupError as error:
        raise CommandError(str(error)) from error
    print(f"Backed up {', '.join(result.files)} to {result.path} ({result.size} bytes)",
          file=out)


def _restore_locked(archive: Path, data_dir: Path, force: bool) -> list[str]:
    if not archive.is_file():
        raise BackupError(f"no backup archive at {archive}")
    prepare_data_dir(data_dir)
    try:
        lock = hold_data_dir(data_dir, exclusive=True)
    except DataDirBusy as error:
        raise BackupError(
            f"a twisted-spark server is running with data directory {data_dir} (it holds "
            f"{error}); stop it first, then restore") from error
    with lock:
        return restore_backup(archive, data_dir, force=force)


async def restore(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    """Restore the archive into ``data_dir``; print what was restored."""
    from twisted_spark.store.url import POSTGRESQL, parse_database_url

    if parse_database_url(options["database"]).kind == POSTGRESQL:
        raise CommandError("the database is PostgreSQL: restore it with pg_restore (see "
                           "'backup'); 'restore' puts back SQLite backups and their keys")
    archive = Path(options["archive"])
    try:
        restored = await in_thread(reactor, _restore_locked, archive, data_dir,
                                   bool(options["force"]))
    except BackupError as error:
        raise CommandError(str(error)) from error
    print(f"Restored {', '.join(restored)} from {archive} into {data_dir}; start the "
          "server to use them", file=out)


BACKUP_COMMANDS = {"backup": backup, "restore": restore}
