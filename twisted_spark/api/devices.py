# -*- test-case-name: tests.test_api_devices -*-
"""Device routes (API.md §4): list, info, claim, release, rename, signal,
variables, functions, ping, provisioning, and flashing.

Devices are found by :mod:`twisted_spark.api.lookup` (403 for anything not
the caller's); claim, release, provisioning and rename write through
:func:`~twisted_spark.api.ownership.change_device`, a compare-and-set.
Flashing hands the upload to the
:class:`~twisted_spark.interfaces.IFirmwareUpdater`.
"""

from __future__ import annotations

import re

from twisted_spark.api.context import Reply
from twisted_spark.api.errors import ApiError, bad_request, forbidden
from twisted_spark.api.lookup import DEVICE_ID, resolve
from twisted_spark.api.ownership import (
    belongs_to_someone_else,
    change_device,
    key_registered,
    name_in_use,
)
from twisted_spark.crypto.device_keys import ALGORITHMS as KEY_ALGORITHMS
from twisted_spark.crypto.device_keys import load_device_key
from twisted_spark.crypto.keys import KeyFormatError
from twisted_spark.errors import DeviceNotConnected, UnknownFunction, UnknownVariable
from twisted_spark.models import DeviceRecord, iso8601
from twisted_spark.platforms import limits_for
from twisted_spark.store import NameTaken

DEVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
#: Old firmware registers only this many characters of a name (seed §Controlling a Core).
NAME_LIMIT = 12


# -- views --------------------------------------------------------------------


def summary(api, record: DeviceRecord) -> dict:
    """The list item: cached state plus the live session table, no round-trip."""
    session = api.registry.get(record.device_id)
    last_heard = getattr(session, "last_heard", None) if session else None
    view = {
        "id": record.device_id,
        "name": record.name,
        "last_app": record.last_app,
        "last_heard": iso8601(last_heard or record.last_heard),
        "connected": session is not None,
        "last_ip_address": getattr(session, "remote_ip", None) if session else record.last_ip,
        "platform_id": pick(session, "platform_id", record.platform_id),
        "product_id": pick(session, "product_id", record.product_id),
        "status": "normal",
    }
    return view


def pick(session, name, fallback):
    value = getattr(session, name, None) if session is not None else None
    return fallback if value is None else value


def exposed(session, record):
    """(variables dict, functions list) from the session's cached Describe."""
    variables = dict(getattr(session, "variables", None) or {}) if session else {}
    functions = list(getattr(session, "functions", None) or ()) if session else []
    if not variables and not functions:
        variables, functions = dict(record.variables), list(record.functions)
    return variables, functions


def match_name(name: str, available) -> str | None:
    """``name`` as the device knows it: exact, else truncated to 12 characters."""
    if name in available:
        return name
    if len(name) > NAME_LIMIT and name[:NAME_LIMIT] in available:
        return name[:NAME_LIMIT]
    return None


def online(api, record):
    session = api.registry.get(record.device_id)
    if session is None:
        raise DeviceNotConnected(record.device_id)
    return session


async def described(api, session, kind):
    """The session's names of ``kind``; asks the device once if nothing is cached.

    The answer may come from a partial Describe (a Photon's first part):
    :func:`exposed_member` looks again in the final one before refusing a name.
    """
    names = getattr(session, kind, None)
    other = "functions" if kind == "variables" else "variables"
    if not names and not getattr(session, other, None):
        answer = await api.with_timeout(session.describe(), "describe")
        names = answer.get(kind) if isinstance(answer, dict) else None
    return names or ()


def argument_limit(api, session, name) -> int:
    limit_of = getattr(session, "argument_limit", None)
    if limit_of is not None:  # a local session knows its device (a Gen3 one: 1024 bytes)
        return limit_of(name)
    if api.settings.max_function_argument is not None:
        return api.settings.max_function_argument
    return limits_for(getattr(session, "platform_id", None)).argument_limit


def raw_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_signal(value) -> bool:
    text = (value or "").strip().lower()
    if text in ("1", "true", "on"):
        return True
    if text in ("0", "false", "off"):
        return False
    raise bad_request("Wrong signal value: give signal=1 or signal=0.")


# -- routes -------------------------------------------------------------------


