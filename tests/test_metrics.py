"""Metrics: one registry per server, bounded labels, and what each part records."""

from __future__ import annotations

import prometheus_client
import pytest_twisted
from api_fakes import Harness
from twisted.internet import defer

from twisted_spark.device.factory import failure_kind
from twisted_spark.interfaces import IDtlsSessionStore, IStore
from twisted_spark.metrics import Metrics
from twisted_spark.models import User
from twisted_spark.store.memory import MemoryStore
from twisted_spark.store.timed import timed_store


class Ticks:
    """A timer the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_each_server_has_its_own_registry_and_the_global_one_stays_clean():
    first, second = Metrics(), Metrics()
    first.inc("spark_things_total", kind="a")
    first.api_request("/v1/devices", "GET", 200, 0.01)
    assert first.value("spark_things_total", kind="a") == 1
    assert second.value("spark_things_total", kind="a") == 0
    assert sample(second, "spark_api_requests_total", route="/v1/devices", method="GET",
                  status="200") is None
    default = prometheus_client.REGISTRY
    assert not [m.name for m in default.collect() if m.name.startswith("spark_")]
    assert "process_resident_memory_bytes" in first.render()
    assert "process_open_fds" in first.render()


def test_api_requests_by_template_method_status_and_class():
    metrics = Metrics(process=False)
    metrics.api_request("/v1/devices/<device_id>", "POST", 200, 0.004)
    metrics.api_request("/v1/devices/<device_id>", "POST", 200, 0.2)
    metrics.api_request("/v1/devices/<device_id>", "POST", 404, 0.001)
    labels = {"route": "/v1/devices/<device_id>", "method": "POST"}
    assert sample(metrics, "spark_api_requests_total", status="200", **labels) == 2
    assert sample(metrics, "spark_api_request_duration_seconds_count", status_class="2xx",
                  **labels) == 2
    assert sample(metrics, "spark_api_request_duration_seconds_bucket", status_class="2xx",
                  le="0.005", **labels) == 1
    assert sample(metrics, "spark_api_request_duration_seconds_count", status_class="4xx",
                  **labels) == 1


@pytest_twisted.ensureDeferred
async def test_route_labels_are_templates_never_ids():
    h = Harness()
    token = await h.user("alice")
    await h.call("GET", "/v1/devices/53ff6f065067544816300187", token=token)
    await h.call("GET", "/v1/devices/0123456789abcdef01234567/temp", token=token)
    await h.call("BREW", "/v1/devices", token=token)
    text = h.api.metrics.render()
    assert "53ff6f" not in text and "0123456789" not in text and "alice" not in text
    assert 'route="/v1/devices/<device>"' in text
    assert 'method="other"' in text


def test_device_calls_by_kind_and_outcome_with_timeouts_counted():
    ticks = Ticks()
    metrics = Metrics(process=False, timer=ticks)
    answered, timed_out, failed = defer.Deferred(), defer.Deferred(), defer.Deferred()
    for d, kind in ((answered, "function"), (timed_out, "variable"), (failed, "describe")):
        metrics.time_device_call(d, kind).addErrback(lambda _: None)
    ticks.now = 0.3
    answered.callback(1)
    timed_out.errback(defer.TimeoutError())
    failed.errback(RuntimeError("device gone"))
    assert sample(metrics, "spark_device_call_duration_seconds_sum", kind="function",
                  outcome="ok") == 0.3
    assert sample(metrics, "spark_device_call_duration_seconds_count", kind="variable",
                  outcome="timeout") == 1
    assert sample(metrics, "spark_device_call_timeouts_total", kind="variable") == 1
    assert sample(metrics, "spark_device_call_timeouts_total", kind="describe") is None
    assert sample(metrics, "spark_device_call_duration_seconds_count", kind="describe",
                  outcome="error") == 1


@pytest_twisted.ensureDeferred
async def test_api_call_timeouts_are_recorded():
    h = Harness(request_timeout=5.0)
    token = await h.user("alice")
    device = await h.device(1, owner="alice", functions=("brew",))
    device.mode = "hang"
    d = h.start("POST", f"/v1/devices/{device.device_id}/brew", token=token, form={"arg": "x"})
    h.clock.advance(5.0)
    assert h.answered(d)
    metrics = h.api.metrics
    assert sample(metrics, "spark_device_call_timeouts_total", kind="function") == 1


@pytest_twisted.ensureDeferred
async def test_store_operations_are_timed_and_the_store_keeps_its_interfaces():
    ticks = Ticks()
    metrics = Metrics(process=False, timer=ticks)
    inner = MemoryStore()
    store = timed_store(inner, metrics)
    assert IStore.providedBy(store) and IDtlsSessionStore.providedBy(store)
    await store.add_user(User("alice", "x"))
    assert (await store.get_user("alice")).username == "alice"
    try:
        await store.add_user(User("alice", "x"))
    except Exception:
        pass
    assert sample(metrics, "spark_store_operation_duration_seconds_count",
                  operation="add_user", outcome="ok") == 1
    assert sample(metrics, "spark_store_operation_duration_seconds_count",
                  operation="add_user", outcome="error") == 1
    assert sample(metrics, "spark_store_operation_duration_seconds_count",
                  operation="get_user", outcome="ok") == 1
    assert store._users is inner._users  # anything else passes through


def test_a_reading_that_raises_is_logged_and_the_rest_still_served(logged_failures):
    metrics = Metrics(process=False)
    metrics.gauge("spark_broken", "raises", lambda: 1 / 0)
    metrics.gauge("spark_fine", "works", lambda: 7)
    metrics.counter_reading("spark_labelled", "by reason",
                            lambda: {("reason", "a"): 1, ("reason", "b"): 2})
    text = metrics.render()
    assert "spark_fine 7.0" in text and "spark_broken" not in text
    assert 'spark_labelled_total{reason="b"} 2.0' in text
    assert len(logged_failures) == 1


def test_handshake_failure_reasons_are_bounded():
    assert failure_kind("handshake not completed within 30 s (nonce sent)") == "timeout"
    assert failure_kind("handshake refused: unknown device 53ff...") == "refused"
    assert failure_kind("handshake refused: internal error: boom") == "internal_error"
    assert failure_kind("bad frame: bad padding") == "bad_frame"
    assert failure_kind("sent 300 bytes before the server answered") == "protocol_error"
    assert failure_kind("first frame is not a Hello: <...>") == "bad_hello"
    assert failure_kind("anything new") == "other"


def test_sse_and_event_counts_are_read_at_scrape():
    from twisted_spark.api.streams import observe_events
    from twisted_spark.events.bus import EventBus

    class Streams(list):
        opened = dropped = 0

        def streams(self):
            return list(self)

    metrics = Metrics(process=False)
    bus = EventBus()
    streams = Streams()
    observe_events(metrics, bus, streams)
    bus.published, bus.delivered, bus.failures, streams.dropped = 5, 4, 1, 3
    assert sample(metrics, "spark_events_published_total") == 5
    assert sample(metrics, "spark_events_delivered_total") == 4
    assert sample(metrics, "spark_events_dropped_total", reason="slow_stream") == 3
    assert sample(metrics, "spark_events_dropped_total", reason="subscriber_error") == 1
    assert sample(metrics, "spark_sse_streams") == 0
    assert sample(metrics, "spark_sse_queued_bytes") == 0


def test_a_whole_server_scrape_parses_as_prometheus_text():
    """What Prometheus (and so Grafana) reads: every family of a server built by
    the composition root parses, with HELP text and the type the README gives."""
    from loopback import loopback_cloud
    from prometheus_client.parser import text_string_to_metric_families

    from twisted_spark.config import Settings

    cloud = loopback_cloud(Settings())
    cloud.metrics.api_request('/v1/"odd"\\route\n', "GET", 200, 0.01)  # escaped, not broken
    families = {f.name: f for f in text_string_to_metric_families(cloud.metrics.render())}
    expected = {
        "spark_api_request_duration_seconds": "histogram", "spark_api_requests": "counter",
        "spark_device_call_duration_seconds": "histogram",
        "spark_device_call_timeouts": "counter", "spark_handshake_duration_seconds": "histogram",
        "spark_handshake_failures": "counter", "spark_handshakes_completed": "counter",
        "spark_devices_online": "gauge", "spark_sse_streams": "gauge",
        "spark_sse_queued_bytes": "gauge", "spark_events_published": "counter",
        "spark_events_delivered": "counter", "spark_events_dropped": "counter",
        "spark_ota_duration_seconds": "histogram", "spark_ota_in_progress": "gauge",
        "spark_store_operation_duration_seconds": "histogram",
        "spark_webhook_delivery_duration_seconds": "histogram",
        "process_resident_memory_bytes": "gauge", "process_open_fds": "gauge",
        "process_cpu_seconds": "counter",
    }
    assert {name: families[name].type for name in expected} == expected
    assert all(families[name].documentation for name in expected)
    [sample] = [s for s in families["spark_api_requests"].samples
                if s.name == "spark_api_requests_total"]
    assert sample.labels["route"] == '/v1/"odd"\\route\n'


def test_the_readme_lists_every_server_metric():
    from conftest import PROJECT_ROOT
    from loopback import loopback_cloud
    from prometheus_client.parser import text_string_to_metric_families

    from twisted_spark.config import Settings

    readme = (PROJECT_ROOT / "README.rst").read_text()
    cloud = loopback_cloud(Settings())
    cloud.metrics.inc("spark_dtls_handshakes_completed_total")  # made on first use
    cloud.devices.count_refusal("handshake_queue_full")
    names = [family.name + ("_total" if family.type == "counter" else "")
             for family in text_string_to_metric_families(cloud.metrics.render())
             if family.name.startswith("spark_") and not family.name.endswith("_created")]
    assert len(names) > 20
    assert [name for name in names if f"``{name}``" not in readme] == []
