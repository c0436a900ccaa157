"""Validation of API publishes and the device publish token bucket."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from twisted_spark.events.publishing import InvalidEvent, api_event, parse_private, parse_ttl
from twisted_spark.events.rate_limit import TokenBucket
from twisted_spark.models import Event


def publish(name="temp", data=None, private=None, ttl=None, max_data=255):
    return api_event(name, data, private, ttl, owner="alice", now=12.5, max_data=max_data)


def test_defaults():
    assert publish() == Event("temp", None, 60, 12.5, "api", True, "alice")


def test_all_fields():
    assert publish("a/b c", "21.5", "TRUE", "3600") == Event(
        "a/b c", "21.5", 3600, 12.5, "api", False, "alice"
    )


@pytest.mark.parametrize(
    ("value", "private"),
    [(None, False), ("", False), ("true", True), ("True", True), ("TRUE", True), ("1", True),
     ("false", False), ("False", False), ("0", False), (" true ", True), (True, True),
     (False, False)],
)
def test_private_parsing(value, private):
    assert parse_private(value) is private


@pytest.mark.parametrize("value", ["yes", "no", "2", "t", "on"])
def test_private_garbage_refused(value):
    with pytest.raises(InvalidEvent, match="private") as info:
        parse_private(value)
    assert info.value.field == "private"


@pytest.mark.parametrize(
    ("value", "ttl"),
    [(None, 60), ("", 60), ("60", 60), ("1", 1), (" 30 ", 30), (120, 120), ("0", 60),
     ("-5", 60), ("16777215", 16777215)],
)
def test_ttl_parsing(value, ttl):
    assert parse_ttl(value) == ttl


@pytest.mark.parametrize("value", ["abc", "1.5", "1e3", "16777216", True, "0x10"])
def test_ttl_garbage_refused(value):
    with pytest.raises(InvalidEvent, match="ttl"):
        parse_ttl(value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "required"),
        ("", "required"),
        ("x" * 64, "at most 63"),
        ("é" * 32, "at most 63"),  # 64 bytes in UTF-8
        ("spark", "reserved"),
        ("spark/status", "reserved"),
        ("Spark/x", "reserved"),
        ("SPARKy", "reserved"),
        ("line\nbreak", "control"),
        ("cr\rhere", "control"),
        ("nul\x00", "control"),
        ("lone\ud800", "surrogate"),
        ("\udfffx", "surrogate"),
        (42, "string"),
    ],
)
def test_bad_names(name, message):
    with pytest.raises(InvalidEvent, match=message) as info:
        publish(name)
    assert isinstance(info.value, ValueError)
    assert info.value.field == "name"
    assert str(info.value).endswith(".")


@pytest.mark.parametrize("name", ["x", "x" * 63, "my/spark", "parky", "temp/room 1"])
def test_good_names(name):
    assert publish(name).name == name


def test_data_limits():
    assert publish(data="x" * 255).data == "x" * 255
    assert publish(data="").data is None
    with pytest.raises(InvalidEvent, match="at most 255 bytes"):
        publish(data="x" * 256)
    with pytest.raises(InvalidEvent, match="at most 10 bytes"):
        publish(data="é" * 6, max_data=10)  # 12 bytes
    with pytest.raises(InvalidEvent, match="NUL"):
        publish(data="a\x00b")
    with pytest.raises(InvalidEvent, match="surrogate"):
        publish(data="half a pair: \udc80")
    assert publish(data="a whole pair: \U0001f600").data == "a whole pair: \U0001f600"


def test_bucket_off_when_rate_is_zero():
    clock = Clock()
    bucket = TokenBucket(0, clock)
    assert all(bucket.allow() for _ in range(1000))


def test_bucket_burst_then_rate():
    clock = Clock()
    bucket = TokenBucket(1.0, clock)
    assert [bucket.allow() for _ in range(5)] == [True] * 4 + [False]
    clock.advance(0.5)
    assert not bucket.allow()
    clock.advance(0.5)
    assert bucket.allow() and not bucket.allow()
    clock.advance(100)  # refills to the burst, not beyond
    assert [bucket.allow() for _ in range(5)] == [True] * 4 + [False]


@pytest.mark.parametrize("field", ["name", "data"])
@pytest_twisted.ensureDeferred
async def test_api_refuses_lone_surrogates_before_anyone_sees_them(field):
    from api_fakes import Harness, assert_error

    from twisted_spark.events.bus import EventBus

    bus = EventBus()
    seen = []
    bus.subscribe("", seen.append)
    h = Harness(bus=bus)
    token = await h.user("alice")
    fields = {"name": "temp", "data": "21", field: "x\\ud800y"}
    body = "{" + ", ".join(f'"{k}": "{v}"' for k, v in fields.items()) + "}"
    r = await h.call("POST", "/v1/devices/events", token=token, data=body.encode(),
                     headers={"Content-Type": "application/json"})
    assert "surrogate" in assert_error(r, 400, "invalid_request")["error_description"]
    assert seen == []
