# -*- test-case-name: tests.test_api_http -*-
"""The REST API (API.md): a Klein app per :class:`SparkAPI` instance.

Importing this package imports Klein, which installs the default reactor;
the service imports it lazily (through the composition root, once started),
so ``twistd --help`` and the tap module stay light.
"""

from twisted_spark.api.app import SparkAPI
from twisted_spark.api.errors import ApiError

__all__ = ["ApiError", "SparkAPI"]
