# -*- test-case-name: tests.test_udp_session -*-
"""What a Gen3 CoAP session keeps with its DTLS session, in the JSON form that is persisted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, NamedTuple

from twisted_spark.coap.gen3 import Gen3Hello

__all__ = ["KeptState"]

_HELLO_NUMBERS = ("product_id", "product_version", "flags", "platform_id", "system_version")
_HELLO_LIMITS = ("max_message_size", "max_binary_size", "ota_chunk_size")


class KeptState(NamedTuple):
    """What a Gen3 device told an earlier session that it will not repeat on resuming."""

    subscriptions: tuple
    describe: dict[str, Any] | None
    #: The Hello that started the DTLS session: a resuming device skips it, yet its
    #: limits (largest message, OTA chunk and binary sizes) and flags (OTA v3) still hold.
    hello: Gen3Hello | None = None

    def to_json(self) -> dict[str, Any]:
        describe = self.describe
        if describe is not None:
            describe = {"f": list(describe["functions"]), "v": dict(describe["variables"])}
        hello = asdict(self.hello) if self.hello is not None else None
        return {"s": [list(entry) for entry in self.subscriptions], "d": describe, "h": hello}

    @classmethod
    def from_json(cls, data: Any) -> KeptState | None:
        """The state :meth:`to_json` wrote, or None if ``data`` is not that."""
        try:
            subscriptions = tuple(
                (str(prefix), bool(mine), None if device is None else str(device))
                for prefix, mine, device in data["s"]
            )
            raw = data["d"]
            describe = None if raw is None else {
                "functions": tuple(str(name) for name in raw["f"]),
                "variables": {str(k): str(v) for k, v in raw["v"].items()},
            }
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return cls(subscriptions, describe, _hello(data.get("h")))


def _hello(raw: Any) -> Gen3Hello | None:
    """The kept Hello (None if absent, as state kept before it was, or not one)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("device_id"), str):
        return None
    numbers: dict[str, Any] = {name: raw.get(name) for name in _HELLO_NUMBERS + _HELLO_LIMITS}
    if not all(isinstance(numbers[name], int) for name in _HELLO_NUMBERS):
        return None
    if not all(numbers[name] is None or isinstance(numbers[name], int) for name in _HELLO_LIMITS):
        return None
    return Gen3Hello(device_id=raw["device_id"], **numbers)
