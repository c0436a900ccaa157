# -*- test-case-name: tests.test_device_protocol -*-
"""The device side: TCP server for Spark Core/Photon devices (PROTOCOL.md)."""
