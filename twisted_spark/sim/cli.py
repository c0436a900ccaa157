# -*- test-case-name: tests.test_sim -*-
"""``python -m twisted_spark simulate``: run virtual devices against a server.

Examples::

    # create keys for 3 devices and print the commands that register them
    python -m twisted_spark simulate --key-dir sim-keys --count 3 --register-only
    # run them (Ctrl-C to stop)
    python -m twisted_spark simulate --server 127.0.0.1:5683 \\
        --server-key spark-data/server_key.pub.der --key-dir sim-keys --count 3
    # Gen3 devices (UDP/DTLS, EC keys; server 127.0.0.1:5684, key server_key_ec.pub.pem)
    python -m twisted_spark simulate --platform gen3 --count 3
"""

from __future__ import annotations

import random
import sys

from twisted.python import usage

from twisted_spark.sim.fleet import (
    Fleet,
    device_ids,
    ensure_key,
    load_server_public_key,
    make_factory,
)
from twisted_spark.sim.gen3_fleet import Gen3Fleet, ensure_ec_key, load_server_ec_public_key


class SimulateOptions(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run virtual Spark Cores, Photons or Gen3 devices against a twisted-spark server. "
        "Device keys missing from --key-dir are generated; --register-only then prints the "
        "'python -m twisted_spark keys add' commands that register them."
    )
    optParameters = [
        ["server", "s", None, "Device endpoint of the server, host:port "
         "(default 127.0.0.1:5683, or 127.0.0.1:5684 for gen3)."],
        [
            "server-key",
            "k",
            None,
            "Server public key (default spark-data/server_key.pub.der, or "
            "spark-data/server_key_ec.pub.pem for gen3).",
        ],
        [
            "key-dir",
            "d",
            "sim-keys",
            "Directory of device private keys <id>.pem (or one shared.pem); "
            "missing ones are generated.",
        ],
        ["count", "n", 1, "Number of devices.", int],
        ["platform", "p", "core", "core, photon, mixed, or gen3 (Argon/Boron/P2: UDP, DTLS)."],
        ["device-id-prefix", None, "5117", "Hex prefix of the generated device ids."],
        ["publish", None, None, "Publish this event name from every device periodically."],
        ["interval", None, 10.0, "Seconds between publishes.", float],
        ["concurrency", None, 100, "Connections being set up at once.", int],
    ]
    optFlags = [
        ["register-only", None, "Create missing keys, print registration commands, exit."],
    ]

    def postOptions(self):
        if self["platform"] not in ("core", "photon", "mixed", "gen3"):
            raise usage.UsageError("--platform must be core, photon, mixed or gen3")
        gen3 = self["platform"] == "gen3"
        if self["server"] is None:
            self["server"] = "127.0.0.1:5684" if gen3 else "127.0.0.1:5683"
        if self["server-key"] is None:
            self["server-key"] = ("spark-data/server_key_ec.pub.pem" if gen3
                                  else "spark-data/server_key.pub.der")
        if self["count"] < 1:
            raise usage.UsageError("--count must be at least 1")
        host, _, port = self["server"].rpartition(":")
        if not host or not port.isdigit():
            raise usage.UsageError("--server must be host:port")
        self["host"], self["port"] = host, int(port)
        try:
            self["ids"] = device_ids(self["count"], self["device-id-prefix"])
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


def prepare_keys(options, out=None):
    """Load or create every device key; print a registration command for new ones."""
    out = out or sys.stdout
    keys = []
    gen3 = options["platform"] == "gen3"
    for device_id in options["ids"]:
        if gen3:
            key, created = ensure_ec_key(options["key-dir"], device_id)
        else:
            key, created = ensure_key(options["key-dir"], device_id)
        if created:
            print(
                f"python -m twisted_spark keys add {device_id} "
                f"{options['key-dir']}/{device_id}{'.ec' if gen3 else ''}.pub.pem",
                file=out,
            )
        keys.append((device_id, key))
    return keys


async def run_gen3(reactor, options):
    """Gen3 devices over UDP: handshake, stay online (answering the server's pings)."""
    from twisted.internet import defer, task

    with open(options["server-key"], "rb") as f:
        server_public = load_server_ec_public_key(f.read())
    fleet = Gen3Fleet(reactor, prepare_keys(options), server_public,
                      (options["host"], options["port"]), options["concurrency"])
    started = reactor.seconds()
    online = await fleet.connect_all()
    print(f"{len(online)} of {options['count']} Gen3 devices online in "
          f"{reactor.seconds() - started:.2f} s", flush=True)
    for device_id, why in fleet.failures[:10]:
        print(f"  {device_id}: {why}", file=sys.stderr)
    if not online:
        raise SystemExit(1)
    if options["publish"]:

        def publish_all():
            for device in online:
                device.publish(options["publish"], "sim").addErrback(lambda f: None)

        loop = task.LoopingCall(publish_all)
        loop.clock = reactor
        loop.start(options["interval"]).addErrback(lambda f: print(f.getErrorMessage()))
    await defer.Deferred()  # until Ctrl-C


async def run(reactor, options):
    from twisted.internet import defer, task

    if options["platform"] == "gen3":
        await run_gen3(reactor, options)
        return
    with open(options["server-key"], "rb") as f:
        server_public = load_server_public_key(f.read())
    keys = prepare_keys(options)
    fleet = Fleet(
        reactor,
        options["host"],
        options["port"],
        make_factory(server_public, keys, options["platform"], reactor, keepalive=15.0,
                     keepalive_jitter=random.Random().random),
        options["count"],
        options["concurrency"],
    )
    started = reactor.seconds()
    online = await fleet.connect_all()
    print(
        f"{len(online)} of {options['count']} devices online in "
        f"{reactor.seconds() - started:.2f} s",
        flush=True,
    )
    for device_id, why in fleet.failures[:10]:
        print(f"  {device_id}: {why}", file=sys.stderr)
    if not online:
        raise SystemExit(1)
    if options["publish"]:

        def publish_all():
            for device in online:
                device.publish(options["publish"], "sim")

        loop = task.LoopingCall(publish_all)
        loop.clock = reactor
        loop.start(options["interval"]).addErrback(lambda f: print(f.getErrorMessage()))
    await defer.DeferredList([d.closed for d in online])
    print("all devices disconnected", flush=True)


def main(argv=None):
    """Entry point (``python -m twisted_spark simulate ...``)."""
    options = SimulateOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"{options}\nerror: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if options["register-only"]:
        prepare_keys(options)
        return
    from twisted.internet import defer, task

    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))
