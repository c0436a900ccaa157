# -*- test-case-name: tests.test_cli -*-
"""``keys``: register and list device keys (RSA and EC P-256), show the server keys.

``keys server`` prints the RSA key of the TCP device port; ``keys server
--udp`` the EC key of the UDP port and the server-key block Gen3 devices
are flashed with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from twisted.python import usage

from twisted_spark.cli_base import CommandError, DataDirOptions, in_thread, require_user, with_store
from twisted_spark.crypto import keys, server_key_block
from twisted_spark.crypto.device_keys import (
    DeviceKey,
    der_fingerprint,
    key_algorithm,
    load_device_key,
)
from twisted_spark.crypto.ec_keys import ec_public_key_der
from twisted_spark.datadir import (
    EcServerKeyPaths,
    ServerKeyPaths,
    load_or_create_server_ec_key,
    load_or_create_server_key,
    prepare_data_dir,
    write_file_atomically,
)
from twisted_spark.store import NameTaken

_KEY_NAMES = {"rsa": "RSA", "ecc": "EC P-256"}


class KeysAddOptions(DataDirOptions):
    synopsis = "<device-id> <public-key-file> [--owner USER]"
    optParameters = [["owner", "o", None, "Make this user the device's owner."]]

    def parseArgs(self, device_id, key_file):
        self["device_id"] = device_id
        self["key_file"] = key_file


class KeysImportOptions(DataDirOptions):
    synopsis = "<core_keys-directory> [--owner USER]"
    longdesc = ("Import every <device-id>.pub.pem of a spark-server core_keys/ directory "
                "(and the device name from <device-id>.json when present).")
    optParameters = [["owner", "o", None, "Make this user the owner of every imported device."]]

    def parseArgs(self, directory):
        self["directory"] = directory


class KeysServerOptions(DataDirOptions):
    synopsis = "[--udp --address HOST[:PORT]]"
    longdesc = ("Without --udp: the RSA key of the TCP device port (Core, Photon, P1). "
                "With --udp: the EC key of the UDP port (Gen3: Argon, Boron, P2, ...) and "
                "the 320-byte server-key block that 'particle keys server' flashes.")
    optFlags = [["udp", None, "The EC server key and block for Gen3 devices (UDP/DTLS)."]]
    optParameters = [["address", None, None,
                      "HOST[:PORT] Gen3 devices connect to: an IPv4 address or a host name "
                      "(port 5684 by default)."]]


class KeysOptions(usage.Options):
    synopsis = "add|list|server|import ..."
    subCommands = [
        ["add", None, KeysAddOptions, "Register a device public key (PEM or DER)."],
        ["list", None, DataDirOptions, "List registered devices and key fingerprints."],
        ["server", None, KeysServerOptions,
         "Print the server key paths and fingerprint (creating the key if needed)."],
        ["import", None, KeysImportOptions, "Import a spark-server core_keys/ directory."],
    ]

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("keys needs a subcommand: add, list, server or import")


def _read_key_file(path: Path) -> DeviceKey:
    """The device key in ``path``: RSA-1024 public, or EC P-256 public or private."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from error
    try:
        return load_device_key(data)
    except keys.KeyFormatError as error:
        hint = ""
        if "give the public key" in str(error):  # an RSA private key
            hint = (f" (extract it with: openssl rsa -inform DER -in {path} -pubout "
                    f"-out device.pub.pem)")
        raise CommandError(f"{path}: {error}{hint}") from error


def _device_id(text: str) -> str:
    try:
        return keys.normalize_device_id(text)
    except ValueError as error:
        raise CommandError(str(error)) from error


