"""Device routes (API.md §4) × their error cases, in memory."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import pytest_twisted
from api_fakes import Harness, assert_error, device_id
from Crypto.IO import PEM
from Crypto.PublicKey import RSA
from Crypto.Util.asn1 import DerSequence
from twisted.internet import defer
from zope.interface import implementer

from twisted_spark.errors import DeviceBusy, DeviceRequestFailed, DeviceTimeout, FirmwareTooLarge
from twisted_spark.interfaces import IFirmwareUpdater
from twisted_spark.models import iso8601

KEYS = Path(__file__).parent / "keys"
D1 = device_id(1)
VARS = {
    "temp": "int32",
    "ratio": "double",
    "on": "bool",
    "label": "string",
    "temperature_": "int32",
}
VALUES = {"temp": 21, "ratio": 0.5, "on": True, "label": "hi there", "temperature_": -4}
FUNCS = ("brew", "someFunction")


async def setup(**settings):
    h = Harness(**settings)
    alice = await h.user("alice")
    session = await h.device(
        1, owner="alice", name="kettle", variables=VARS, values=VALUES, functions=FUNCS
    )
    return h, alice, session


# -- list and info ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_list_shows_only_own_devices_with_live_connected_flag():
    h, alice, _ = await setup()
    await h.device(2, owner="alice", name="lamp", online=False)
    await h.device(3, owner="bob", name="bobs")
    r = await h.call("GET", "/v1/devices", token=alice)
    assert r.status == 200
    items = {d["id"]: d for d in r.json}
    assert set(items) == {D1, device_id(2)}
    assert items[D1]["connected"] is True and items[device_id(2)]["connected"] is False
    assert items[D1]["last_heard"] == "2023-11-14T22:13:20.500Z"  # the live session's
    assert items[device_id(2)]["last_heard"] == iso8601(1_600_000_000.0)  # the stored one
    for item in items.values():
        assert {"id", "name", "last_app", "last_heard", "connected"} <= set(item)
    assert r.header(b"content-type").startswith(b"application/json")


@pytest_twisted.ensureDeferred
async def test_admin_lists_every_device():
    h, _, _ = await setup()
    await h.device(3, owner="bob")
    root = await h.user("root", admin=True)
    r = await h.call("GET", "/v1/devices", token=root)
    assert {d["id"] for d in r.json} == {D1, device_id(3)}


@pytest_twisted.ensureDeferred
async def test_admin_list_says_who_owns_each_device_so_unclaimed_ones_show():
    h, alice, _ = await setup()
    await h.device(3, owner=None)
    root = await h.user("root", admin=True)
    owners = {d["id"]: d["owner"] for d in (await h.call("GET", "/v1/devices", token=root)).json}
    assert owners == {D1: "alice", device_id(3): None}
    plain = (await h.call("GET", "/v1/devices", token=alice)).json
    assert all("owner" not in d for d in plain)  # a plain user sees only their own anyway


@pytest_twisted.ensureDeferred
async def test_list_is_empty_for_a_new_user():
    h, _, _ = await setup()
    carol = await h.user("carol")
    assert (await h.call("GET", "/v1/devices", token=carol)).json == []


@pytest_twisted.ensureDeferred
async def test_info_from_cached_describe_without_device_round_trip():
    h, alice, session = await setup()
    r = await h.call("GET", f"/v1/devices/{D1}", token=alice)
    assert r.status == 200
    body = r.json
    assert body["id"] == D1 and body["name"] == "kettle" and body["connected"] is True
    assert body["variables"] == VARS and body["functions"] == list(FUNCS)
    assert body["platform_id"] == 6 and body["firmware_version"] == 3
    assert session.calls == []  # nothing was sent to the device


@pytest_twisted.ensureDeferred
async def test_info_offline_shows_last_known_state():
    h, alice, _ = await setup()
    h.registry.drop(D1)
    body = (await h.call("GET", f"/v1/devices/{D1}", token=alice)).json
    assert body["connected"] is False
    assert body["variables"] == {"old": "int32"} and body["functions"] == ["oldfn"]


@pytest.mark.parametrize("ident", ["kettle", D1.upper(), "KETTLE"])
@pytest_twisted.ensureDeferred
async def test_info_by_name_or_uppercase_id(ident):
    h, alice, _ = await setup()
    r = await h.call("GET", f"/v1/devices/{ident}", token=alice)
    assert r.status == 200 and r.json["id"] == D1


class CountingLists:
    """The harness store, counting reads of whole device lists."""

    def __init__(self, store):
        self._store = store
        self.lists = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    def list_devices(self, owner=None):
        self.lists += 1
        return self._store.list_devices(owner)


@pytest_twisted.ensureDeferred
async def test_an_exact_name_is_found_without_reading_the_owners_devices():
    h, alice, _ = await setup()
    for n in range(2, 40):
        await h.device(n, owner="alice", name=f"plug-{n}", online=False)
    h.api.store = counting = CountingLists(h.store)
    r = await h.call("GET", "/v1/devices/kettle", token=alice)
    assert r.status == 200 and r.json["id"] == D1
    assert counting.lists == 0
    r = await h.call("GET", "/v1/devices/Plug-7", token=alice)  # only a case-blind match
    assert r.status == 200 and r.json["id"] == device_id(7)
    assert counting.lists == 1


@pytest_twisted.ensureDeferred
async def test_admin_name_lookup_exact_anywhere_before_own_case_blind():
    h, _, _ = await setup()
    root = await h.user("root", admin=True)
    await h.device(3, owner="bob", name="lamp", online=False)
    await h.device(4, owner="root", name="Lamp", online=False)
    await h.device(5, owner="bob", name="LAMP", online=False)
    assert (await h.call("GET", "/v1/devices/lamp", token=root)).json["id"] == device_id(3)
    assert (await h.call("GET", "/v1/devices/Lamp", token=root)).json["id"] == device_id(4)
    assert (await h.call("GET", "/v1/devices/lAmP", token=root)).json["id"] == device_id(4)
    assert (await h.call("GET", "/v1/devices/KETTLE", token=root)).json["id"] == D1


@pytest.mark.parametrize("ident", [device_id(99), "nosuchname", "kettle2"])
@pytest_twisted.ensureDeferred
async def test_unknown_device_is_403_like_a_foreign_one(ident):
    h, alice, _ = await setup()
    r = await h.call("GET", f"/v1/devices/{ident}", token=alice)
    assert_error(r, 403)


@pytest_twisted.ensureDeferred
async def test_other_users_device_name_does_not_resolve():
    h, _, _ = await setup()
    bob = await h.user("bob")
    assert_error(await h.call("GET", "/v1/devices/kettle", token=bob), 403)
    assert_error(await h.call("GET", f"/v1/devices/{D1}", token=bob), 403)


@pytest_twisted.ensureDeferred
async def test_admin_sees_an_online_device_that_was_never_stored():
    h, _, _ = await setup()
    from api_fakes import FakeDeviceSession

    h.registry.connect(FakeDeviceSession(device_id(7), variables={"x": "int32"}))
    root = await h.user("root", admin=True)
    alice = await h.user("alice")
    assert (await h.call("GET", f"/v1/devices/{device_id(7)}", token=root)).status == 200
    assert (await h.call("GET", f"/v1/devices/{device_id(7)}", token=alice)).status == 403


# -- claim and release --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_claim_unowned_device():
    h, _, _ = await setup()
    bob = await h.user("bob")
    await h.device(5, owner=None)
    r = await h.call("POST", "/v1/devices", token=bob, form={"id": device_id(5).upper()})
    assert r.status == 200
    assert r.json == {"ok": True, "user_id": "bob", "id": device_id(5), "connected": True}
    assert (await h.store.get_device(device_id(5))).owner == "bob"
    again = await h.call("POST", "/v1/devices", token=bob, json_body={"id": device_id(5)})
    assert again.status == 200  # already the caller's: idempotent


@pytest_twisted.ensureDeferred
async def test_claim_device_seen_online_but_not_stored():
    h, _, _ = await setup()
    from api_fakes import FakeDeviceSession

    h.registry.connect(FakeDeviceSession(device_id(8)))
    bob = await h.user("bob")
    r = await h.call("POST", "/v1/devices", token=bob, form={"id": device_id(8)})
    assert r.status == 200 and (await h.store.get_device(device_id(8))).owner == "bob"


def test_fakes_provide_the_interfaces():
    from api_fakes import FakeDeviceSession, FakeRegistry
    from zope.interface.verify import verifyObject

    from twisted_spark.interfaces import IDeviceRegistry, IDeviceSession

    assert verifyObject(IDeviceSession, FakeDeviceSession(D1))
    assert verifyObject(IDeviceRegistry, FakeRegistry())


@pytest_twisted.ensureDeferred
async def test_claim_and_release_update_the_live_session_owner():
    h, alice, session = await setup()
    session.owner = "alice"
    await h.call("DELETE", f"/v1/devices/{D1}", token=alice)
    assert session.owner is None
    bob = await h.user("bob")
    await h.call("POST", "/v1/devices", token=bob, form={"id": D1})
    assert session.owner == "bob"


@pytest_twisted.ensureDeferred
async def test_claim_someone_elses_device_is_403():
    h, _, _ = await setup()
    bob = await h.user("bob")
    r = await h.call("POST", "/v1/devices", token=bob, form={"id": D1})
    assert assert_error(r, 403)["errors"] == ["That belongs to someone else"]
    assert (await h.store.get_device(D1)).owner == "alice"


@pytest.mark.parametrize("ident", [device_id(42), "not-an-id"])
@pytest_twisted.ensureDeferred
async def test_claim_unknown_device_is_404(ident):
    h, alice, _ = await setup()
    r = await h.call("POST", "/v1/devices", token=alice, form={"id": ident})
    assert assert_error(r, 404)["errors"] == ["device doesn't exist"]


@pytest_twisted.ensureDeferred
async def test_claim_without_id_is_400():
    h, alice, _ = await setup()
    assert_error(await h.call("POST", "/v1/devices", token=alice, form={}), 400)


@pytest_twisted.ensureDeferred
async def test_release_makes_device_claimable_by_another():
    h, alice, _ = await setup()
    r = await h.call("DELETE", "/v1/devices/kettle", token=alice, form={"id": D1})
    assert r.status == 200 and r.json == {"ok": True}
    assert (await h.store.get_device(D1)).owner is None
    assert_error(await h.call("GET", f"/v1/devices/{D1}", token=alice), 403)
    bob = await h.user("bob")
    assert (await h.call("POST", "/v1/devices", token=bob, form={"id": D1})).status == 200


# -- PUT: rename, signal, flash --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_rename():
    h, alice, _ = await setup()
    r = await h.call("PUT", "/v1/devices/kettle", token=alice, form={"name": "teapot_2"})
    assert r.json == {"ok": True, "id": D1, "name": "teapot_2"}
    assert (await h.call("GET", "/v1/devices/teapot_2", token=alice)).status == 200


@pytest.mark.parametrize("name", ["", "has space", "x" * 64, "émoji"])
@pytest_twisted.ensureDeferred
async def test_rename_invalid_name_is_400(name):
    h, alice, _ = await setup()
    r = await h.call("PUT", f"/v1/devices/{D1}", token=alice, form={"name": name})
    assert_error(r, 400)
    assert (await h.store.get_device(D1)).name == "kettle"


@pytest_twisted.ensureDeferred
async def test_rename_to_a_name_the_owner_already_uses_is_400():
    h, alice, _ = await setup()
    await h.device(2, owner="alice", name="lamp")
    await h.device(3, owner="bob", name="shared")
    r = await h.call("PUT", f"/v1/devices/{D1}", token=alice, form={"name": "lamp"})
    assert_error(r, 400)
    ok = await h.call("PUT", f"/v1/devices/{D1}", token=alice, form={"name": "shared"})
    assert ok.status == 200  # unique per owner only


@pytest.mark.parametrize("form", [{}, {"name": "a", "signal": "1"}, {"foo": "bar"}])
@pytest_twisted.ensureDeferred
async def test_put_needs_exactly_one_action(form):
    h, alice, _ = await setup()
    assert_error(await h.call("PUT", f"/v1/devices/{D1}", token=alice, form=form), 400)


@pytest.mark.parametrize("value,on", [("1", True), ("0", False)])
@pytest_twisted.ensureDeferred
async def test_signal(value, on):
    h, alice, session = await setup()
    r = await h.call("PUT", f"/v1/devices/{D1}", token=alice, form={"signal": value})
    assert r.json == {"id": D1, "connected": True, "signaling": on}
    assert session.signaling is on


@pytest_twisted.ensureDeferred
async def test_signal_errors():
    h, alice, session = await setup()
    assert_error(await h.call("PUT", f"/v1/devices/{D1}", token=alice, form={"signal": "x"}), 400)
    session.mode = "hang"
    d = h.start("PUT", f"/v1/devices/{D1}", token=alice, form={"signal": "1"})
    h.clock.advance(30)
    assert_error(await h.finish(d), 408, "Timed out.")
    h.registry.drop(D1)
    r = await h.call("PUT", f"/v1/devices/{D1}", token=alice, form={"signal": "1"})
    assert_error(r, 404)


@pytest.mark.parametrize(
    "form,filename,sentence",
    [
        ({}, "app.ino", "Compilation is not configured on this server"),
        ({"file_type": "binary"}, "firmware", "Flashing is not configured on this server"),
        ({}, "firmware.bin", "Flashing is not configured on this server"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_flash_without_firmware_support_is_400(form, filename, sentence):
    h, alice, _ = await setup()
    r = await h.call(
        "PUT", f"/v1/devices/{D1}", token=alice, form=form, files={"file": (filename, b"\x00" * 10)}
    )
    assert assert_error(r, 400)["errors"] == [sentence]


@implementer(IFirmwareUpdater)
class RecordingUpdater:
    """An IFirmwareUpdater that records what the API hands it."""

    def __init__(self, error=None):
        self.seen = []
        self.error = error

    def flash(self, record, image=None, sources=None):
        self.seen.append((record.device_id, image, sources))
        if self.error is not None:
            return defer.fail(self.error)
        return defer.succeed("ab" * 12)


@pytest_twisted.ensureDeferred
async def test_flash_hands_a_binary_to_the_updater():
    h, alice, _ = await setup()
    h.api.firmware = updater = RecordingUpdater()
    r = await h.call(
        "PUT",
        "/v1/devices/kettle",
        token=alice,
        form={"file_type": "binary"},
        files={"file": ("app", b"\x01\x02")},
    )
    assert r.json == {"ok": True, "id": D1, "status": "Update finished",
                      "firmware_binary_id": "ab" * 12}
    assert updater.seen == [(D1, b"\x01\x02", None)]


@pytest_twisted.ensureDeferred
async def test_flash_hands_sources_to_the_updater_and_answers_its_errors():
    h, alice, _ = await setup()
    too_large = FirmwareTooLarge("The firmware is 9 bytes; the limit is 8.", "cd" * 12)
    h.api.firmware = updater = RecordingUpdater(too_large)
    r = await h.call(
        "PUT", f"/v1/devices/{D1}", token=alice, files={"file": ("app.cpp", b"int x;")}
    )
    body = assert_error(r, 400, "Firmware too large", str(too_large))
    assert body["firmware_binary_id"] == "cd" * 12 and body["errors"] == [str(too_large)]
    assert updater.seen == [(D1, None, [("app.cpp", b"int x;")])]


@pytest_twisted.ensureDeferred
async def test_firmware_upload_limit_is_separate_from_body_limit():
    h, alice, _ = await setup(max_body_size=100, max_firmware_size=1000)
    small_limit = await h.call(
        "POST", f"/v1/devices/{D1}/brew", token=alice, form={"arg": "x" * 200}
    )
    assert_error(small_limit, 413)
    r = await h.call("PUT", f"/v1/devices/{D1}", token=alice, files={"file": ("a.bin", b"0" * 500)})
    assert r.status == 400  # got through to "flashing is not configured"
    r = await h.call(
        "PUT", f"/v1/devices/{D1}", token=alice, files={"file": ("a.bin", b"0" * 2000)}
    )
    assert_error(r, 413)


# -- variables ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES))
@pytest_twisted.ensureDeferred
async def test_read_each_variable_type(name):
    h, alice, _ = await setup()
    r = await h.call("GET", f"/v1/devices/{D1}/{name}", token=alice)
    assert r.status == 200
    body = r.json
    assert body["cmd"] == "VarReturn" and body["name"] == name
    assert body["result"] == VALUES[name] and type(body["result"]) is type(VALUES[name])
    assert body["coreInfo"] == {
        "last_app": None,
        "last_heard": "2023-11-14T22:13:20.500Z",
        "connected": True,
        "deviceID": D1,
    }


@pytest.mark.parametrize(
    "name,raw", [("temp", b"21"), ("ratio", b"0.5"), ("on", b"true"), ("label", b"hi there")]
)
@pytest_twisted.ensureDeferred
async def test_read_variable_raw(name, raw):
    h, alice, _ = await setup()
    r = await h.call("GET", f"/v1/devices/kettle/{name}?format=raw", token=alice)
    assert r.status == 200 and r.body == raw
    assert r.header(b"content-type").startswith(b"text/plain")


@pytest_twisted.ensureDeferred
async def test_long_variable_name_is_truncated_to_12():
    h, alice, session = await setup()
    r = await h.call("GET", f"/v1/devices/{D1}/temperature_sensor", token=alice)
    assert r.status == 200 and r.json["name"] == "temperature_" and r.json["result"] == -4
    assert session.calls == [("read", "temperature_")]


@pytest.mark.parametrize("name", ["nope", "tempXXXXXXXXXXXXX", "Temp"])
@pytest_twisted.ensureDeferred
async def test_unknown_variable_is_400(name):
    h, alice, session = await setup()
    r = await h.call("GET", f"/v1/devices/{D1}/{name}", token=alice)
    assert_error(r, 400, "Variable not found")
    assert session.calls == []


@pytest_twisted.ensureDeferred
async def test_variable_of_offline_device_is_404():
    h, alice, _ = await setup()
    h.registry.drop(D1)
    assert_error(await h.call("GET", f"/v1/devices/{D1}/temp", token=alice), 404)


@pytest_twisted.ensureDeferred
async def test_a_name_missing_from_a_partial_describe_waits_for_the_rest():
    """A Photon's first Describe part may name only some functions (§8.1): a
    name not seen yet is looked up again once the final Describe is in."""
    h, alice, session = await setup()
    session.final = defer.Deferred()
    d = h.start("POST", f"/v1/devices/{D1}/late", token=alice, form={"arg": "xy"})
    assert not h.answered(d)
    session.functions += ("late",)
    session.final.callback({"functions": list(session.functions), "variables": VARS})
    r = await h.finish(d)
    assert r.status == 200 and r.json["return_value"] == 2
    assert session.calls == [("call", "late", b"xy")]


@pytest_twisted.ensureDeferred
async def test_a_variable_the_final_describe_lacks_is_400_and_the_wait_is_bounded():
    h, alice, session = await setup(request_timeout=5)
    session.final = defer.Deferred()
    d = h.start("GET", f"/v1/devices/{D1}/late", token=alice)
    assert not h.answered(d)
    session.final.callback({"functions": list(session.functions), "variables": VARS})
    assert_error(await h.finish(d), 400, "Variable not found")
    session.final = defer.Deferred()  # the rest never comes
    d = h.start("GET", f"/v1/devices/{D1}/late", token=alice)
    h.clock.advance(4.9)
    assert not h.answered(d)
    h.clock.advance(0.1)
    assert_error(await h.finish(d), 408, "Timed out.")
    assert session.calls == []


@pytest_twisted.ensureDeferred
async def test_silent_device_gives_408_at_the_request_timeout_and_cancels():
    h, alice, session = await setup(request_timeout=5)
    session.mode = "hang"
    d = h.start("GET", f"/v1/devices/{D1}/temp", token=alice)
    h.clock.advance(4.9)
    assert not h.answered(d)
    h.clock.advance(0.1)
    r = await h.finish(d)
    assert_error(r, 408, "Timed out.")
    assert session.cancelled == 1


@pytest_twisted.ensureDeferred
async def test_device_going_offline_mid_request_is_404():
    h, alice, session = await setup()
    session.mode = "hang"
    d = h.start("GET", f"/v1/devices/{D1}/temp", token=alice)
    h.registry.drop(D1)
    assert_error(await h.finish(d), 404)


@pytest.mark.parametrize(
    "exc,status,error",
    [
        (DeviceTimeout("x"), 408, "Timed out."),
        (DeviceBusy("x"), 409, "Device is being updated"),
        (DeviceRequestFailed("x"), 400, None),
        (RuntimeError("boom"), 500, "server_error"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_session_failures_map_to_statuses(exc, status, error):
    h, alice, session = await setup()
    session.mode = exc
    assert_error(await h.call("GET", f"/v1/devices/{D1}/temp", token=alice), status, error)
    assert_error(
        await h.call("POST", f"/v1/devices/{D1}/brew", token=alice, form={"arg": "x"}),
        status,
        error,
    )


@pytest_twisted.ensureDeferred
async def test_empty_describe_cache_asks_the_device_once():
    h, alice, session = await setup()
    session.variables, session.functions = {}, ()

    def describe():
        session.calls.append(("describe",))
        from twisted.internet import defer

        return defer.succeed({"variables": {"temp": "int32"}, "functions": []})

    session.describe = describe
    r = await h.call("GET", f"/v1/devices/{D1}/temp", token=alice)
    assert r.status == 200 and session.calls == [("describe",), ("read", "temp")]


# -- functions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"form": {"arg": "on"}}, b"on"),
        ({"form": {"args": "202,230"}}, b"202,230"),
        ({"form": {"params": "old"}}, b"old"),
        ({"json_body": {"arg": "json"}}, b"json"),
        ({"json_body": {"args": 17}}, b"17"),
        ({"form": {"arg": "", "args": "second"}}, b""),
        ({}, b""),
    ],
)
@pytest_twisted.ensureDeferred
async def test_call_function_argument_sources(kwargs, argument):
    h, alice, session = await setup()
    session.handlers["brew"] = lambda a: 42
    r = await h.call("POST", f"/v1/devices/{D1}/brew", token=alice, **kwargs)
    assert r.status == 200
    assert r.json == {
        "id": D1,
        "name": "kettle",
        "last_app": None,
        "connected": True,
        "return_value": 42,
    }
    assert session.calls == [("call", "brew", argument)]


@pytest_twisted.ensureDeferred
async def test_function_name_truncated_to_12_and_negative_return():
    h, alice, session = await setup()
    session.handlers["someFunction"] = lambda a: -7
    r = await h.call("POST", f"/v1/devices/{D1}/someFunction1", token=alice, form={"arg": "a"})
    assert r.json["return_value"] == -7
    assert session.calls == [("call", "someFunction", b"a")]


@pytest.mark.parametrize("name", ["nope", "Brew", "brewing_machine"])
@pytest_twisted.ensureDeferred
async def test_unknown_function_is_400(name):
    h, alice, session = await setup()
    r = await h.call("POST", f"/v1/devices/{D1}/{name}", token=alice, form={"arg": "x"})
    assert_error(r, 400, "Function not found")
    assert session.calls == []


@pytest.mark.parametrize(
    "platform,settings,ok_len,limit",
    [
        (0, {}, 63, 63),
        (None, {}, 63, 63),
        (1, {}, 63, 63),  # platform ids < 2 are Core-class (platforms.py): the session agrees
        (6, {}, 622, 622),
        (6, {"max_function_argument": 10}, 10, 10),
    ],
)
@pytest_twisted.ensureDeferred
async def test_argument_limit(platform, settings, ok_len, limit):
    h, alice, session = await setup(**settings)
    session.platform_id = platform
    ok = await h.call("POST", f"/v1/devices/{D1}/brew", token=alice, form={"arg": "x" * ok_len})
    assert ok.status == 200
    r = await h.call("POST", f"/v1/devices/{D1}/brew", token=alice, form={"arg": "x" * (limit + 1)})
    assert_error(r, 400, "Argument too long")
    assert len(session.calls) == 1


@pytest_twisted.ensureDeferred
async def test_argument_limit_counts_utf8_bytes():
    h, alice, session = await setup()
    session.platform_id = 0
    r = await h.call("POST", f"/v1/devices/{D1}/brew", token=alice, form={"arg": "é" * 32})
    assert_error(r, 400, "Argument too long")


@pytest_twisted.ensureDeferred
async def test_function_offline_404_and_timeout_408():
    h, alice, session = await setup()
    session.mode = "hang"
    d = h.start("POST", f"/v1/devices/{D1}/brew", token=alice, form={"arg": "x"})
    h.clock.advance(30)
    assert_error(await h.finish(d), 408, "Timed out.")
    h.registry.drop(D1)
    r = await h.call("POST", f"/v1/devices/{D1}/brew", token=alice, form={"arg": "x"})
    assert_error(r, 404)


# -- ping ---------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ping_online_offline_and_silent():
    h, alice, session = await setup(request_timeout=2)
    r = await h.call("PUT", f"/v1/devices/{D1}/ping", token=alice)
    assert r.json == {"online": True, "ok": True}
    session.mode = "hang"
    d = h.start("PUT", f"/v1/devices/{D1}/ping", token=alice)
    h.clock.advance(2)
    assert (await h.finish(d)).json == {"online": False, "ok": True}
    h.registry.drop(D1)
    r = await h.call("PUT", f"/v1/devices/{D1}/ping", token=alice)
    assert r.json == {"online": False, "ok": True}


# -- provisioning ----------------------------------------------------------------------------


def device_pem(n=1):
    return (KEYS / f"device-{n}.pub.pem").read_text()


@pytest.mark.parametrize("encoding", ["pem", "pkcs1", "der-b64"])
@pytest_twisted.ensureDeferred
async def test_provision_key_takes_ownership_of_unowned_device(encoding):
    h, alice, _ = await setup()
    key = RSA.import_key(device_pem())
    text = {
        "pem": device_pem(),
        "pkcs1": PEM.encode(DerSequence([key.n, key.e]).encode(), "RSA PUBLIC KEY"),
        "der-b64": base64.b64encode(key.export_key("DER")).decode(),
    }[encoding]
    r = await h.call(
        "POST",
        f"/v1/provisioning/{device_id(9)}",
        token=alice,
        form={"publicKey": text, "algorithm": "rsa", "order": "manual_1", "filename": "cli"},
    )
    assert r.status == 200 and r.json == {"ok": True, "id": device_id(9)}
    record = await h.store.get_device(device_id(9))
    assert record.owner == "alice" and record.public_key == key.export_key("DER")


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"publicKey": "garbage"},
        {"publicKey": (KEYS / "server.pub.pem").read_text()},  # RSA-2048
        {"publicKey": (KEYS / "device-1.pem").read_text()},  # private key
        {"publicKey": (KEYS / "ec-p256.pub.pem").read_text(), "algorithm": "rsa"},
        {"publicKey": (KEYS / "device-1.pub.pem").read_text(), "algorithm": "ecc"},
        {"publicKey": (KEYS / "device-1.pub.pem").read_text(), "algorithm": "dsa"},
    ],
)
@pytest_twisted.ensureDeferred
async def test_provision_bad_key_is_400(form):
    h, alice, _ = await setup()
    r = await h.call("POST", f"/v1/provisioning/{device_id(9)}", token=alice, form=form)
    assert_error(r, 400)
    assert await h.store.get_device(device_id(9)) is None


@pytest.mark.parametrize(
    ("key_file", "algorithm"),
    [("ec-p256.pub.pem", "ecc"), ("ec-p256.pub.pem", None), ("ec-p256.pem", "ecc")],
)
@pytest_twisted.ensureDeferred
async def test_provision_gen3_ec_key(key_file, algorithm):
    """API.md §4: ``ecc`` keys (inferred when no algorithm is given); of a private key
    only the public half is stored."""
    h, alice, _ = await setup()
    form = {"publicKey": (KEYS / key_file).read_text()}
    if algorithm:
        form["algorithm"] = algorithm
    r = await h.call("POST", f"/v1/provisioning/{device_id(9)}", token=alice, form=form)
    assert r.status == 200 and r.json == {"ok": True, "id": device_id(9)}
    record = await h.store.get_device(device_id(9))
    expected = base64.b64decode(
        b"".join((KEYS / "ec-p256.pub.pem").read_bytes().splitlines()[1:-1])
    )
    assert record.owner == "alice" and record.public_key == expected


@pytest_twisted.ensureDeferred
async def test_provision_says_what_key_it_found():
    h, alice, _ = await setup()
    form = {"publicKey": (KEYS / "device-1.pub.pem").read_text(), "algorithm": "ecc"}
    r = await h.call("POST", f"/v1/provisioning/{device_id(9)}", token=alice, form=form)
    assert_error(r, 400)
    assert "expected an EC P-256 key, found an RSA-1024 public key" in r.json["error_description"]


@pytest_twisted.ensureDeferred
async def test_provision_someone_elses_device_is_403_admin_may():
    h, _, _ = await setup()
    bob = await h.user("bob")
    form = {"publicKey": device_pem(2)}
    assert_error(await h.call("POST", f"/v1/provisioning/{D1}", token=bob, form=form), 403)
    root = await h.user("root", admin=True)
    assert (await h.call("POST", f"/v1/provisioning/{D1}", token=root, form=form)).status == 200
    assert (await h.store.get_device(D1)).owner == "alice"  # the admin did not take it


@pytest_twisted.ensureDeferred
async def test_provision_bad_device_id_is_400():
    h, alice, _ = await setup()
    r = await h.call("POST", "/v1/provisioning/xyz", token=alice, form={"publicKey": device_pem()})
    assert_error(r, 400)
