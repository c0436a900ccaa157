"""Per-address log budgets: bogus device connections cannot flood the log (issue 9 item 4)."""

from __future__ import annotations

import pytest
from device_fixtures import CORE_ID, Server
from test_device_protocol import Wire
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher

from twisted_spark.device.log_limit import OTHER_SOURCES, LogLimiter


class Collect:
    """A log observer keeping (level, text) of every event."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append((event["log_level"], formatEvent(event)))

    @property
    def lines(self):
        return [text for _, text in self.events]


@pytest.fixture
def limiter_and_lines():
    clock = Clock()
    clock.advance(1000)
    seen = Collect()
    limiter = LogLimiter(clock, burst=3, window=60, max_sources=4, log=Logger(observer=seen))
    return clock, limiter, Logger(observer=seen), seen


def say(limiter, logger, ip, n, level=LogLevel.warn):
    return [
        limiter.emit(ip, logger, level, "Closing connection from {ip}: junk #{n}", ip=ip, n=i)
        for i in range(n)
    ]


def test_first_lines_pass_then_one_summary_when_the_window_ends(limiter_and_lines):
    clock, limiter, logger, seen = limiter_and_lines
    assert say(limiter, logger, "10.0.0.1", 10) == [True] * 3 + [False] * 7
    assert seen.lines == [f"Closing connection from 10.0.0.1: junk #{i}" for i in range(3)]
    clock.advance(59.9)
    assert len(seen.lines) == 3
    clock.advance(0.1)
    assert len(seen.lines) == 4
    level, summary = seen.events[-1]
    assert summary.startswith("Suppressed 7 similar messages from 10.0.0.1 in the last 60 s")
    assert "junk #9" in summary  # the last one, as a sample
    assert level == LogLevel.warn
    assert clock.getDelayedCalls() == []


def test_a_new_window_brings_a_new_budget(limiter_and_lines):
    clock, limiter, logger, seen = limiter_and_lines
    say(limiter, logger, "10.0.0.1", 4)
    clock.advance(60)
    assert say(limiter, logger, "10.0.0.1", 4) == [True] * 3 + [False]
    clock.advance(60)
    assert [line.split(" in ")[0] for line in seen.lines if "Suppressed" in line] == [
        "Suppressed 1 similar messages from 10.0.0.1",
        "Suppressed 1 similar messages from 10.0.0.1",
    ]


def test_addresses_have_their_own_budgets(limiter_and_lines):
    clock, limiter, logger, seen = limiter_and_lines
    say(limiter, logger, "10.0.0.1", 5)
    assert say(limiter, logger, "10.0.0.2", 3) == [True] * 3
    clock.advance(60)
    summaries = [line for line in seen.lines if "Suppressed" in line]
    assert len(summaries) == 1 and "10.0.0.1" in summaries[0]


def test_no_summary_and_no_timer_without_suppression(limiter_and_lines):
    clock, limiter, logger, seen = limiter_and_lines
    say(limiter, logger, "10.0.0.1", 3)
    assert clock.getDelayedCalls() == []
    clock.advance(120)
    assert len(seen.lines) == 3


def test_the_address_table_is_bounded(limiter_and_lines):
    """Past max_sources, new addresses share one budget (an attacker with many addresses)."""
    clock, limiter, logger, seen = limiter_and_lines
    for i in range(1000):
        say(limiter, logger, f"10.1.{i // 256}.{i % 256}", 2)
    assert len(limiter) <= 4 + 1
    # 4 addresses with 2 lines each, then 3 lines for all the others together.
    assert len(seen.lines) == 4 * 2 + 3
    clock.advance(60)
    (summary,) = [line for line in seen.lines if "Suppressed" in line]
    assert f"from {OTHER_SOURCES}" in summary and f"Suppressed {2000 - 11} " in summary
    assert len(limiter) == 0


def test_summary_level_is_the_highest_suppressed(limiter_and_lines):
    clock, limiter, logger, seen = limiter_and_lines
    say(limiter, logger, "10.0.0.1", 4, level=LogLevel.debug)
    say(limiter, logger, "10.0.0.1", 1, level=LogLevel.info)
    clock.advance(60)
    assert seen.events[-1][0] == LogLevel.info


def test_flush_logs_pending_summaries_and_cancels_the_timer(limiter_and_lines):
    clock, limiter, logger, seen = limiter_and_lines
    say(limiter, logger, "10.0.0.1", 5)
    limiter.flush()
    assert "Suppressed 2 similar messages from 10.0.0.1" in seen.lines[-1]
    assert clock.getDelayedCalls() == []
    assert len(limiter) == 0


def test_failures_pass_through_with_their_traceback(limiter_and_lines):
    from twisted.python.failure import Failure

    clock, limiter, logger, seen = limiter_and_lines
    failure = Failure(ValueError("boom"))
    events = []
    logger.observer = events.append
    limiter.emit("10.0.0.1", logger, LogLevel.critical, "failed", log_failure=failure)
    assert events[0]["log_failure"] is failure


# -- on the device port ------------------------------------------------------------------


@pytest.fixture
def logs():
    lines = []

    def observer(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def test_bogus_connections_from_one_address_log_a_few_lines_and_a_summary(logs):
    s = Server()
    for _ in range(100):
        w = Wire(s)
        w.feed(b"\x01" * 256)  # junk identity: refused
        assert w.tr.disconnecting
        w.proto.connectionLost(None)
    closing = [line for line in logs if "Closing connection" in line]
    assert 1 <= len(closing) <= 5
    assert s.factory.handshakes_failed == 100
    s.clock.advance(60)
    (summary,) = [line for line in logs if "Suppressed" in line]
    assert f"Suppressed {100 - len(closing)} similar messages from 192.168.1.1" in summary
    assert "handshake refused" in summary


def test_devices_with_a_session_are_not_limited(logs):
    s = Server()
    s.register(CORE_ID)
    for _ in range(10):
        w = Wire(s)
        w.handshake()
        w.feed(b"\xff\xff")  # bad frame length: closed, with its own line
    assert sum(1 for line in logs if "Closing connection" in line and CORE_ID in line) == 10


def test_refusals_at_accept_share_the_budget(logs):
    from test_device_limits import FakeAddress, gated_server

    s = gated_server(max_pending_handshakes=1)
    w = Wire(s)
    w.feed(w.identity())
    for _ in range(50):
        assert s.factory.buildProtocol(FakeAddress("10.9.9.9")) is None
    assert sum(1 for line in logs if "Refusing" in line) <= 5
    assert s.factory.refused["handshake_queue_full"] == 50
    s.clock.advance(60)
    assert any("Suppressed" in line and "10.9.9.9" in line for line in logs)


def test_stopping_the_factory_flushes_the_summaries(logs):
    s = Server()
    for _ in range(20):
        w = Wire(s)
        w.feed(b"\x01" * 256)
        w.proto.connectionLost(None)
    s.factory.doStop()
    assert any("Suppressed" in line for line in logs)
    assert s.clock.getDelayedCalls() == []
