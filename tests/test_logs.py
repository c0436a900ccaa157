"""Log lines: classic text by default; ``--log-format json``: one JSON object per line."""

from __future__ import annotations

import io
import json

import pytest_twisted
import treq
from server_process import Server
from twisted.logger import Logger, LogLevel

from twisted_spark import passwords
from twisted_spark.logs import json_line, json_observer, text_observer
from twisted_spark.models import User
from twisted_spark.store.sqlite import SQLiteStore


def test_an_event_becomes_one_line_with_its_fields():
    event = {
        "log_time": 1764500000.25, "log_level": LogLevel.warn,
        "log_namespace": "twisted_spark.device.protocol.DeviceProtocol",
        "log_format": "Closing connection of device {device_id} from {ip}: {reason}",
        "device_id": "53ff6f065067544816300187", "ip": "10.0.0.7", "reason": "bad frame",
        "unrelated": object(),
    }
    line = json_line(event)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {
        "time": "2025-11-30T10:53:20.250+00:00", "level": "warn",
        "namespace": "twisted_spark.device.protocol.DeviceProtocol",
        "message": "Closing connection of device 53ff6f065067544816300187 from 10.0.0.7: "
                   "bad frame",
        "device_id": "53ff6f065067544816300187", "ip": "10.0.0.7", "reason": "bad frame",
    }


def test_failures_carry_their_traceback_and_odd_values_are_text():
    out = io.StringIO()
    log = Logger(namespace="test", observer=json_observer(out))
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.failure("Handling {route} failed", route=b"/v1/\xffdevices", user=("alice",))
    record = json.loads(out.getvalue())
    assert record["level"] == "critical" and record["namespace"] == "test"
    assert "ZeroDivisionError" in record["traceback"]
    assert record["route"] == "/v1/\ufffddevices" and record["user"] == "('alice',)"


@pytest_twisted.ensureDeferred
async def test_a_real_server_logs_json_lines_with_request_fields(reactor, data_dir, monkeypatch):
    monkeypatch.setattr(passwords, "ITERATIONS", 1000)
    store = await SQLiteStore.open(data_dir / "spark.sqlite", reactor=reactor)
    try:
        await store.add_user(User("alice", passwords.hash_password("a password"), is_admin=True))
    finally:
        await store.close()
    server = await Server(reactor, data_dir, "--log-format", "json").start()
    try:
        response = await treq.post(server.url + "/oauth/token", auth=("particle", "particle"),
                                   data={"grant_type": "password", "username": "alice",
                                         "password": "a password"}, persistent=False)
        token = (await response.json())["access_token"]
        response = await treq.get(server.url + "/v1/devices?access_token=" + token,
                                  headers={"X-Request-ID": "req-42"}, persistent=False)
        assert response.code == 200
        await response.content()
    finally:
        await server.stop()
    lines = server.output.text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "namespace", "message"} <= set(r) for r in records)
    [ready] = [r for r in records if r["message"].startswith("twisted-spark ready")]
    assert ready["namespace"] == "twisted_spark.service" and ready["level"] == "info"
    [access] = [r for r in records if r.get("request_id") == "req-42"]
    assert access["namespace"] == "twisted_spark.api.access"
    assert access["route"] == "/v1/devices" and access["status"] == 200
    assert access["user"] == "alice" and access["method"] == "GET"
    assert access["duration"] >= 0
    assert token not in server.output.text()
    assert access["uri"] == "/v1/devices?access_token=[redacted]"


def test_text_lines_are_twisted_classic_lines():
    from twisted.logger import textFileLogObserver

    ours, theirs = io.StringIO(), io.StringIO()
    observer, reference = text_observer(ours), textFileLogObserver(theirs)
    times = [1_764_545_226.0, 1_764_545_226.999, 1_764_545_227.0001, None, 1_764_545_226.5, 0.25]
    for when in times:
        for event in ({"log_format": "device {d} online", "d": "be01", "log_time": when,
                       "log_namespace": "twisted_spark.device", "log_level": LogLevel.info},
                      {"log_format": "again", "log_time": when, "log_system": "-"}):
            observer(event)
            reference(event)
    assert ours.getvalue() == theirs.getvalue()
    assert ours.getvalue().count("\n") == len(times) * 2


class _Named:
    name = "relay-7"

    def __repr__(self):
        return "<Named relay-7>"


def test_text_lines_match_twisted_for_every_kind_of_format():
    """The fast path (``str.format_map``) and Twisted's path give the same lines."""
    from twisted.logger import textFileLogObserver
    from twisted.python.failure import Failure

    try:
        raise ZeroDivisionError("for the traceback")
    except ZeroDivisionError:
        failure = Failure()
    base = {"log_time": 1_764_545_226.0, "log_namespace": "ns", "log_level": LogLevel.warn}
    events = [
        {"log_format": "{a!r} and {b:>6.2f} and {c.name} and {d[k]}", "a": "x", "b": 1.5,
         "c": _Named(), "d": {"k": 3}},
        {"log_format": "two\nlines and {n}", "n": 2},
        {"log_format": "{missing} key"},  # unformattable: Twisted's own wording
        {"log_format": "{c.__repr__()} called", "c": _Named()},  # Twisted's call syntax
        {"log_format": "positional {}"},
        {"log_format": b"bytes {n}", "n": 1},
        {"log_format": "with a failure {n}", "n": 1, "log_failure": failure},
        {"log_format": "system {n}", "n": 1, "log_system": _Named()},
        {"log_format": "", "n": 1},
        {"log_format": None},
        {"log_format": "{{braces}} {n}", "n": 4, "log_level": None},
    ]
    ours, theirs = io.StringIO(), io.StringIO()
    observer, reference = text_observer(ours), textFileLogObserver(theirs)
    for event in events:
        event = {**base, **event}
        observer(event)
        reference(event)
        assert ours.getvalue() == theirs.getvalue(), event["log_format"]
    assert "'x' and   1.50 and relay-7 and 3" in ours.getvalue()
    assert "\tlines and 2" in ours.getvalue()
    assert "Unable to format event" in ours.getvalue()
    assert "ZeroDivisionError" in ours.getvalue()