async def keys_add(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    device_id = _device_id(options["device_id"])
    key = _read_key_file(Path(options["key_file"]))
    owner = options["owner"]

    async def action(store):
        await require_user(store, owner)
        changes = {"public_key": key.der}
        if owner is not None:
            changes["owner"] = owner
        try:
            await store.update_device(device_id, **changes)
        except NameTaken as error:
            raise CommandError(f"{error.owner} already has a device called {error.name!r}; "
                               "rename one of them first") from None

    await with_store(reactor, data_dir, action,
                     database=options.get("database", "sqlite:"))
    print(f"Registered device {device_id} ({_KEY_NAMES[key.algorithm]} key {key.fingerprint})"
          + (f", owner {owner}" if owner else ""), file=out)


async def keys_list(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    records = await with_store(reactor, data_dir, lambda store: store.list_devices(),
                               database=options.get("database", "sqlite:"))
    if not records:
        print("No devices registered. Add one with "
              "'python -m twisted_spark keys add <device-id> <key-file>'.", file=out)
        return
    for record in records:
        if record.public_key is None:
            fingerprint = "(no key)"
        else:
            algorithm = key_algorithm(record.public_key) or "unknown algorithm"
            fingerprint = f"{der_fingerprint(record.public_key)} ({algorithm})"
        print(f"{record.device_id}  owner={record.owner or '-'}  name={record.name or '-'}  "
              f"key={fingerprint}", file=out)


async def keys_server(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    if options.get("udp"):
        return await keys_server_udp(reactor, data_dir, options, out)
    if options.get("address"):
        raise CommandError("--address goes with --udp (the Gen3 server-key block); "
                           "for the TCP key, give the address to particle-cli: "
                           "particle keys server FILE --host HOST")
    directory = prepare_data_dir(data_dir)
    key = await in_thread(reactor, load_or_create_server_key, directory)
    paths = ServerKeyPaths.in_dir(directory)
    print(f"private key:        {paths.private_pem}", file=out)
    print(f"public key (PEM):   {paths.public_pem}", file=out)
    print(f"public key (DER):   {paths.public_der}", file=out)
    print(f"fingerprint:        {keys.fingerprint(key.publickey())}", file=out)
    print("Load it onto a device (in DFU mode) with:\n"
          f"  particle keys server {paths.public_der} <this server's IP address>", file=out)


async def keys_server_udp(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    """The EC key pair (made once) and the server-key block pointing devices at ``--address``."""
    if not options.get("address"):
        raise CommandError("keys server --udp needs --address HOST[:PORT]: the address Gen3 "
                           "devices will connect to (an IPv4 address or a host name)")
    try:
        address = server_key_block.parse_address(options["address"])
    except ValueError as error:
        raise CommandError(f"--address: {error}") from None
    directory = prepare_data_dir(data_dir)
    key = await in_thread(reactor, load_or_create_server_ec_key, directory)
    paths = EcServerKeyPaths.in_dir(directory)
    block = server_key_block.encode_block(key.public_key(), address)
    await in_thread(reactor, write_file_atomically, paths.udp_block, block, 0o644)
    kind = "IPv4 address" if address.is_ip else "host name"
    print(f"EC private key:       {paths.private_pem}", file=out)
    print(f"EC public key (DER):  {paths.public_der}", file=out)
    print(f"fingerprint:          {der_fingerprint(ec_public_key_der(key))}", file=out)
    print(f"server-key block:     {paths.udp_block} ({len(block)} bytes: the EC key, "
          f"{kind} {address.host}, port {address.port})", file=out)
    print("Flash it to a Gen3 device (Argon, Boron, B-SoM, P2, Photon 2, M-SoM) connected "
          "by USB with:\n"
          f"  particle keys server {paths.udp_block}\n"
          "(particle-cli puts the device in DFU mode; a file not ending in .der is taken for "
          "PEM.) The same block, built by particle-cli from the public key:\n"
          f"  particle keys server {paths.public_der} --host {address.host} "
          f"--port {address.port}\n"
          "Then register each device's key here: 'particle keys save device' writes "
          "device.der and device.pub.pem; run "
          "'python -m twisted_spark keys add <device-id> device.pub.pem'.",
          file=out)


async def keys_import(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    directory = Path(options["directory"])
    if not directory.is_dir():
        raise CommandError(f"{directory} is not a directory")
    owner = options["owner"]
    candidates = sorted(directory.glob("*.pub.pem"))
    if not candidates:
        raise CommandError(f"no <device-id>.pub.pem files in {directory}")

    async def action(store):
        await require_user(store, owner)
        imported, skipped = 0, 0
        for path in candidates:
            try:
                device_id = _device_id(path.name[: -len(".pub.pem")])
                key = _read_key_file(path)
            except CommandError as error:
                print(f"skipped {path.name}: {error}", file=out)
                skipped += 1
                continue
            changes = {"public_key": key.der}
            name = _spark_server_name(directory / f"{device_id}.json")
            if name:
                changes["name"] = name
            if owner is not None:
                changes["owner"] = owner
            try:
                await store.update_device(device_id, **changes)
            except NameTaken as error:  # spark-server allowed duplicates; names are unique now
                print(f"{device_id}: {error.owner} already has a device called "
                      f"{error.name!r}; imported without a name", file=out)
                changes["name"] = None
                await store.update_device(device_id, **changes)
            imported += 1
        return imported, skipped

    imported, skipped = await with_store(reactor, data_dir, action,
                                         database=options.get("database", "sqlite:"))
    print(f"Imported {imported} device key(s) from {directory}; skipped {skipped}.", file=out)


def _spark_server_name(path: Path) -> str | None:
    """The device name from a spark-server ``<id>.json`` attributes file, if any."""
    try:
        name = json.loads(path.read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


KEYS_COMMANDS = {"add": keys_add, "list": keys_list, "server": keys_server,
                 "import": keys_import}
