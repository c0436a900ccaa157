"""DeviceSession with a VirtualDevice over an in-memory pump and a Clock."""

from __future__ import annotations

import pytest
from device_fixtures import CORE_ID, DEVICE_KEYS, PHOTON_ID, Server, failure_of, result
from zope.interface.verify import verifyObject

from twisted_spark.config import Settings
from twisted_spark.errors import (
    ArgumentTooLong,
    DeviceBusy,
    DeviceNotConnected,
    DeviceTimeout,
    UnknownFunction,
    UnknownVariable,
)
from twisted_spark.interfaces import IDeviceSession
from twisted_spark.models import Event


def online(platform="core", settings=None, owner=None, **device_kw):
    s = Server(settings)
    device_id = CORE_ID if platform == "core" else PHOTON_ID
    key = DEVICE_KEYS[0] if platform == "core" else DEVICE_KEYS[1]
    s.register(device_id, key=key, owner=owner)
    device = s.device(device_id, key, platform=platform, **device_kw)
    proto, pump = s.connect(device)
    assert device.online.called
    return s, device, s.registry.get(device_id), pump


def run(pump, d):
    pump.flush()
    return d


def test_session_provides_interface():
    s, device, session, pump = online()
    assert verifyObject(IDeviceSession, session)


@pytest.mark.parametrize(
    "platform,style,separate",
    [
        ("core", "core", False),
        ("photon", "photon-0.4.9", False),
        ("photon", "photon-0.6", False),
        ("photon", "photon-separate", True),
    ],
)
def test_function_and_every_variable_type(platform, style, separate):
    s, device, session, pump = online(platform, describe_style=style, separate_variables=separate)
    d = session.describe()
    pump.flush()
    s.clock.advance(1.5)  # system parts wait a short grace for an application part
    pump.flush()
    desc = result(d)
    assert set(desc["functions"]) == {"brew", "negate"}
    assert desc["variables"] == {
        "ready": "bool",
        "temperature": "int32",
        "message": "string",
        "ratio": "double",
    }
    assert result(run(pump, session.call_function("brew", b"32,240"))) == 6
    assert result(run(pump, session.call_function("negate", "17"))) == -17
    assert device.calls[-1] == ("negate", b"17")
    assert result(run(pump, session.read_variable("ready"))) is True
    assert result(run(pump, session.read_variable("temperature"))) == -98765
    assert result(run(pump, session.read_variable("message"))) == "woot"
    assert result(run(pump, session.read_variable("ratio"))) == pytest.approx(-104.858)
    record = s.store._devices[session.device_id]
    assert set(record.functions) == {"brew", "negate"}


def test_empty_argument_is_sent_as_query():
    s, device, session, pump = online()
    assert result(run(pump, session.call_function("brew", b""))) == 0
    assert device.calls == [("brew", b"")]


def test_describe_is_cached_and_invalidated():
    s, device, session, pump = online()
    result(run(pump, session.describe()))
    device.functions["new"] = lambda a: 1
    assert "new" not in result(run(pump, session.describe()))["functions"]
    session.invalidate_describe()
    assert "new" in result(run(pump, session.describe()))["functions"]


def test_concurrent_describes_share_one_request():
    s, device, session, pump = online()
    d1, d2 = session.describe(), session.describe()
    assert len(session._pending) == 1
    pump.flush()
    assert result(d1) is result(d2)


def test_unknown_function_variable_and_long_argument():
    s, device, session, pump = online()
    assert failure_of(run(pump, session.call_function("nope", b""))).check(UnknownFunction)
    assert failure_of(run(pump, session.read_variable("nope"))).check(UnknownVariable)
    d = run(pump, session.call_function("brew", b"x" * 64))
    assert failure_of(d).check(ArgumentTooLong)
    assert result(run(pump, session.call_function("brew", b"x" * 63))) == 63


def test_variable_unknown_to_device_maps_to_unknown_variable():
    s, device, session, pump = online()
    result(run(pump, session.describe()))
    del device.variables["message"]
    assert failure_of(run(pump, session.read_variable("message"))).check(UnknownVariable)


def test_signal_start_stop():
    s, device, session, pump = online()
    assert result(run(pump, session.signal(True))) is True and device.signalling
    assert result(run(pump, session.signal(False))) is True and not device.signalling


def test_pings_both_ways_and_time():
    s, device, session, pump = online()
    assert result(run(pump, session.ping())) is True
    assert result(run(pump, device.ping())) is True
    assert result(run(pump, device.request_time())) == int(s.clock.seconds())


