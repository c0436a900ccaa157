"""Administrative subcommands: ``keys`` and ``users``.

They open the same SQLite database the server uses (safe while the server
runs: SQLite in WAL mode serialises writers) and print plain text meant for
people.  Each command function takes already-parsed options and returns a
Deferred, so :mod:`twisted_spark.__main__` can run it under ``task.react``.
"""

from __future__ import annotations

import getopt
import getpass
import json
import sys
from pathlib import Path

from twisted.internet import defer, threads
from twisted.python import usage

from twisted_spark.config import Settings
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
from twisted_spark.errors import DuplicateUser
from twisted_spark.models import User
from twisted_spark.store import NameTaken
from twisted_spark.usernames import username_problem


class CommandError(Exception):
    """A user mistake: printed as one line, exit status 1."""


_KEY_NAMES = {"rsa": "RSA", "ecc": "EC P-256"}


# -- options -------------------------------------------------------------------


class DataDirOptions(usage.Options):
    """Every subcommand takes ``--data-dir``; it falls back to the global one.

    Options may follow the positional arguments (``keys add ID FILE --owner
    alice``), as people type them; plain ``usage.Options`` stops at the
    first positional argument.
    """

    optParameters = [["data-dir", "d", None,
                      "The server's data directory (default ./spark-data)."]]

    def parseOptions(self, options=None):
        if options is None:
            options = sys.argv[1:]
        try:
            pairs, positional = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
        except getopt.error as error:
            raise usage.UsageError(str(error)) from error
        with_values = {name[:-1] for name in self.longOpt if name.endswith("=")}
        ordered = []
        for option, value in pairs:
            if option.startswith("--") and option[2:] in with_values:
                ordered.append(f"{option}={value}")
            else:
                ordered.append(option + value)
        super().parseOptions(ordered + ["--"] + positional)


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


# -- helpers -------------------------------------------------------------------


async def _open_store(reactor, data_dir: Path):
    from twisted_spark.store.sqlite import SQLiteStore

    settings = Settings(data_dir=prepare_data_dir(data_dir))
    return await SQLiteStore.open(settings.database_path, reactor=reactor)


async def _with_store(reactor, data_dir, action):
    store = await _open_store(reactor, data_dir)
    try:
        return await action(store)
    finally:
        await store.close()


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


async def _require_user(store, username: str | None) -> None:
    if username is not None and await store.get_user(username) is None:
        raise CommandError(
            f"no user named {username!r}; create it first with "
            f"'python -m twisted_spark users add {username}'")


# -- keys ----------------------------------------------------------------------


async def keys_add(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    device_id = _device_id(options["device_id"])
    key = _read_key_file(Path(options["key_file"]))
    owner = options["owner"]

    async def action(store):
        await _require_user(store, owner)
        changes = {"public_key": key.der}
        if owner is not None:
            changes["owner"] = owner
        try:
            await store.update_device(device_id, **changes)
        except NameTaken as error:
            raise CommandError(f"{error.owner} already has a device called {error.name!r}; "
                               "rename one of them first") from None

    await _with_store(reactor, data_dir, action)
    print(f"Registered device {device_id} ({_KEY_NAMES[key.algorithm]} key {key.fingerprint})"
          + (f", owner {owner}" if owner else ""), file=out)


async def keys_list(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    records = await _with_store(reactor, data_dir, lambda store: store.list_devices())
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
    key = await threads.deferToThread(load_or_create_server_key, directory)
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
    key = await threads.deferToThread(load_or_create_server_ec_key, directory)
    paths = EcServerKeyPaths.in_dir(directory)
    block = server_key_block.encode_block(key.public_key(), address)
    await threads.deferToThread(write_file_atomically, paths.udp_block, block, 0o644)
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
        await _require_user(store, owner)
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

    imported, skipped = await _with_store(reactor, data_dir, action)
    print(f"Imported {imported} device key(s) from {directory}; skipped {skipped}.", file=out)


def _spark_server_name(path: Path) -> str | None:
    """The device name from a spark-server ``<id>.json`` attributes file, if any."""
    try:
        name = json.loads(path.read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


# -- users ---------------------------------------------------------------------


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
    from twisted_spark.passwords import hash_password_async

    username = options["username"].strip().lower()
    problem = username_problem(username)
    if problem is not None:
        raise CommandError(problem)
    password = _password(options)
    password_hash = await hash_password_async(password, reactor=reactor)

    async def action(store):
        # The first user administers the server, as with POST /v1/users.
        is_admin = bool(options["admin"]) or await store.count_users() == 0
        user = User(username, password_hash, is_admin=is_admin, created_at=reactor.seconds())
        try:
            return await store.add_user(user)
        except DuplicateUser as error:
            raise CommandError(f"a user named {username!r} already exists") from error

    user = await _with_store(reactor, data_dir, action)
    print(f"Created user {username}" + (" (administrator)" if user.is_admin else ""), file=out)


async def users_list(reactor, data_dir: Path, options, out=sys.stdout) -> None:
    users = await _with_store(reactor, data_dir, lambda store: store.list_users())
    if not users:
        print("No users yet. Create one with 'python -m twisted_spark users add <name>'.",
              file=out)
    for user in users:
        print(f"{user.username}" + ("  (administrator)" if user.is_admin else ""), file=out)


KEYS_COMMANDS = {"add": keys_add, "list": keys_list, "server": keys_server,
                 "import": keys_import}
USERS_COMMANDS = {"add": users_add, "list": users_list}


def run_command(reactor, table, data_dir, options) -> defer.Deferred:
    """Run the subcommand chosen in ``options`` from ``table``."""
    command = table[options.subCommand]
    data_dir = options.subOptions["data-dir"] or data_dir
    return defer.ensureDeferred(command(reactor, Path(data_dir), options.subOptions))
