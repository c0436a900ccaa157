# -*- test-case-name: tests.test_device_session -*-
"""Describe assembly: the device's functions and variables (PROTOCOL.md §8.1).

A Core answers Describe in one ACK; a Photon may send a system part, then an
application part a moment later (or everything in one part, or as separate
NON responses).  Parts are merged; a part that already names functions or
variables answers the waiting callers at once, and the request stays open
for :data:`DESCRIBE_GRACE` seconds in case an application part follows.
The result is cached (and stored through the registry when it changed)
until a firmware update invalidates it.  :class:`DescribeAssembly` is the
layer of :class:`~twisted_spark.device.session.DeviceSession` above its
request table.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from twisted_spark.coap import to_device
from twisted_spark.coap.codec import CoapError
from twisted_spark.coap.payloads import merge_describe, parse_describe, variable_type_name
from twisted_spark.device.requests import DESCRIBE, RequestTable
from twisted_spark.platforms import CORE

#: Seconds to wait for an application Describe part after a system part (§8.1).
#: What a part already says is served at once; only a name not seen yet waits.
DESCRIBE_GRACE = 1.0

log = Logger()


class DescribeAssembly(RequestTable):
    """Asks, merges, caches and stores the Describe of one session."""

    __slots__ = ("platform_id", "_sink", "_describe")

    platform_id: int
    _sink: Any
    _describe: dict[str, Any] | None

    @property
    def functions(self):
        return tuple(self._describe["functions"]) if self._describe else ()

    @property
    def variables(self):
        return dict(self._describe["variables"]) if self._describe else {}

    def describe(self):
        """Functions and variables of the device, asked once and cached."""
        if self._describe is not None:
            return defer.succeed(self._describe)
        waiting = self._describe_waiter()
        if waiting is not None:
            return waiting
        return self._request(DESCRIBE, lambda mid, tok: to_device.describe(mid, tok))

    def final_describe(self):
        """The Describe once no further part can come -> Deferred[dict].

        :meth:`describe` answers from the first part that names functions or
        variables; a Photon may still send an application part within
        ``DESCRIBE_GRACE``.  This waits for it (at once if nothing is on the way).
        """
        waiting = self._describe_waiter()
        if waiting is not None:
            return waiting
        return self.describe()

    def invalidate_describe(self):
        """Forget the cached Describe (after a firmware update)."""
        self._describe = None

    def _describe_waiter(self):
        """A Deferred for the end of the Describe on its way, or None if none is."""
        for pending in self._pending.values():
            if pending.kind == DESCRIBE:
                d: defer.Deferred = defer.Deferred()
                pending.waiters.append(d)
                return d
        return None

    async def _described(self, kind, name):
        """The Describe, waiting for the rest of a partial one if ``name`` is not in it."""
        described = self._describe
        if described is None:
            described = await self.describe()
        if name not in described[kind]:
            described = await self.final_describe()
        return described

    # -- parts (called by the request table) -----------------------------------------

    def _describe_part(self, pending, payload):
        try:
            part = parse_describe(payload)
        except CoapError as e:
            log.info("Ignoring a Describe part from {device_id}: {why}",
                     device_id=self.device_id, why=e)
            return
        pending.parts = merge_describe(pending.parts, part)
        if "m" not in part:
            self._complete_describe(pending)
            return
        # A system part (possibly merged): an application part may follow.
        # Cancel and arm anew rather than reset(): moving a timer sooner
        # makes the reactor search its whole list of timers (one per idle
        # connection and more), and cancelling is cheap.
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        self._arm(pending, DESCRIBE_GRACE)
        if pending.parts.get("f") or pending.parts.get("v"):
            # It already names functions/variables (Photon 0.6 sends everything
            # in this one part): answer from it now; lookups of other names wait.
            described = self._apply_describe(pending.parts)
            waiting = [pending.deferred] + pending.waiters
            pending.deferred, pending.waiters = None, []
            for d in waiting:
                if d is not None:
                    d.callback(described)

    def _complete_describe(self, pending):
        self._finish(pending, result=self._apply_describe(pending.parts))

    def _apply_describe(self, parts):
        """Cache (and store, if changed) the functions and variables in ``parts``."""
        raw_functions = parts.get("f")
        if not isinstance(raw_functions, list):
            raw_functions = ()
        functions = tuple(str(f) for f in raw_functions)
        variables = {}
        raw_variables = parts.get("v")
        for name, code in (raw_variables if isinstance(raw_variables, dict) else {}).items():
            variables[str(name)] = variable_type_name(code)
        if "p" in parts and self.platform_id == CORE:
            try:
                self.platform_id = int(parts["p"])
            except (TypeError, ValueError, OverflowError):  # "p": 1e999 is infinity
                pass
        described = {"functions": functions, "variables": variables}
        if described != self._describe:
            self._describe = described
            self._sink.save(self.device_id, functions=functions, variables=variables)
        return self._describe
