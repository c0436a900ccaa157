# -*- test-case-name: tests.test_api_http -*-
"""Simple counters and gauges, rendered as Prometheus text at ``/metrics``.

The composition root creates one :class:`Metrics` and hands it to every
part that counts something: ``metrics.inc("spark_api_requests_total",
route=...)``, ``metrics.gauge("spark_sse_streams", "...", read)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from zope.interface import implementer

from twisted_spark.interfaces import IMetrics


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    inner = ",".join(
        '{}="{}"'.format(k, str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " "))
        for k, v in sorted(labels.items())
    )
    return "{" + inner + "}"


@implementer(IMetrics)
class Metrics:
    """Counters (monotonic) and gauges (callables read at scrape time)."""

    def __init__(self):
        self._counters: dict[str, dict] = defaultdict(dict)
        self._help: dict[str, str] = {}
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def inc(self, name: str, amount: float = 1, **labels) -> None:
        key = tuple(sorted(labels.items()))
        series = self._counters[name]
        series[key] = series.get(key, 0) + amount

    def value(self, name: str, **labels) -> float:
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register ``read() -> number`` as gauge ``name``."""
        self._gauges[name] = (help_text, read)

    def render(self) -> str:
        lines = []
        for name in sorted(self._gauges):
            help_text, read = self._gauges[name]
            try:
                value = read()
            except Exception:
                continue
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        for name in sorted(self._counters):
            lines.append(f"# HELP {name} {self._help.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            for key, value in sorted(self._counters[name].items()):
                lines.append(f"{name}{_labels(dict(key))} {value}")
        return "\n".join(lines) + "\n"