def test_request_timeout_fails_cleanly():
    s, device, session, pump = online(settings=Settings(request_timeout=5))
    result(run(pump, session.describe()))
    device.functions["brew"] = lambda a: 1
    # A device that never answers: drop what the server writes.
    device.dataReceived = lambda data: None
    d = run(pump, session.call_function("brew", b""))
    assert not d.called
    s.clock.advance(5.1)
    assert failure_of(d).check(DeviceTimeout)
    assert session._pending == {} and session._by_mid == {}


def test_cancelled_call_frees_its_token_and_timer_at_once():
    s, device, session, pump = online(settings=Settings(request_timeout=30))
    result(run(pump, session.describe()))
    device.dataReceived = lambda data: None  # the answer never comes
    timers = len(s.clock.getDelayedCalls())
    d = run(pump, session.read_variable("temperature"))
    assert len(session._pending) == 1 and len(s.clock.getDelayedCalls()) == timers + 1
    d.cancel()
    failure_of(d)
    assert session._pending == {} and session._by_mid == {}
    assert len(s.clock.getDelayedCalls()) == timers


def test_pending_requests_fail_on_disconnect():
    s, device, session, pump = online()
    result(run(pump, session.describe()))
    device.dataReceived = lambda data: None
    d1 = run(pump, session.call_function("brew", b""))
    d2 = run(pump, session.read_variable("ready"))
    d3 = session.ping()
    device.disconnect()
    pump.flush()
    for d in (d1, d2, d3):
        assert failure_of(d).check(DeviceNotConnected)
    assert s.registry.get(CORE_ID) is None
    assert failure_of(session.call_function("brew", b"")).check(DeviceNotConnected)
    assert s.clock.getDelayedCalls() == []


def test_busy_session_refuses_calls():
    s, device, session, pump = online()
    session.busy = True
    assert failure_of(session.call_function("brew", b"")).check(DeviceBusy)
    assert failure_of(session.read_variable("ready")).check(DeviceBusy)


def test_device_events_published_and_acknowledged():
    s, device, session, pump = online(owner=None)
    device.publish("motion-detected", None, ttl=60)
    device.publish("lake-depth/1", "28m", ttl=21600, private=True)
    device.publish("spark/cc3000-patch-version", "1.28")
    acked = device.publish("confirm", "x", confirmable=True)
    pump.flush()
    assert result(acked) is True
    events = [e for e in s.bus.events if e.name != "spark/status"]
    assert [(e.name, e.data, e.ttl, e.public) for e in events] == [
        ("motion-detected", None, 60, True),
        ("lake-depth/1", "28m", 21600, False),
        ("spark/cc3000-patch-version", "1.28", 60, False),
        ("confirm", "x", 60, True),
    ]
    assert all(e.coreid == CORE_ID and e.published_at == s.clock.seconds() for e in events)


def test_publish_rate_limit_sends_slowdown():
    s, device, session, pump = online(settings=Settings(device_publish_rate=1.0))
    acks = [device.publish(f"e{i}", confirmable=True) for i in range(5)]
    pump.flush()
    assert [result(a) for a in acks] == [True, True, True, True, False]
    assert len([e for e in s.bus.events if e.name.startswith("e")]) == 4


def test_subscriptions_recorded_and_refused_form():
    s, device, session, pump = online()
    assert result(run(pump, device.subscribe("motion/open", my_devices=True))) is True
    assert result(run(pump, device.subscribe(None, device_id=PHOTON_ID))) is True
    assert result(run(pump, device.subscribe("weather"))) is True
    from twisted_spark.coap.codec import encode_message

    mid = device._next_mid()
    d = device._expect(mid)
    device.send(encode_message(0, 1, mid, b"", ((11, b"e"),)))  # no prefix, no scope
    pump.flush()
    assert result(d) is False
    assert session.subscriptions == [
        ("motion/open", True, None),
        ("", False, PHOTON_ID),
        ("weather", False, None),
    ]


def test_send_event_and_buffer_limit():
    s, device, session, pump = online()
    event = Event("teapot-boiled", "208F", 60, 1.0, PHOTON_ID, True)
    assert session.send_event(event) is True
    assert session.send_event(Event("secret", None, 3600, 1.0, PHOTON_ID, False)) is True
    assert session.send_event(Event("big", "x" * 700, 60, 1.0, PHOTON_ID, True)) is False
    pump.flush()
    assert device.events == [("teapot-boiled", "208F", 60, False), ("secret", None, 3600, True)]
    # A Photon's buffer is larger (800 bytes).
    s2, device2, session2, pump2 = online("photon")
    assert session2.send_event(Event("big", "x" * 700, 60, 1.0, CORE_ID, True)) is True


