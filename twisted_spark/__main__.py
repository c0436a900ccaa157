# -*- test-case-name: tests.test_cli,tests.test_twistd -*-
"""``python -m twisted_spark``: serve, manage keys and users, simulate devices."""

from __future__ import annotations

import sys

from twisted.python import usage

from twisted_spark import __version__


class MainOptions(usage.Options):
    synopsis = "python -m twisted_spark <command> [options]"
    longdesc = "Run and manage a twisted-spark server. '<command> --help' describes each command."
    optParameters = [["data-dir", "d", "spark-data",
                      "The server's data directory (for keys and users)."]]

    def __init__(self):
        super().__init__()
        from twisted_spark.cli import KeysOptions, UsersOptions
        from twisted_spark.cli_backup import BackupOptions, RestoreOptions
        from twisted_spark.cli_webhooks import WebhooksOptions
        from twisted_spark.tap import Options as ServeOptions

        self.subCommands = [
            ["serve", None, ServeOptions, "Run the server in the foreground."],
            ["keys", None, KeysOptions, "Register and list device keys; show the server key."],
            ["users", None, UsersOptions, "Create and list users."],
            ["webhooks", None, WebhooksOptions, "List every user's webhooks."],
            ["backup", None, BackupOptions,
             "Archive the database and server keys (safe while the server runs)."],
            ["restore", None, RestoreOptions,
             "Restore a backup into the data directory of a stopped server."],
            ["simulate", None, usage.Options,
             "Run virtual devices ('simulate --help' for their options)."],
        ]

    def opt_version(self):
        """Print the version and exit."""
        print(f"twisted-spark {__version__}")
        sys.exit(0)

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError(
                "a command is required: serve, keys, users, webhooks, backup, restore or "
                "simulate")


def _serve(reactor, options):
    from twisted.internet import defer
    from twisted.logger import globalLogBeginner

    from twisted_spark.logs import json_observer, text_observer
    from twisted_spark.tap import makeService

    if options["log-format"] == "json":
        observer = json_observer(sys.stdout)
    else:
        observer = text_observer(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer])
    service = makeService(options, reactor=reactor, settle_heap=True)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    return defer.Deferred()  # runs until the process is told to stop


def _report(failure):
    from twisted_spark.cli import CommandError

    failure.trap(CommandError)
    print(f"error: {failure.value}", file=sys.stderr)
    raise SystemExit(1)


def _admin(reactor, table, options):
    from twisted_spark.cli import run_command

    return run_command(reactor, table, options["data-dir"], options.subOptions).addErrback(
        _report)


def _backup(reactor, options):
    from pathlib import Path

    from twisted.internet import defer

    from twisted_spark.cli_backup import BACKUP_COMMANDS

    command = BACKUP_COMMANDS[options.subCommand]
    data_dir = Path(options.subOptions["data-dir"] or options["data-dir"])
    return defer.ensureDeferred(command(reactor, data_dir, options.subOptions)).addErrback(
        _report)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "simulate":
        from twisted_spark.sim.cli import main as simulate

        simulate(argv[1:])
        return
    options = MainOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as error:
        print(f"{options}\nerror: {error}", file=sys.stderr)
        raise SystemExit(2) from None

    from twisted.internet import task

    from twisted_spark.cli import KEYS_COMMANDS, USERS_COMMANDS

    if options.subCommand == "serve":
        task.react(_serve, [options.subOptions])
    elif options.subCommand in ("backup", "restore"):
        task.react(_backup, [options])
    elif options.subCommand == "keys":
        task.react(_admin, [KEYS_COMMANDS, options])
    elif options.subCommand == "webhooks":
        from twisted_spark.cli_webhooks import WEBHOOKS_COMMANDS

        task.react(_admin, [WEBHOOKS_COMMANDS, options])
    else:
        task.react(_admin, [USERS_COMMANDS, options])


if __name__ == "__main__":
    main()