async def exposed_member(call, device: str, requested: str, kind: str):
    """The caller's online device and the name it exposes for ``requested``.

    ``kind`` is ``"variables"`` or ``"functions"``; a name the device does not
    expose raises UnknownVariable/UnknownFunction (400).
    """
    api = call.api
    record = await resolve(api, call.caller, device)
    session = online(api, record)
    name = match_name(requested, await described(api, session, kind))
    if name is None:
        # Not in what is known yet: the rest of a partial Describe may name it
        # (PROTOCOL.md §8.1).  At once when nothing more is coming; at most the
        # request timeout otherwise.
        final = await api.with_timeout(session.final_describe(), "describe")
        names = final.get(kind) if isinstance(final, dict) else None
        name = match_name(requested, names or ())
    if name is None:
        raise (UnknownVariable if kind == "variables" else UnknownFunction)(requested)
    return record, session, name


def register(api):
    route = api.route

    @route("/v1/devices", ["GET"])
    async def list_devices(call):
        """The caller's devices; an administrator's list is everyone's, with ``owner``."""
        if call.caller.is_admin:
            return [dict(summary(api, r), owner=r.owner) for r in await api.store.list_devices()]
        records = await api.store.list_devices(owner=call.caller.username)
        return [summary(api, r) for r in records]

    @route("/v1/devices", ["POST"])
    async def claim(call):
        ident = (call.body.text("id") or call.body.text("deviceID") or "").strip()
        if not ident:
            raise bad_request("No device id given.", errors=["arg.deviceID is empty"])
        device_id = ident.lower()
        record = await api.store.get_device(device_id) if DEVICE_ID.fullmatch(ident) else None
        known = record is not None or (
            DEVICE_ID.fullmatch(ident) and api.registry.get(device_id) is not None
        )
        if not known:
            sentence = "device doesn't exist"
            raise ApiError(404, "Not Found", sentence, errors=[sentence])
        me = call.caller.username

        def claim_it(current, **more):
            owner = current.owner if current else None
            if owner not in (None, me):
                raise belongs_to_someone_else()
            return {"owner": me, **more}

        try:
            await change_device(api, device_id, claim_it, record)
        except NameTaken:
            # The caller already has a device of that name: this one loses its name.
            await change_device(api, device_id, lambda current: claim_it(current, name=None))
        return {
            "ok": True,
            "user_id": call.caller.username,
            "id": device_id,
            "connected": api.registry.get(device_id) is not None,
        }

    @route("/v1/devices/<device>", ["DELETE"])
    async def release(call, device):
        caller = call.caller
        record = await resolve(api, caller, device)

        def release_it(current):
            owner = current.owner if current else None
            if owner is not None and not (caller.is_admin or owner == caller.username):
                raise forbidden()  # someone claimed it since: no longer the caller's
            return {"owner": None}

        await change_device(api, record.device_id, release_it, record)
        return {"ok": True}

    @route("/v1/devices/<device>", ["GET"])
    async def info(call, device):
        record = await resolve(api, call.caller, device)
        session = api.registry.get(record.device_id)
        variables, functions = exposed(session, record)
        view = summary(api, record)
        view.update(
            variables=variables,
            functions=functions,
            firmware_version=pick(session, "firmware_version", record.firmware_version),
        )
        return view

    @route("/v1/devices/<device>", ["PUT"], body_limit=api.settings.max_firmware_size)
    async def update(call, device):
        record = await resolve(api, call.caller, device)
        body = call.body
        actions = [a for a in ("name", "signal", "file") if a in body.fields or a in body.files]
        if len(actions) != 1:
            raise bad_request(
                "Give exactly one of name, signal or file.",
                errors=["Nothing to do? Give exactly one of name, signal or file."],
            )
        return await {"name": rename, "signal": signal, "file": flash}[actions[0]](
            api, call, record
        )

    @route("/v1/devices/<device>/<variable>", ["GET"])
    async def read_variable(call, device, variable):
        record, session, name = await exposed_member(call, device, variable, "variables")
        value = await api.with_timeout(session.read_variable(name), "variable")
        if call.query.get("format") == "raw":
            return Reply(raw_text(value), content_type="text/plain; charset=utf-8")
        return {
            "cmd": "VarReturn",
            "name": name,
            "result": value,
            "coreInfo": {
                "last_app": record.last_app,
                "last_heard": iso8601(getattr(session, "last_heard", None) or record.last_heard),
                "connected": True,
                "deviceID": record.device_id,
            },
        }

    @route("/v1/devices/<device>/<function>", ["POST"])
    async def call_function(call, device, function):
        record, session, name = await exposed_member(call, device, function, "functions")
        body = call.body
        argument = next(
            (body.text(k) for k in ("arg", "args", "params") if body.get(k) is not None), ""
        )
        data = argument.encode("utf-8")
        limit = argument_limit(api, session, name)
        if len(data) > limit:
            raise ApiError(
                400, "Argument too long", f"The function argument is longer than {limit} bytes."
            )
        result = await api.with_timeout(session.call_function(name, data), "function")
        return {
            "id": record.device_id,
            "name": record.name,
            "last_app": record.last_app,
            "connected": True,
            "return_value": result,
        }

    @route("/v1/devices/<device>/ping", ["PUT"])
    async def ping(call, device):
        record = await resolve(api, call.caller, device)
        session = api.registry.get(record.device_id)
        alive = False
        if session is not None:
            try:
                alive = bool(await api.with_timeout(session.ping()))
            except Exception as e:  # a silent or vanished device is simply not online
                if not isinstance(e, (DeviceNotConnected,)) and not is_timeout(e):
                    raise
        return {"online": alive, "ok": True}

    @route("/v1/provisioning/<device>", ["POST"])
    async def provision(call, device):
        ident = device if DEVICE_ID.fullmatch(device) else (call.body.text("deviceID") or "")
        if not DEVICE_ID.fullmatch(ident):
            raise bad_request("The device id must be 24 hex characters.")
        device_id = ident.lower()
        pem = call.body.text("publicKey") or (
            call.body.files["publicKey"].data.decode("latin-1")
            if "publicKey" in call.body.files
            else None
        )
        if not pem:
            raise bad_request("No key provided", errors=["No key provided"])
        algorithm = (call.body.text("algorithm") or "").lower() or None
        if algorithm not in (None, *KEY_ALGORITHMS):
            raise bad_request(f"Key algorithm must be 'rsa' or 'ecc', not {algorithm!r}.")
        try:
            key = load_device_key(pem, algorithm)
        except KeyFormatError as e:
            raise bad_request(f"Key error: {e}", errors=[f"Key error: {e}"]) from None
        caller = call.caller

        def register_key(current):
            """API.md §4: a new id is anyone's to register (and own); a key
            is replaced only by the device's owner or an administrator."""
            owner = current.owner if current else None
            has_key = current is not None and current.public_key is not None
            if not caller.is_admin and owner not in (None, caller.username):
                raise belongs_to_someone_else()
            if not caller.is_admin and owner is None and has_key:
                raise key_registered()
            if owner is None and not has_key:
                owner = caller.username
            return {"public_key": key.der, "owner": owner}

        await change_device(api, device_id, register_key)
        return {"ok": True, "id": device_id}


