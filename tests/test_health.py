"""Readiness checks, /readyz and /healthz, and who may read /metrics."""

from __future__ import annotations

import pytest
import pytest_twisted
from api_fakes import Harness
from twisted.internet import defer
from twisted.internet.task import Clock

from twisted_spark.api.ops import address_allowed
from twisted_spark.config import PRIVATE_NETWORKS
from twisted_spark.health import NotReady, Readiness, store_check
from twisted_spark.store.memory import MemoryStore


def _result(d):
    box = []
    d.addBoth(box.append)
    assert box, "not fired"
    return box[0]


def test_checks_report_each_outcome_and_ready_only_when_all_pass():
    clock = Clock()
    readiness = Readiness(clock, timeout=2.0)
    readiness.add("plain", lambda: None)
    readiness.add("detail", lambda: defer.succeed("3 connections"))
    readiness.add("refusing", lambda: (_ for _ in ()).throw(NotReady("the ports are closed")))
    readiness.add("broken", lambda: defer.fail(ConnectionError("refused")))
    hanging = defer.Deferred()
    readiness.add("hanging", lambda: hanging)
    d = defer.ensureDeferred(readiness.evaluate())
    assert not d.called  # waits for the slow one
    clock.advance(2.0)
    ready, checks = _result(d)
    assert not ready
    assert checks == {
        "plain": {"ok": True, "detail": "ok"},
        "detail": {"ok": True, "detail": "3 connections"},
        "refusing": {"ok": False, "detail": "the ports are closed"},
        "broken": {"ok": False, "detail": "ConnectionError: refused"},
        "hanging": {"ok": False, "detail": "no answer within 2 s"},
    }
    assert readiness.names() == list(checks)
    for name in ("refusing", "broken", "hanging"):
        readiness.remove(name)
    assert _result(defer.ensureDeferred(readiness.evaluate()))[0] is True


def test_store_check_queries_the_store():
    store = MemoryStore()
    assert _result(store_check(store)()) == "answers queries"
    store.get_user = lambda name: defer.fail(RuntimeError("the store is closed"))
    readiness = Readiness()
    readiness.add("store", store_check(store))
    ready, checks = _result(defer.ensureDeferred(readiness.evaluate()))
    assert not ready and checks["store"]["detail"] == "RuntimeError: the store is closed"


@pytest_twisted.ensureDeferred
async def test_readyz_is_200_when_ready_and_503_with_the_failing_checks():
    h = Harness()
    r = await h.call("GET", "/readyz")
    assert r.status == 200 and r.json == {"ok": True, "checks": {}}
    h.api.readiness.add("store", store_check(h.store))
    h.api.readiness.add("draining", lambda: defer.fail(NotReady("the server is shutting down")))
    r = await h.call("GET", "/readyz")
    assert r.status == 503
    assert r.header(b"retry-after") == b"5"
    assert r.json == {
        "ok": False, "error": "not_ready", "error_description": "Not ready: draining.",
        "checks": {"store": {"ok": True, "detail": "answers queries"},
                   "draining": {"ok": False, "detail": "the server is shutting down"}},
    }


@pytest_twisted.ensureDeferred
async def test_a_draining_api_answers_503_except_readyz():
    h = Harness()
    h.api.draining = True
    r = await h.call("GET", "/healthz")
    assert r.status == 503 and r.json["error"] == "shutting_down"
    assert r.header(b"retry-after") == b"1"
    assert (await h.call("GET", "/readyz")).status == 200  # no checks registered here


@pytest_twisted.ensureDeferred
async def test_metrics_only_for_allowed_networks():
    h = Harness(metrics_allow=("10.9.0.0/16",))
    r = await h.call("GET", "/metrics")
    assert r.status == 403
    assert r.json["error"] == "forbidden"
    assert "--metrics-allow" in r.json["error_description"]
    assert (await Harness().call("GET", "/metrics")).status == 200  # the test client is loopback


@pytest.mark.parametrize(("address", "allowed"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.31.255.1", True), ("192.168.1.9", True),
    ("::1", True), ("fd00::5", True), ("::ffff:10.0.0.1", True), ("fe80::1%eth0", False),
    ("8.8.8.8", False), ("172.32.0.1", False), ("2001:db8::1", False),
    ("::ffff:8.8.8.8", False), ("/run/spark.sock", False),
])
def test_default_metrics_networks(address, allowed):
    import ipaddress

    networks = [ipaddress.ip_network(text) for text in PRIVATE_NETWORKS]
    assert address_allowed(address, networks) is allowed