@pytest.mark.parametrize("name,data", [("lone\ud800", "ok"), ("ok", "lone\udc00")])
def test_send_event_refuses_text_without_utf8_form(name, data):
    """Only the API refuses such events; if one slips through, delivery must not crash."""
    from twisted.logger import globalLogPublisher

    s, device, session, pump = online()
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        assert session.send_event(Event(name, data, 60, 1.0, PHOTON_ID, True)) is False
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert session.send_event(Event("fine", "data", 60, 1.0, PHOTON_ID, True)) is True
    pump.flush()
    assert device.events == [("fine", "data", 60, False)]
    [line] = [e for e in logged if e.get("device_id") == CORE_ID]
    assert "UTF-8" in line["log_format"] and line["log_level"].name == "warn"


def test_reconnect_replaces_old_session():
    s, device, session, pump = online()
    device2 = s.device()
    s.connect(device2)
    assert s.registry.get(CORE_ID) is not session
    assert not session.connected
    statuses = [e.data for e in s.bus.named("spark/status")]
    assert statuses == ["online", "offline", "online"]
    pump.flush()
    assert device.closed.called


def test_quick_reconnect_from_the_same_address_writes_no_attributes():
    """The handshake's record goes to the registry: nothing changed, nothing written."""
    s, device, session, pump = online()
    first = s.store._devices[CORE_ID]
    assert first.last_ip == "10.1.2.3" and first.last_heard == s.clock.seconds()
    s.clock.advance(10)
    s.connect(s.device())
    assert s.registry.get(CORE_ID) is not session
    assert s.store._devices[CORE_ID].last_heard == first.last_heard  # the replaced one's
    s.clock.advance(10)
    s.connect(s.device(), host="10.9.9.9")
    assert s.store._devices[CORE_ID].last_ip == "10.9.9.9"
    assert s.store._devices[CORE_ID].last_heard == s.clock.seconds()


def test_describe_on_connect_populates_functions():
    s = Server(describe_on_connect=True)
    s.register(CORE_ID)
    device = s.device()
    _, pump = s.connect(device)
    session = s.registry.get(CORE_ID)
    assert set(session.functions) == {"brew", "negate"}


# -- partial Describe: serve what is known at once (issue 9 item 16) ----------------------

SYSTEM = {"p": 6, "m": [{"s": 262144, "l": "m", "vc": 30, "vv": 30, "f": "s", "n": "1"}]}


def test_photon_merged_describe_answers_without_waiting_for_the_grace():
    """Photon 0.6 sends one ACK with f/v and the system part: no second part follows."""
    s = Server(describe_on_connect=True)
    s.register(PHOTON_ID, key=DEVICE_KEYS[1])
    device = s.device(PHOTON_ID, DEVICE_KEYS[1], platform="photon", describe_style="photon-0.6")
    _, pump = s.connect(device)
    pump.flush()
    session = s.registry.get(PHOTON_ID)
    assert session.variables["temperature"] == "int32"  # GET /v1/devices/:id shows them
    assert set(session.functions) == {"brew", "negate"}
    assert set(s.store._devices[PHOTON_ID].variables) == set(session.variables)
    # The first read goes out at once, no clock advance needed.
    assert result(run(pump, session.read_variable("temperature"))) == -98765
    assert result(run(pump, session.call_function("brew", b"ab"))) == 2


class PartWire:
    """A Photon online over a StringTransport; Describe parts are sent by hand."""

    def __init__(self):
        from test_device_protocol import Wire

        self.s = Server()
        self.s.register(PHOTON_ID, key=DEVICE_KEYS[1])
        self.w = Wire(self.s, PHOTON_ID, DEVICE_KEYS[1], photon=True)
        self.w.handshake()
        self.session = self.s.registry.get(PHOTON_ID)
        self.described = self.session.describe()
        (self.request,) = self.w.received()

    def part(self, description):
        from twisted_spark.coap import messages

        req = self.request
        self.w.feed(
            self.w.frame(messages.describe_response(req.message_id, req.token, description))
        )

    def answer_variable(self, request_msg, value):
        from twisted_spark.coap import messages

        self.w.feed(
            self.w.frame(
                messages.variable_value(
                    request_msg.message_id,
                    request_msg.token,
                    messages.encode_variable("string", value),
                )
            )
        )