def is_timeout(exc) -> bool:
    from twisted.internet.defer import TimeoutError

    from twisted_spark.errors import DeviceTimeout

    return isinstance(exc, (TimeoutError, DeviceTimeout))


# -- PUT actions ----------------------------------------------------------------


async def rename(api, call, record):
    name = (call.body.text("name") or "").strip()
    if not DEVICE_NAME.fullmatch(name):
        raise bad_request(
            "Device names are 1 to 63 characters of letters, digits, '_' and '-'.",
            errors=["Invalid device name"],
        )
    caller = call.caller

    def rename_it(current):
        if current is None or not (caller.is_admin or current.owner == caller.username):
            raise forbidden()  # released or deleted since it was resolved
        return {"name": name}

    try:
        await change_device(api, record.device_id, rename_it, record)
    except NameTaken:
        raise name_in_use() from None
    return {"ok": True, "id": record.device_id, "name": name}


async def signal(api, call, record):
    on = parse_signal(call.body.text("signal"))
    session = online(api, record)
    await api.with_timeout(session.signal(on))
    return {"id": record.device_id, "connected": True, "signaling": on}


async def flash(api, call, record):
    """Hand the upload to ``api.firmware``, the
    :class:`~twisted_spark.interfaces.IFirmwareUpdater`: a binary as ``image``,
    anything else as ``sources`` to compile.  Its domain errors are answered
    by :func:`twisted_spark.api.errors.firmware_error`.
    """
    upload = call.body.files.get("file")
    if upload is None:
        raise bad_request("The file must be sent as multipart/form-data.")
    binary = call.body.text("file_type") == "binary" or (upload.filename or "").endswith(".bin")
    if api.firmware is None:
        sentence = (
            "Flashing is not configured on this server"
            if binary
            else "Compilation is not configured on this server"
        )
        raise ApiError(400, "Not Implemented", sentence, errors=[sentence])
    if binary:
        image_id = await api.firmware.flash(record, image=upload.data)
    else:
        sources = [(u.filename or name, u.data) for name, u in call.body.files.items()]
        image_id = await api.firmware.flash(record, sources=sources)
    return {
        "ok": True,
        "id": record.device_id,
        "status": "Update finished",
        "firmware_binary_id": image_id,
    }
