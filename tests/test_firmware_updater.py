"""FirmwareUpdater on a Clock (session over an in-memory pump), its domain errors and
their answers, and the image store."""

from __future__ import annotations

import pytest
from device_fixtures import CORE_ID, DEVICE_KEYS, Server, failure_of, result

from twisted_spark import errors
from twisted_spark.config import Settings
from twisted_spark.errors import DeviceBusy
from twisted_spark.events.bus import EventBus
from twisted_spark.firmware import FirmwareUpdater, FlashOptions
from twisted_spark.firmware.compiler import render_command, safe_filename
from twisted_spark.firmware.images import ImageStore
from twisted_spark.models import DeviceRecord, Event
from twisted_spark.sim.device import OtaFaults


def setup(tmp_path, options=None, **device_kw):
    s = Server(Settings(data_dir=tmp_path))
    s.register(CORE_ID, key=DEVICE_KEYS[0], owner="alice")
    device = s.device(CORE_ID, DEVICE_KEYS[0], **device_kw)
    _proto, pump = s.connect(device)
    bus = EventBus()
    statuses = []
    bus.subscribe("spark/flash/status", lambda e: statuses.append(e))
    hook = FirmwareUpdater(
        s.settings,
        bus,
        s.registry,
        clock=s.clock,
        reactor=s.clock,
        options=options,
        images=ImageStore(tmp_path / "firmware"),
    )
    record = DeviceRecord(CORE_ID, owner="alice")
    return s, device, s.registry.get(CORE_ID), pump, hook, record, statuses, bus


def flash(hook, record, data, pump):
    d = hook.flash(record, image=data)
    pump.flush()
    return d


def test_success_shape_events_and_unlock(tmp_path):
    s, device, session, pump, hook, record, statuses, _ = setup(tmp_path)
    d = flash(hook, record, b"A" * 3000, pump)
    image_id = result(d)
    assert device.firmware.rstrip(b"\x00") == b"A" * 3000
    assert [(e.name, e.data, e.coreid, e.public, e.owner) for e in statuses] == [
        ("spark/flash/status", "started", CORE_ID, False, "alice"),
        ("spark/flash/status", "success", CORE_ID, False, "alice"),
    ]
    assert not session.busy and session._update_handler is None and hook.active == {}
    assert (tmp_path / "firmware" / f"{image_id}.bin").read_bytes() == b"A" * 3000


def test_timeout_is_408_and_unlocks(tmp_path):
    options = FlashOptions(chunk_timeout=15)
    s, device, session, pump, hook, record, statuses, _ = setup(
        tmp_path, options, ota_faults=OtaFaults(silent_after=2)
    )
    d = flash(hook, record, b"B" * 3000, pump)
    assert session.busy
    # Other calls are refused while flashing (→ 409 in the API).
    assert isinstance(failure_of(session.read_variable("temperature")).value, DeviceBusy)
    assert isinstance(failure_of(flash(hook, record, b"again", pump)).value, DeviceBusy)
    s.clock.advance(15)
    error = failure_of(d).value
    assert isinstance(error, errors.UpdateFailed) and error.timeout
    assert error.image_id and "did not answer" in str(error)
    assert not session.busy and hook.active == {}
    assert [e.data for e in statuses] == ["started", "failed"]


def test_disconnect_aborts_via_registry_and_unlocks(tmp_path):
    s, device, session, pump, hook, record, statuses, _ = setup(
        tmp_path, ota_faults=OtaFaults(silent_after=2)
    )
    d = flash(hook, record, b"C" * 3000, pump)
    assert session.busy
    session.disconnect("test")  # no pending request is needed to notice
    pump.flush()
    error = failure_of(d).value
    assert isinstance(error, errors.UpdateFailed) and not error.timeout
    assert "disconnected" in str(error)
    assert not session.busy


def test_announced_limits_are_used(tmp_path):
    s, device, session, pump, hook, record, statuses, bus = setup(tmp_path)
    for name, value in (("max_binary", "2000"), ("ota_chunk_size", "128")):
        bus.publish(Event(f"spark/hardware/{name}", value, 60, 0.0, CORE_ID, False, "alice"))
    error = failure_of(flash(hook, record, b"D" * 2001, pump)).value
    assert isinstance(error, errors.FirmwareTooLarge) and "at most 2000" in str(error)
    assert error.image_id
    assert device.ota_stats == {} and statuses == []
    assert result(flash(hook, record, b"D" * 2000, pump))
    assert hook.last_summary["chunk_size"] == 128


def test_empty_file_and_offline(tmp_path):
    s, device, session, pump, hook, record, statuses, _ = setup(tmp_path)
    empty = failure_of(flash(hook, record, b"", pump)).value
    assert isinstance(empty, errors.EmptyFirmware) and empty.image_id is None
    other = DeviceRecord("0123456789abcdef01234567", owner="alice")
    error = failure_of(flash(hook, other, b"x", pump)).value
    assert isinstance(error, errors.FirmwareDeviceOffline) and error.image_id
    assert str(error) == "Device is not connected."
    no_compiler = failure_of(hook.flash(record, sources=[("app.cpp", b"")])).value
    assert isinstance(no_compiler, errors.NoCompiler)


