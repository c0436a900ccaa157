# -*- test-case-name: tests.test_cli_webhooks -*-
"""``python -m twisted_spark webhooks list``: every user's webhooks, for operators.

It reads the server's database (``--database``, as the server's; safe while
the server runs).  Failure
counts and sleep state live only in the running server (API.md §6: they do
not persist), which exposes them as the ``spark_webhook_deliveries_total``
counter of ``/metrics``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.python import usage

from twisted_spark.cli_base import DataDirOptions, with_store
from twisted_spark.models import iso8601


class WebhooksOptions(usage.Options):
    synopsis = "list"
    subCommands = [["list", None, DataDirOptions, "List every user's webhooks."]]

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("webhooks needs a subcommand: list")


async def webhooks_list(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    hooks = await with_store(reactor, data_dir, lambda store: store.list_webhooks(),
                             database=options.get("database", "sqlite:"))
    if not hooks:
        print("No webhooks. Users create them with POST /v1/webhooks "
              "('particle webhook create <event> <url>').", file=out)
        return
    print(f"{'id':24}  {'owner':16}  {'method':6}  {'event':20}  {'device':24}  "
          f"{'created':24}  url", file=out)
    for hook in hooks:
        print(f"{hook.hook_id:24}  {hook.owner:16}  {hook.request_type:6}  {hook.event:20}  "
              f"{hook.device_id or '-':24}  {iso8601(hook.created_at):24}  {hook.url}", file=out)


WEBHOOKS_COMMANDS = {"list": webhooks_list}