def test_a_name_missing_from_the_first_part_waits_for_the_second():
    from twisted_spark.coap import messages

    p = PartWire()
    p.part({"f": ["brew"], "v": {"temperature": 2}, **SYSTEM})  # 0.4.9: system part first
    assert result(p.described)["variables"] == {"temperature": "int32"}
    late = p.session.read_variable("late")
    nope = p.session.call_function("nope", b"")
    assert not late.called and not nope.called
    assert p.w.received() == []  # nothing asked of the device yet
    p.part({"f": ["brew", "boil"], "v": {"late": 4}})  # the application part
    assert failure_of(nope).check(UnknownFunction)
    (request,) = p.w.received()
    assert messages.parse_variable_request(request) == "late"
    p.answer_variable(request, "woot")
    assert result(late) == "woot"
    assert p.session.functions == ("brew", "boil")
    record = p.s.store._devices[PHOTON_ID]
    assert set(record.functions) == {"brew", "boil"}
    assert set(record.variables) == {"temperature", "late"}


def test_a_name_never_described_fails_when_the_grace_ends():
    p = PartWire()
    p.part({"f": ["brew"], "v": {"temperature": 2}, **SYSTEM})
    missing = p.session.read_variable("missing")
    p.s.clock.advance(0.99)
    assert not missing.called
    p.s.clock.advance(0.02)
    assert failure_of(missing).check(UnknownVariable)
    assert p.session.variables == {"temperature": "int32"}
    assert p.session._pending == {}


def test_the_grace_is_a_timer_of_its_own_not_the_request_timer_moved_sooner():
    """A reactor moves a timer sooner by searching its whole timer heap (one
    keep-alive timer per idle device): the grace cancels the request's timer."""
    from twisted_spark.device.describe import DESCRIBE_GRACE

    p = PartWire()
    (pending,) = p.session._pending.values()
    request_timer = pending.timer
    p.part(SYSTEM)
    assert request_timer.cancelled
    assert pending.timer is not request_timer and pending.timer.active()
    assert pending.timer.getTime() == p.s.clock.seconds() + DESCRIBE_GRACE


def test_a_system_part_without_names_still_waits_for_the_application_part():
    p = PartWire()
    p.part(SYSTEM)
    assert not p.described.called and p.session.variables == {}
    p.part({"f": ["brew"], "v": {"temperature": 2}})
    assert result(p.described)["functions"] == ("brew",)


def test_disconnect_while_waiting_for_the_rest_fails_the_waiter_only():
    p = PartWire()
    p.part({"f": ["brew"], "v": {}, **SYSTEM})
    waiting = p.session.call_function("later", b"")
    p.w.proto.connectionLost(None)
    assert failure_of(waiting).check(DeviceNotConnected)
    assert result(p.described)["functions"] == ("brew",)


def test_a_system_part_with_empty_names_waits_too():
    """Photon 0.4.9's first part may carry empty f/v: nothing to serve yet."""
    p = PartWire()
    p.part({"f": [], "v": {}, **SYSTEM})
    assert not p.described.called
    p.part({"f": ["brew"], "v": {}})
    assert result(p.described)["functions"] == ("brew",)


@pytest.mark.parametrize(
    ("description", "variables"),
    [
        # An infinite type code: a string variable.
        (b'{"f":["brew"],"v":{"temperature":1e999}}', {"temperature": "string"}),
        # Nested past the recursion limit: ignored, like any unparsable part.
        (b'{"f":' + b"[" * 1500 + b"]" * 1500 + b"}", None),
    ],
    ids=["infinite-type", "deep-nesting"],
)
def test_a_hostile_describe_answer_leaves_the_connection_up(description, variables):
    """Confirmed through fuzz/targets/tcp_session.py: each closed the connection with an
    internal error (OverflowError, RecursionError) instead of being handled."""
    p = PartWire()
    p.part(description)
    assert p.session.connected
    if variables is None:
        assert not p.described.called
    else:
        assert result(p.described)["variables"] == variables


def test_a_core_describing_an_infinite_platform_keeps_its_platform():
    from test_device_protocol import Wire

    from twisted_spark.coap import messages

    s = Server()
    s.register(CORE_ID)
    wire = Wire(s, CORE_ID)
    wire.handshake()
    session = s.registry.get(CORE_ID)
    described = session.describe()
    (request,) = wire.received()
    wire.feed(wire.frame(messages.describe_response(
        request.message_id, request.token, b'{"f":["brew"],"v":{},"p":1e999}')))
    assert result(described)["functions"] == ("brew",)
    assert session.connected and session.platform_id == 0
