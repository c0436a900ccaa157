"""The OTA flasher over a real DeviceSession, an in-memory pump and a Clock,
against the virtual device's OTA receiver (classic, fast, faults)."""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest
from device_fixtures import CORE_ID, DEVICE_KEYS, PHOTON_ID, Server, failure_of, result

from twisted_spark.coap import messages
from twisted_spark.firmware.flasher import (
    CORE_CHUNK,
    PHOTON_CHUNK,
    Flasher,
    FlashError,
    FlashOptions,
    chunk_size_for,
    crc32,
    max_binary_for,
    split,
)
from twisted_spark.sim.device import OtaFaults


def online(platform="core", **device_kw):
    s = Server()
    device_id = CORE_ID if platform == "core" else PHOTON_ID
    key = DEVICE_KEYS[0] if platform == "core" else DEVICE_KEYS[1]
    s.register(device_id, key=key)
    device = s.device(device_id, key, platform=platform, **device_kw)
    _proto, pump = s.connect(device)
    assert device.online.called
    return s, device, s.registry.get(device_id), pump


def start(s, session, image, pump, options=None, **kw):
    flasher = Flasher(session, image, s.clock, options or FlashOptions(), **kw)
    session.set_update_handler(flasher.message_received)
    d = flasher.run()
    pump.flush()
    return flasher, d


def padded(image, size):
    return image + b"\x00" * (-len(image) % size)


IMAGE = os.urandom(10_000)


# -- pure helpers -------------------------------------------------------------------


def test_split_pads_the_last_chunk_with_zeros():
    chunks = split(b"abcdefghij", 4)
    assert chunks == [b"abcd", b"efgh", b"ij\x00\x00"]
    assert split(b"abcdefgh", 4) == [b"abcd", b"efgh"]


def test_crc_is_zlib_crc32_unsigned():
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"\xff" * 64) == zlib.crc32(b"\xff" * 64) & 0xFFFFFFFF


def test_chunk_size_and_limits_by_platform():
    _s, _d, core, _p = online("core")
    _s, _d, photon, _p = online("photon")
    assert chunk_size_for(core) == CORE_CHUNK
    assert chunk_size_for(photon) == PHOTON_CHUNK
    assert chunk_size_for(photon, announced=768) <= photon.buffer_size - 32
    assert chunk_size_for(core, announced=4096) == 594
    assert max_binary_for(core) == 108_000
    assert max_binary_for(photon) == 384_000
    assert max_binary_for(photon, 131072) == 131072


def test_chunk_encoding_classic_and_fast():
    data = b"\x01" * 8
    head = bytes.fromhex("41021234 07 b163 44") + crc32(data).to_bytes(4, "big")
    assert messages.chunk(0x1234, 7, crc32(data), data) == head + b"\xff" + data
    fast = messages.chunk(0x1234, 7, crc32(data), data, 3)
    assert fast == head + b"\x02\x00\x03" + b"\xff" + data


# -- classic --------------------------------------------------------------------------


