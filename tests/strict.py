"""Skip a test whose outside requirement is missing, or fail it where that is not allowed.

A browser, a PostgreSQL or a Redis server may be missing on a developer's
machine, and the tests that need them skip, saying why.  CI sets
``TWISTED_SPARK_STRICT_TESTS=1``: there a missing requirement fails the run,
so a broken CI image cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest

VARIABLE = "TWISTED_SPARK_STRICT_TESTS"


def strict() -> bool:
    """Whether missing requirements are failures (``TWISTED_SPARK_STRICT_TESTS=1``)."""
    return os.environ.get(VARIABLE, "").strip() == "1"


def unavailable(reason: str):
    """Skip the running test because of ``reason``, or fail it in strict mode."""
    if strict():
        pytest.fail(f"{reason} ({VARIABLE}=1: this test must run here)", pytrace=False)
    pytest.skip(reason)
