# -*- test-case-name: tests.test_metrics,tests.test_api_http -*-
"""The server's metrics, with ``prometheus_client``, in one registry per server.

The composition root makes one :class:`Metrics`; it holds its own
``CollectorRegistry`` (nothing is registered in prometheus_client's global
default registry, so two servers in one process never mix their figures)
and the instruments every part records into:

* hot paths (API requests, device calls, store operations, handshakes)
  observe histograms directly: a dictionary lookup and a lock per sample;
* counts a part keeps anyway (events published, streams open, devices
  online) are *read at scrape time* (:meth:`Metrics.gauge`,
  :meth:`Metrics.counter_reading`), costing the hot path nothing.

Label values are bounded: route templates, call kinds, outcomes, reasons,
transports -- never a device id, user name or token.  The README lists every
metric (name, type, meaning).  :meth:`Metrics.render` is the Prometheus text
format; the API serves it at ``/metrics`` on the reactor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_spark.interfaces import IMetrics

log = Logger()

#: Seconds: API requests and store operations (sub-millisecond to seconds).
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0, 30.0)
#: Seconds: device round trips and handshakes (a device may take its time).
DEVICE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds: firmware transfers.
OTA_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Kinds of device calls (label ``kind``).
CALL_KINDS = ("function", "variable", "describe")


class _ReadAtScrape:
    """A collector whose samples are read from the parts when Prometheus scrapes.

    A reading that raises is logged and left out of that scrape (the other
    metrics are still served).
    """

    def __init__(self) -> None:
        #: name -> (family class, help, read)
        self.readings: dict[str, tuple[type, str, Callable[[], float]]] = {}

    def describe(self):
        return []  # the registry must not call collect() at registration

    def collect(self):
        for name, (family, help_text, read) in sorted(self.readings.items()):
            try:
                value = read()
            except Exception:
                log.failure("Reading metric {name} failed; left out of this scrape", name=name)
                continue
            if isinstance(value, dict):  # labelled: {(label, value): number}
                label = next(iter(value), (None, None))[0] if value else None
                metric = family(name, help_text, labels=[label] if label else [])
                for (_, label_value), number in sorted(value.items()):
                    metric.add_metric([label_value], number)
            else:
                metric = family(name, help_text, value=value)
            yield metric


@implementer(IMetrics)
class Metrics:
    """Every metric of one server (see the module docstring and the README).

    :param process: also export process metrics (CPU, RSS, open fds).
    :param timer: seconds, monotonic (latencies); ``time.perf_counter`` by default.

    :ivar registry: this server's ``CollectorRegistry``.
    """

    def __init__(self, process: bool = True, timer: Callable[[], float] = time.perf_counter):
        self.timer = timer
        self.registry = CollectorRegistry(auto_describe=True)
        self._readings = _ReadAtScrape()
        self.registry.register(self._readings)
        if process:
            ProcessCollector(registry=self.registry)
        self._counters: dict[str, Counter] = {}
        self._help: dict[str, str] = {}
        reg = self.registry
        self.api_latency = Histogram(
            "spark_api_request_duration_seconds",
            "API request duration (to the last byte written) by route template, method and "
            "status class", ["route", "method", "status_class"], buckets=FAST_BUCKETS, registry=reg)
        self.api_requests = Counter(
            "spark_api_requests", "API requests by route template, method and status",
            ["route", "method", "status"], registry=reg)
        self.device_calls = Histogram(
            "spark_device_call_duration_seconds",
            "Device round trips from the API by kind (function, variable, describe) and "
            "outcome (ok, timeout, error)", ["kind", "outcome"], buckets=DEVICE_BUCKETS,
            registry=reg)
        self.device_call_timeouts = Counter(
            "spark_device_call_timeouts", "Device calls that got no answer within "
            "--request-timeout, by kind", ["kind"], registry=reg)
        self.handshakes = Histogram(
            "spark_handshake_duration_seconds", "Device handshakes completed (connection to "
            "Hello) by transport (tcp, udp)", ["transport"], buckets=DEVICE_BUCKETS, registry=reg)
        self.handshake_failures = Counter(
            "spark_handshake_failures", "Device handshakes that failed, by transport and reason",
            ["transport", "reason"], registry=reg)
        self.ota = Histogram(
            "spark_ota_duration_seconds", "Firmware transfers by outcome (success, failed, "
            "error), with their duration", ["outcome"], buckets=OTA_BUCKETS, registry=reg)
        self.store_ops = Histogram(
            "spark_store_operation_duration_seconds", "Store operations by operation (the "
            "store method) and outcome (ok, error)", ["operation", "outcome"],
            buckets=FAST_BUCKETS, registry=reg)
        # Webhooks: the dispatcher records each delivery attempt here with
        # ``metrics.webhook_deliveries.labels(outcome=...).observe(seconds)``;
        # outcome is "ok", "http_error", "timeout" or "error" (never the URL).
        self.webhook_deliveries = Histogram(
            "spark_webhook_delivery_duration_seconds", "Webhook deliveries by outcome (ok, "
            "http_error, timeout, error), with their duration", ["outcome"],
            buckets=DEVICE_BUCKETS, registry=reg)
        self._api_children: dict[tuple, tuple] = {}
        self.describe("spark_dtls_handshakes_completed_total",
                      "DTLS handshakes (Gen3 devices, UDP) completed")

    # -- recording ---------------------------------------------------------------

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one API response and its duration (a hot path: children are cached)."""
        key = (route, method, status)
        children = self._api_children.get(key)
        if children is None:
            status_class = f"{status // 100}xx"
            children = (self.api_latency.labels(route, method, status_class),
                        self.api_requests.labels(route, method, str(status)))
            if len(self._api_children) < 10_000:  # bounded labels; this only caps memory
                self._api_children[key] = children
        children[0].observe(seconds)
        children[1].inc()

    def time_device_call(self, d: defer.Deferred, kind: str) -> defer.Deferred:
        """Record the duration and outcome of device call ``d`` (of ``kind``); ``d``."""
        started = self.timer()

        def done(result):
            outcome = "ok"
            if isinstance(result, Failure):
                outcome = "timeout" if result.check(defer.TimeoutError) else "error"
                if outcome == "timeout":
                    self.device_call_timeouts.labels(kind).inc()
            self.device_calls.labels(kind, outcome).observe(self.timer() - started)
            return result

        return d.addBoth(done)

    # -- the generic interface (IMetrics) -------------------------------------------

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def inc(self, name: str, amount: float = 1, **labels) -> None:
        """Add ``amount`` to counter ``name`` (created on first use with these label names)."""
        counter = self._counters.get(name)
        if counter is None:
            base = name[:-6] if name.endswith("_total") else name
            counter = Counter(base, self._help.get(name, name), sorted(labels),
                              registry=self.registry)
            self._counters[name] = counter
        (counter.labels(**labels) if labels else counter).inc(amount)

    def value(self, name: str, **labels) -> float:
        base = name[:-6] if name.endswith("_total") else name
        found = self.registry.get_sample_value(base + "_total", labels or None)
        return 0 if found is None else found

    def gauge(self, name: str, help_text: str, read: Callable[[], Any]) -> None:
        """Register ``read() -> number`` as gauge ``name``, read at each scrape.

        ``read`` may also return ``{(label_name, label_value): number}``.
        """
        self._readings.readings[name] = (GaugeMetricFamily, help_text, read)

    def counter_reading(self, name: str, help_text: str, read: Callable[[], Any]) -> None:
        """Register ``read()``, a count a part keeps, as counter ``name`` (``_total``).

        ``read`` may also return ``{(label_name, label_value): number}``.
        """
        base = name[:-6] if name.endswith("_total") else name
        self._readings.readings[base] = (CounterMetricFamily, help_text, read)

    def render(self) -> str:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry).decode("utf-8")


#: The content type of :meth:`Metrics.render`'s text.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
