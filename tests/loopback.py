"""Helpers for tests on real sockets with the global reactor."""

from __future__ import annotations

import time

from twisted.internet import reactor, task


async def until(predicate, timeout=10.0, step=0.01, what="condition"):
    """Poll ``predicate`` until it is true, for at most ``timeout`` seconds.

    Tests wait for effects this way instead of sleeping a fixed time.
    Returns the predicate's (truthy) value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await task.deferLater(reactor, step, lambda: None)


def loopback_cloud(settings, store=None, executors=None, **options):
    """:func:`~twisted_spark.cloud.build_cloud` on the global reactor with the
    shipped server key: a MemoryStore and inline executors unless given."""
    from device_fixtures import SERVER_KEY

    from twisted_spark.cloud import build_cloud
    from twisted_spark.executors import Executors
    from twisted_spark.store.memory import MemoryStore

    return build_cloud(
        settings,
        reactor=reactor,
        store=store if store is not None else MemoryStore(),
        server_key=SERVER_KEY,
        executors=executors if executors is not None else Executors.synchronous(),
        **options,
    )


async def listen(cloud):
    """Serve ``cloud`` on ephemeral 127.0.0.1 ports: ``(device_port, api_port)``."""
    from twisted.internet.endpoints import TCP4ServerEndpoint

    device_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        cloud.devices
    )
    api_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(cloud.site)
    return device_port, api_port


async def shut_down(cloud, *ports):
    """What the service does on stop: stop accepting, then :meth:`Cloud.stop`."""
    for port in ports:
        await port.stopListening()
    await cloud.stop()
