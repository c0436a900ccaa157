# -*- test-case-name: tests.test_sim -*-
"""Virtual Spark devices: the client half of the device protocol, a fleet runner and a CLI."""

from twisted_spark.sim.device import VirtualDevice, connect_device

__all__ = ["VirtualDevice", "connect_device"]
