# -*- test-case-name: tests.test_cli -*-
"""Administrative subcommands: ``keys`` and ``users``.

They open the same SQLite database the server uses (safe while the server
runs: SQLite in WAL mode serialises writers) and print plain text meant for
people.  Each command function takes already-parsed options and returns a
Deferred, so :mod:`twisted_spark.__main__` can run it under ``task.react``.
The shared parts are in :mod:`twisted_spark.cli_base`, the ``keys``
commands in :mod:`twisted_spark.cli_keys`; ``users`` is here.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from twisted.internet import defer
from twisted.python import usage

from twisted_spark.cli_base import CommandError, DataDirOptions, in_thread, with_store
from twisted_spark.cli_keys import KEYS_COMMANDS, KeysOptions
from twisted_spark.errors import DuplicateUser
from twisted_spark.models import User
from twisted_spark.usernames import username_problem

__all__ = [
    "KEYS_COMMANDS", "USERS_COMMANDS", "CommandError", "DataDirOptions", "KeysOptions",
    "UsersOptions", "run_command",
]


class UsersAddOptions(DataDirOptions):
    synopsis = "<username> [--admin] [--password-file FILE]"
    optFlags = [["admin", None, "Make the user an administrator (sees every device)."]]
    optParameters = [["password-file", "p", None,
                      "Read the password from the first line of FILE instead of prompting."]]

    def parseArgs(self, username):
        self["username"] = username


class UsersOptions(usage.Options):
    synopsis = "add|list ..."
    subCommands = [
        ["add", None, UsersAddOptions, "Create a user."],
        ["list", None, DataDirOptions, "List users."],
    ]

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("users needs a subcommand: add or list")


def _password(options, prompt=getpass.getpass) -> str:
    if options["password-file"]:
        try:
            text = Path(options["password-file"]).read_text()
        except OSError as error:
            raise CommandError(f"cannot read {options['password-file']}: {error.strerror}") \
                from error
        password = text.splitlines()[0] if text else ""
    else:
        password = prompt("Password: ")
        if prompt("Password (again): ") != password:
            raise CommandError("the passwords do not match")
    if len(password) < 8:
        raise CommandError("the password must be at least 8 characters")
    return password


async def users_add(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    from twisted_spark.passwords import hash_password

    username = options["username"].strip().lower()
    problem = username_problem(username)
    if problem is not None:
        raise CommandError(problem)
    password = _password(options)
    password_hash = await in_thread(reactor, hash_password, password)

    async def action(store):
        # The first user administers the server, as with POST /v1/users.
        is_admin = bool(options["admin"]) or await store.count_users() == 0
        user = User(username, password_hash, is_admin=is_admin, created_at=reactor.seconds())
        try:
            return await store.add_user(user)
        except DuplicateUser as error:
            raise CommandError(f"a user named {username!r} already exists") from error

    user = await with_store(reactor, data_dir, action,
                            database=options.get("database", "sqlite:"))
    print(f"Created user {username}" + (" (administrator)" if user.is_admin else ""), file=out)


async def users_list(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    users = await with_store(reactor, data_dir, lambda store: store.list_users(),
                             database=options.get("database", "sqlite:"))
    if not users:
        print("No users yet. Create one with 'python -m twisted_spark users add <name>'.",
              file=out)
    for user in users:
        print(f"{user.username}" + ("  (administrator)" if user.is_admin else ""), file=out)


USERS_COMMANDS = {"add": users_add, "list": users_list}


def run_command(reactor, table, data_dir, options) -> defer.Deferred:
    """Run the subcommand chosen in ``options`` from ``table``."""
    command = table[options.subCommand]
    data_dir = options.subOptions["data-dir"] or data_dir
    return defer.ensureDeferred(command(reactor, Path(data_dir), options.subOptions))
