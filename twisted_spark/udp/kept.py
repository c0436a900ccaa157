# -*- test-case-name: tests.test_udp_session -*-
"""What a Gen3 CoAP session keeps with its DTLS session, in the JSON form that is persisted."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["KeptState"]


class KeptState(NamedTuple):
    """What a Gen3 device told an earlier session that it will not repeat on resuming."""

    subscriptions: tuple
    describe: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        describe = self.describe
        if describe is not None:
            describe = {"f": list(describe["functions"]), "v": dict(describe["variables"])}
        return {"s": [list(entry) for entry in self.subscriptions], "d": describe}

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
        return cls(subscriptions, describe)