def test_close_stops_listening(tmp_path):
    s, device, session, pump, hook, record, statuses, bus = setup(tmp_path)
    hook.close()
    bus.publish(Event("spark/hardware/max_binary", "5", 60, 0.0, CORE_ID, False))
    assert hook.hardware == {}


# -- images ------------------------------------------------------------------------------


def stored(directory):
    """The ids of the image files in ``directory``, oldest first."""
    files = sorted(directory.glob("*.bin"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [p.stem for p in files]


def test_image_store_caps_count_and_size(tmp_path):
    store = ImageStore(tmp_path, max_count=3, max_bytes=1000)
    ids = [result(store.put(bytes([i]) * 100)) for i in range(5)]
    assert stored(tmp_path) == ids[-3:]
    assert result(store.get(ids[-1])) == bytes([4]) * 100
    assert result(store.get(ids[0])) is None
    big = result(store.put(b"x" * 950))
    assert stored(tmp_path) == [big]  # the newest is always kept
    assert result(store.get("../etc/passwd")) is None
    assert len(big) == 24 and (tmp_path / f"{big}.bin").stat().st_mode & 0o777 == 0o600


# -- compiler helpers --------------------------------------------------------------------


def test_render_command_quotes_and_platforms():
    cmd = render_command("make APPDIR={src} OUT={out} PLATFORM={platform}", "/a b", "/o", 6)
    assert cmd == "make APPDIR='/a b' OUT=/o PLATFORM=photon"
    with pytest.raises(ValueError):
        render_command("make {nope}", "s", "o")


def test_safe_filenames():
    taken = set()
    assert safe_filename("../../etc/passwd", taken) == "passwd"
    assert safe_filename("dir\\app.cpp", taken) == "app.cpp"
    assert safe_filename("app.cpp", taken) == "2-app.cpp"
    assert safe_filename(".hidden", taken) == "hidden"
    assert safe_filename("", taken) == "source.cpp"


def test_safe_filenames_stay_within_255_bytes_keeping_the_extension():
    taken = set()
    long_name = "x" * 251 + ".cpp"
    assert safe_filename(long_name, taken) == long_name
    second = safe_filename(long_name, taken)
    assert len(second) == 255 and second.startswith("2-x") and second.endswith("x.cpp")
    assert safe_filename("é" * 100 + ".h", taken) == "_" * 100 + ".h"


def test_compiler_refuses_a_file_name_over_255_bytes_before_any_work(tmp_path):
    from twisted.internet.task import Clock

    from twisted_spark.firmware.compiler import Compiler, FileNameTooLong

    compiler = Compiler("true {src} {out}", 5, Clock(), temp_root=str(tmp_path / "compile"))
    d = compiler.compile([("ok.cpp", b""), ("ü" * 128, b"")])
    failure = []
    d.addErrback(failure.append)
    assert failure and failure[0].check(FileNameTooLong)
    assert "256 bytes" in str(failure[0].value)
    assert not (tmp_path / "compile").exists()


# -- the API's answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (errors.EmptyFirmware("The firmware file is empty."), 400,
         {"error": "Empty firmware", "errors": ["The firmware file is empty."]}),
        (errors.NoCompiler("Compilation is not configured on this server"), 400,
         {"error": "Not Implemented"}),
        (errors.BadFileName("too long"), 400, {"error": "invalid_request", "errors": ["too long"]}),
        (errors.CompileFailed("exit 2", "make: ***"), 400,
         {"error": "Compile error", "errors": ["Compile error"], "output": "make: ***"}),
        (errors.FirmwareDeviceOffline("Device is not connected.", "ab" * 12), 404,
         {"error": "Device is not connected", "errors": ["Device is not connected."],
          "firmware_binary_id": "ab" * 12}),
        (errors.FirmwareTooLarge("too big", "cd" * 12), 400,
         {"error": "Firmware too large", "error_description": "too big",
          "firmware_binary_id": "cd" * 12}),
        (errors.UpdateFailed("silent", "ef" * 12, timeout=True), 408,
         {"error": "Update failed", "errors": ["silent"], "firmware_binary_id": "ef" * 12}),
        (errors.UpdateFailed("refused", "ef" * 12), 500, {"error": "Update failed"}),
    ],
)
def test_the_api_answers_each_firmware_error(error, status, body):
    """The updater raises domain errors; api/errors.py alone turns them into
    the JSON bodies of API.md §4."""
    from twisted_spark.api.errors import api_error_for

    answer = api_error_for(error)
    assert answer.status == status
    full = answer.body()
    assert full["ok"] is False and full["error_description"] == str(error)
    assert {key: full[key] for key in body} == body
