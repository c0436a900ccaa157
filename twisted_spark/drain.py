# -*- test-case-name: tests.test_drain -*-
"""Graceful drain: stop taking work, finish what was accepted, then stop.

On SIGTERM (``twistd`` and ``python -m twisted_spark serve`` both stop the
service then), :meth:`Drain.run`:

1. reports not-ready (the ``draining`` readiness check fails) and answers
   new API requests on connections already open with 503 ``Retry-After``;
2. stops listening on the device and API ports (``stop_accepting``);
3. ends every event stream, sending the SSE ``retry:`` field first so the
   client reconnects (to another node) soon;
4. waits, at most ``--drain-timeout`` seconds, until no API request (device
   calls included) and no firmware transfer is in flight;

after which the service closes the device sessions (devices reconnect,
elsewhere when there is an elsewhere) and the store, as on any stop
(:meth:`twisted_spark.cloud.Cloud.stop`).  A request answered before the
process exits was answered completely; one that was not started gets 503
or a refused connection, both of which a client retries.
"""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger

from twisted_spark.health import NotReady

log = Logger()

#: Seconds an event-stream client is told to wait before it reconnects.
SSE_RETRY = 2.0


class Drain:
    """The drain of one server (see the module docstring).

    :param cloud: the :class:`~twisted_spark.cloud.Cloud`.
    :param clock: ``IReactorTime`` for the wait.
    :param timeout: seconds to wait for work in flight (``--drain-timeout``).
    :param poll: seconds between looks at what is still in flight.
    """

    def __init__(self, cloud, clock, timeout: float, poll: float = 0.05) -> None:
        self.cloud = cloud
        self.clock = clock
        self.timeout = timeout
        self.poll = poll
        self.draining = False

    def check(self) -> str:
        """The ``draining`` readiness check: fails once the drain has begun."""
        if self.draining:
            raise NotReady("the server is shutting down")
        return "not draining"

    def in_flight(self) -> dict[str, int]:
        """Work that must finish before the server stops: ``{what: count}`` (non-zero only)."""
        cloud = self.cloud
        work = {
            "API requests": cloud.api.in_flight - len(cloud.streams),
            "firmware transfers": len(cloud.firmware.active),
        }
        return {what: count for what, count in work.items() if count > 0}

    async def run(self, stop_accepting) -> dict[str, int]:
        """Drain; what was still in flight when the wait ended (empty: nothing lost).

        :param stop_accepting: ``() -> Deferred``, closes the listening ports.
        """
        self.draining = True
        self.cloud.api.draining = True
        await defer.maybeDeferred(stop_accepting)
        streams = self.cloud.streams.close_all("server draining", retry=SSE_RETRY)
        busy = self.in_flight()
        log.info("Draining: no new connections; {streams} event stream(s) ended; waiting up "
                 "to {timeout:g} s for {busy}", streams=streams, timeout=self.timeout,
                 busy=_describe(busy) or "nothing")
        deadline = self.clock.seconds() + self.timeout
        while busy and self.clock.seconds() < deadline:
            await task.deferLater(self.clock, min(self.poll, deadline - self.clock.seconds()),
                                  lambda: None)
            busy = self.in_flight()
        if busy:
            log.warn("Drain timeout ({timeout:g} s, --drain-timeout) reached with {busy} still "
                     "in flight; stopping anyway", timeout=self.timeout, busy=_describe(busy))
        else:
            log.info("Drained: nothing in flight; closing device sessions")
        return busy


def _describe(busy: dict[str, int]) -> str:
    return ", ".join(f"{count} {what}" for what, count in busy.items())
