# -*- test-case-name: tests.test_api_http -*-
"""What a route handler receives (:class:`Call`) and may return (:class:`Reply`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """A non-default response: another status, content type or raw bytes.

    Handlers normally return a ``dict``/``list`` (200 JSON); they return a
    ``Reply`` for anything else.
    """

    body: object = None
    status: int = 200
    content_type: str = "application/json; charset=utf-8"
    headers: dict = field(default_factory=dict)


@dataclass
class Call:
    """One API request as a handler sees it.

    :ivar api: the :class:`~twisted_spark.api.app.SparkAPI`.
    :ivar request: the twisted.web request.
    :ivar body: the parsed :class:`~twisted_spark.api.bodies.Body`
        (``access_token`` already removed).
    :ivar caller: the :class:`~twisted_spark.api.auth.Caller`, or ``None`` on
        routes without token authentication.
    """

    api: Any
    request: Any
    body: Any
    caller: Any = None

    @property
    def query(self) -> dict:
        from twisted_spark.api.auth import query_args

        return query_args(self.request)

    @property
    def remote_address(self) -> str:
        address = self.request.getClientAddress()
        return getattr(address, "host", None) or str(address)
