# -*- test-case-name: tests.test_device_session -*-
"""The calls the API makes on a device, checked before they are sent (PROTOCOL.md §6-§8).

A function or variable must be in the Describe (a name not in a partial
Describe waits for the rest of it), a function argument must fit the
device's limit (``--max-function-argument``, else the platform's), and a
device being flashed refuses everything but its transfer (DeviceBusy).
:class:`RemoteCalls` is the layer of
:class:`~twisted_spark.device.session.DeviceSession` above its Describe.
"""

from __future__ import annotations

from twisted.internet import defer

from twisted_spark.coap import to_device
from twisted_spark.device.describe import DescribeAssembly
from twisted_spark.device.requests import FUNCTION, GENERIC, PING, SIGNAL, VARIABLE, Pending
from twisted_spark.errors import (
    ArgumentTooLong,
    DeviceBusy,
    DeviceNotConnected,
    UnknownFunction,
    UnknownVariable,
)
from twisted_spark.platforms import limits_for


class RemoteCalls(DescribeAssembly):
    """Function calls, variable reads, signal and ping of one session."""

    __slots__ = ("busy",)

    busy: bool

    def call_function(self, name, argument):
        """Call function ``name`` with ``argument`` (bytes or str) -> Deferred[int]."""
        return defer.ensureDeferred(self._call_function(name, argument))

    async def _call_function(self, name, argument):
        self._check_usable()
        if isinstance(argument, str):
            argument = argument.encode("utf-8")
        described = await self._described("functions", name)
        if name not in described["functions"]:
            raise UnknownFunction(name)
        limit = self.argument_limit(name)
        if len(argument) > limit:
            raise ArgumentTooLong(f"argument is {len(argument)} bytes, the device accepts {limit}")
        self._check_usable()
        return await self._request(
            FUNCTION, lambda mid, tok: to_device.function_call(mid, tok, name, argument), name=name
        )

    def argument_limit(self, name):
        """Longest argument (bytes) a call of function ``name`` may carry to this device."""
        limit = self._settings.max_function_argument
        return limit if limit is not None else limits_for(self.platform_id).argument_limit

    def read_variable(self, name):
        """Read variable ``name`` -> Deferred[bool | int | float | str]."""
        return defer.ensureDeferred(self._read_variable(name))

    async def _read_variable(self, name):
        self._check_usable()
        described = await self._described("variables", name)
        type_name = described["variables"].get(name)
        if type_name is None:
            raise UnknownVariable(name)
        self._check_usable()
        return await self._request(
            VARIABLE, lambda mid, tok: to_device.variable_request(mid, tok, name), name=type_name
        )

    def signal(self, on):
        """Start (``on``) or stop the rainbow LED -> Deferred[bool]."""
        try:
            self._check_usable()
        except Exception:
            return defer.fail()
        return self._request(SIGNAL, lambda mid, tok: to_device.signal(mid, tok, bool(on)))

    def ping(self):
        """Send a CoAP ping -> Deferred[bool] (True when the device answered)."""
        if self._closed:
            return defer.fail(DeviceNotConnected(self.device_id))
        mid = self.next_mid()
        d: defer.Deferred[bool] = defer.Deferred()
        pending = Pending(PING, d, mid, None)
        self._by_mid[mid] = pending
        self._arm(pending, self._settings.request_timeout)
        self.transport.send_coap(to_device.ping(mid))
        return d

    def send_request(self, build, timeout=None, token=None):
        """Send a tokened request built by ``build(mid, token) -> bytes``.

        Fires with the first non-empty response message (piggy-backed ACK or
        separate response).  This is the flasher's way to ask (an
        :class:`~twisted_spark.interfaces.IDeviceChannel` method).
        """
        try:
            self._check_open()
        except Exception:
            return defer.fail()
        return self._request(GENERIC, build, timeout=timeout, token=token)

    def _check_open(self):
        if self._closed:
            raise DeviceNotConnected(self.device_id)

    def _check_usable(self):
        self._check_open()
        if self.busy:
            raise DeviceBusy(self.device_id)
