# -*- test-case-name: tests.test_events_bus -*-
"""The event side of the cloud: the bus and its subscribers."""
