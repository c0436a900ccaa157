# -*- test-case-name: tests.test_packaging -*-
"""twisted-spark: a self-hosted Spark Cloud for Spark Core, Photon and P1 devices."""

__version__ = "0.1.0"

__all__ = ["__version__"]
