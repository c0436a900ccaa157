"""Layers point downward: protocol-side modules never load the HTTP stack.

Checked in a fresh interpreter (a module imported by another test would hide
the import), for each module on its own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT

BELOW_THE_API = [
    "twisted_spark.firmware.flasher",
    "twisted_spark.firmware.updater",
    "twisted_spark.device.session",
    "twisted_spark.device.factory",
    "twisted_spark.events.bus",
    "twisted_spark.events.device_routing",
    "twisted_spark.registry",
    "twisted_spark.interfaces",
    "twisted_spark.executors",
    "twisted_spark.udp.port",
    "twisted_spark.service",
    "twisted_spark.tap",
    "twisted_spark.webhooks.definition",
    "twisted_spark.webhooks.outgoing",
    "twisted_spark.webhooks.outcome",
    "twisted_spark.webhooks.policy",
    "twisted_spark.webhooks.health",
    "twisted_spark.interfaces.webhooks",
    "twisted_spark.cluster.node",
    "twisted_spark.cluster.firmware",
]

PROBE = """
import sys
import {module}
print(" ".join(sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("klein", "werkzeug") or name.startswith("twisted.web")
    or name.startswith("twisted_spark.api")
)))
"""


@pytest.mark.parametrize("module", BELOW_THE_API)
def test_imports_neither_klein_nor_twisted_web(module):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    assert result.stdout.split() == []
