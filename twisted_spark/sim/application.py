# -*- test-case-name: tests.test_sim -*-
"""The application half of a virtual device: its functions, variables and Describe.

Functions are ``name -> callable(argument: bytes) -> int``; variables are
``name -> (type, value)`` with type one of ``bool``, ``int32``, ``string``,
``double`` and value a constant or a zero-argument callable.  Describe is
answered in one of the styles real firmware uses (PROTOCOL.md §8.1).
:class:`ApplicationServer` is a mixin of
:class:`~twisted_spark.sim.device.VirtualDevice`.
"""

from __future__ import annotations

from twisted_spark.coap import codec, from_device, payloads, to_device
from twisted_spark.platforms import CORE, CORE_LIMITS

TYPE_CODES = {"bool": 1, "int32": 2, "string": 4, "double": 9}
DescribeStyles = ("core", "photon-0.4.9", "photon-0.6", "photon-separate")


def default_functions():
    """``brew`` returns the argument length; ``negate`` returns -int(argument)."""
    return {
        "brew": lambda arg: len(arg),
        "negate": lambda arg: -int(arg or b"0"),
    }


def default_variables():
    """One variable of every type."""
    return {
        "ready": ("bool", True),
        "temperature": ("int32", -98765),
        "message": ("string", "woot"),
        "ratio": ("double", -104.858),
    }


class ApplicationServer:
    """Serves Describe, function calls and variable reads (module docstring).

    The device provides ``send``, ``_next_mid``, ``platform_id``,
    ``functions``, ``variables``, ``describe_style``, ``separate_variables``
    and ``calls``.
    """

    def _describe(self, msg):
        mid, token = msg.message_id, msg.token
        app = {
            "f": list(self.functions),
            "v": {name: TYPE_CODES[t] for name, (t, _) in self.variables.items()},
        }
        system = {
            "p": self.platform_id,
            "m": [{"s": 262144, "l": "m", "vc": 30, "vv": 30, "f": "s", "n": "1", "v": 11}],
        }
        style = self.describe_style
        if style == "core":
            self.send(from_device.describe_response(mid, token, app))
        elif style == "photon-0.4.9":
            self.send(from_device.describe_response(mid, token, {**system, "f": [], "v": {}}))
            self.send(from_device.describe_response(mid, token, app))
        elif style == "photon-0.6":
            self.send(from_device.describe_response(mid, token, {**app, **system}))
        else:
            self.send(to_device.empty_ack(mid))
            for part in (system, app):
                body = from_device.describe_response(self._next_mid(), token, part)
                self.send(bytes([(body[0] & 0xCF) | 0x10]) + body[1:])  # ACK -> NON

    def _function(self, msg):
        name, argument = payloads.parse_function_call(msg)
        self.calls.append((name, argument))
        func = self.functions.get(name)
        if self.platform_id == CORE and len(argument) > CORE_LIMITS.argument_limit:
            self.transport.loseConnection()  # what a real Core does
            return
        self.send(to_device.empty_ack(msg.message_id))
        value = func(argument) if func is not None else -1
        self.send(from_device.function_return(self._next_mid(), msg.token, int(value)))

    def _variable(self, msg):
        name = payloads.parse_variable_request(msg)
        entry = self.variables.get(name)
        if entry is None:
            self.send(from_device.coded_ack(msg.message_id, msg.token, codec.Code.NOT_FOUND))
            return
        type_name, value = entry
        if callable(value):
            value = value()
        encoded = payloads.encode_variable(type_name, value)
        if self.separate_variables:
            self.send(to_device.empty_ack(msg.message_id))
            mid = self._next_mid()
            self.send(from_device.variable_value(mid, msg.token, encoded, separate=True))
        else:
            self.send(from_device.variable_value(msg.message_id, msg.token, encoded))