def test_core_classic_transfer_is_byte_exact_with_padding():
    s, device, session, pump = online("core")
    flasher, d = start(s, session, IMAGE, pump)
    summary = result(d)
    assert summary["mode"] == "classic"
    assert summary["chunks"] == -(-len(IMAGE) // CORE_CHUNK)
    # A Core writes the zero-padded last chunk; the image is a prefix.
    assert device.firmware == padded(IMAGE, CORE_CHUNK)
    assert device.ota_stats["bad_crc"] == 0  # no index option was ever sent to the Core
    assert result(device.ota_done) == device.firmware


def test_photon_classic_when_fast_is_declined():
    s, device, session, pump = online("photon", fast_ota=False)
    _flasher, d = start(s, session, IMAGE, pump)
    assert result(d)["mode"] == "classic"
    assert device.firmware == IMAGE


def test_fast_not_offered_when_disabled():
    s, device, session, pump = online("photon")
    _flasher, d = start(s, session, IMAGE, pump, FlashOptions(fast=False))
    assert result(d)["mode"] == "classic"
    assert device.firmware == IMAGE


def test_crc_mismatch_resends_the_same_chunk():
    s, device, session, pump = online("core", ota_faults=OtaFaults(corrupt={3: 1, 7: 2}))
    flasher, d = start(s, session, IMAGE, pump)
    summary = result(d)
    assert summary["resent"] == 3
    assert flasher.bad_crc == 3
    assert device.firmware == padded(IMAGE, CORE_CHUNK)


def test_too_many_crc_failures_give_up():
    s, device, session, pump = online("core", ota_faults=OtaFaults(corrupt={2: 100}))
    _flasher, d = start(s, session, IMAGE, pump, FlashOptions(max_bad_crc=4))
    error = failure_of(d).value
    assert isinstance(error, FlashError) and not error.timeout
    assert "CRC" in str(error)
    assert device.ota_stats["bad_crc"] == 5


def test_chunk_missed_rewinds_to_the_named_index():
    faults = OtaFaults(flash_fail={9: 4, 20: 16})
    s, device, session, pump = online("core", ota_faults=faults)
    flasher, d = start(s, session, IMAGE, pump)
    summary = result(d)
    assert flasher.chunk_missed == 2
    assert summary["resent"] == (9 - 4 + 1) + (20 - 16 + 1) - 2 + 2  # every chunk sent again
    assert device.firmware == padded(IMAGE, CORE_CHUNK)


def test_too_many_chunk_missed_give_up():
    faults = OtaFaults(flash_fail={i: i for i in range(1, 30)})
    s, device, session, pump = online("core", ota_faults=faults)
    _flasher, d = start(s, session, IMAGE, pump, FlashOptions(max_chunk_missed=3))
    assert "missed chunks" in str(failure_of(d).value)


def test_core_periodic_chunk_missed_while_waiting_rewinds():
    # A Core that got no chunk for 3 s sends ChunkMissed(expected); the server rewinds.
    s, device, session, pump = online("core", ota_faults=OtaFaults(silent_after=5))
    flasher, d = start(s, session, IMAGE, pump)
    assert not d.called
    device.ota_faults.silent_after = None
    device.send(messages.chunk_missed(device._next_mid(), [5]))
    pump.flush()
    assert result(d)["resent"] == 1
    assert device.firmware == padded(IMAGE, CORE_CHUNK)


# -- fast -----------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["0.4.9", "1.5.2"])
def test_fast_transfer_is_byte_exact(style):
    s, device, session, pump = online("photon", fast_style=style)
    _flasher, d = start(s, session, IMAGE, pump, FlashOptions(fast_window=4))
    summary = result(d)
    assert summary["mode"] == "fast"
    assert summary["resent"] == 0
    assert device.firmware == IMAGE


def test_fast_missed_chunks_device_completes_itself():
    faults = OtaFaults(corrupt={0: 1, 5: 1, 19: 1})
    s, device, session, pump = online("photon", fast_style="0.4.9", ota_faults=faults)
    flasher, d = start(s, session, IMAGE, pump)
    summary = result(d)  # no clock advance: the device's own UpdateDone ends it
    assert summary["resent"] == 3
    assert flasher.device_done
    assert device.firmware == IMAGE


def test_fast_missed_chunks_server_sends_update_done_again():
    faults = OtaFaults(corrupt={2: 1, 11: 2})
    s, device, session, pump = online("photon", fast_style="1.5.2", ota_faults=faults)
    flasher, d = start(s, session, IMAGE, pump, FlashOptions(fast_quiet=5.0))
    assert not d.called  # waiting for more ChunkMissed
    s.clock.advance(5.0)
    pump.flush()
    assert not d.called  # chunk 11 was corrupted twice: another round
    s.clock.advance(5.0)
    pump.flush()
    summary = result(d)
    assert summary["resent"] == 3
    assert not flasher.device_done
    assert device.firmware == IMAGE


def test_fast_gives_up_after_rounds():
    faults = OtaFaults(reject_done=True)
    s, device, session, pump = online("photon", fast_style="1.5.2", ota_faults=faults)
    _flasher, d = start(s, session, IMAGE, pump, FlashOptions(max_done_rounds=2, fast_quiet=1))
    for _ in range(3):
        s.clock.advance(1)
        pump.flush()
    assert "misses chunks" in str(failure_of(d).value)


# -- refusal, timeouts, disconnects ---------------------------------------------------------


@pytest.mark.parametrize("code", [0x80, 0xA3])
def test_update_begin_refused(code):
    s, device, session, pump = online("photon", ota_faults=OtaFaults(refuse=code))
    flasher, d = start(s, session, IMAGE, pump)
    error = failure_of(d).value
    assert "refused" in str(error) and not error.timeout
    assert not flasher._deadline.active()
    assert device.ota_stats == {}  # no chunk was sent


def test_update_begin_retried_then_sent_without_payload():
    s, device, session, pump = online("photon", ota_faults=OtaFaults(ignore_begin=3))
    flasher, d = start(s, session, IMAGE, pump, FlashOptions(chunk_size=256))
    for _ in range(3):
        assert not d.called
        s.clock.advance(6.0)
        pump.flush()
    summary = result(d)
    # The last try has no payload: a Photon then uses 512-byte chunks, no fast OTA.
    assert summary["chunk_size"] == PHOTON_CHUNK and summary["mode"] == "classic"
    assert device.firmware == padded(IMAGE, PHOTON_CHUNK)


def test_update_begin_never_answered_times_out():
    s, device, session, pump = online("core", ota_faults=OtaFaults(ignore_begin=99))
    _flasher, d = start(s, session, IMAGE, pump, FlashOptions(begin_last_wait=0))
    for _ in range(2):
        s.clock.advance(6.0)
        assert not d.called
    s.clock.advance(6.0)
    error = failure_of(d).value
    assert error.timeout and "did not accept" in str(error)


def test_silent_device_mid_transfer_times_out():
    s, device, session, pump = online("core", ota_faults=OtaFaults(silent_after=10))
    _flasher, d = start(s, session, IMAGE, pump, FlashOptions(chunk_timeout=15))
    s.clock.advance(14.9)
    assert not d.called
    s.clock.advance(0.2)
    error = failure_of(d).value
    assert error.timeout and "chunk 10" in str(error)


def test_whole_transfer_deadline():
    s, device, session, pump = online("photon", fast_style="1.5.2")
    device.ota_faults.silent_after = 0
    options = FlashOptions(transfer_timeout=20, done_timeout=60, fast_window=1000)
    _flasher, d = start(s, session, IMAGE, pump, options)
    s.clock.advance(20)
    error = failure_of(d).value
    assert error.timeout and "within 20 seconds" in str(error)


@pytest.mark.parametrize("platform", ["core", "photon"])
def test_disconnect_mid_transfer_fails(platform):
    s, device, session, pump = online(platform, ota_faults=OtaFaults(disconnect_after=12))
    _flasher, d = start(s, session, IMAGE, pump, FlashOptions(fast_window=8))
    pump.flush()
    error = failure_of(d).value
    assert "disconnected" in str(error)
    assert not session.connected


def test_abort_stops_a_waiting_transfer():
    s, device, session, pump = online("core", ota_faults=OtaFaults(silent_after=3))
    flasher, d = start(s, session, IMAGE, pump)
    flasher.abort(FlashError("stop now"))
    assert str(failure_of(d).value) == "stop now"


# -- the wire, pinned --------------------------------------------------------------------


def _fixed_random():
    counter = [0]

    def random_bytes(n):
        counter[0] += 1
        return hashlib.sha256(str(counter[0]).encode()).digest()[:n].ljust(n, b"x")

    return random_bytes


@pytest.mark.parametrize(
    ("platform", "faults", "device_kw", "mode", "digest", "count"),
    [
        ("core", {"corrupt": {3: 1}, "flash_fail": {20: 16}}, {}, "classic",
         "fad0dd49fb75ba82", 55),
        ("photon", {"corrupt": {5: 1, 30: 2}}, {"fast_style": "1.5.2"}, "fast",
         "cfdaf709e38d54e0", 35),
        ("photon", {"corrupt": {5: 1}}, {"fast_style": "0.4.9"}, "fast", "ce83c5a6c638dc31", 33),
        ("photon", {"ignore_begin": 2}, {}, "fast", "eb30c563b52f82f6", 33),
        ("photon", {}, {"fast_ota": False}, "classic", "6369529792c8ee02", 28),
    ],
)
def test_ota_wire_bytes_are_pinned(monkeypatch, platform, faults, device_kw, mode, digest, count):
    """Every CoAP message the server sends during a transfer (and a call right
    after it), byte for byte, as recorded before the flasher moved onto the
    session's channel (token reservation, acknowledgements in the session)."""
    from twisted_spark.device.protocol import DeviceProtocol

    sent = []
    original = DeviceProtocol.send_coap

    def recording(self, coap):
        sent.append(bytes(coap))
        return original(self, coap)

    monkeypatch.setattr(DeviceProtocol, "send_coap", recording)
    s = Server(random_bytes=_fixed_random())
    device_id = CORE_ID if platform == "core" else PHOTON_ID
    key = DEVICE_KEYS[0] if platform == "core" else DEVICE_KEYS[1]
    s.register(device_id, key=key)
    device = s.device(device_id, key, platform=platform, ota_faults=OtaFaults(**faults),
                      **device_kw)
    _proto, pump = s.connect(device)
    session = s.registry.get(device_id)
    for _ in range(3):  # calls before the transfer move the counters
        session.ping()
        pump.flush()
    image = bytes(range(256)) * 40 + b"tail"
    _flasher, d = start(s, session, image, pump, FlashOptions(fast_window=8, fast_quiet=1))
    for _ in range(200):
        if d.called:
            break
        s.clock.advance(1)
        pump.flush()
    assert result(d)["mode"] == mode
    after = session.signal(True)
    pump.flush()
    assert result(after) is True
    assert (hashlib.sha256(b"|".join(sent)).hexdigest()[:16], len(sent)) == (digest, count)
