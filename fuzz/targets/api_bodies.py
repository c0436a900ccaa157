# -*- test-case-name: tests.test_fuzz_corpus -*-
"""Request bodies (``api/bodies.py``): urlencoded, JSON and multipart, size checks first.

The input's first line is the ``Content-Type`` (and, after a tab, the
``Content-Length``) header; the rest is the body.  Contract: ``check_size``
passes or raises a 413 :class:`ApiError`; ``parse_body`` returns a
:class:`Body` within the documented bounds or raises a 400 :class:`ApiError`
(the API.md §1 error body); nothing else, and the body can be read again
afterwards (``content`` is rewound).
"""

from __future__ import annotations

import io
import json

from fuzz.harness import ContractBroken
from twisted_spark.api.bodies import (
    MAX_FORM_FIELDS,
    MAX_PARTS,
    Body,
    check_size,
    parse_body,
)
from twisted_spark.api.errors import ApiError

LIMIT = 64 * 1024


class _Request:
    """The two things the body parsers read of a ``twisted.web`` request."""

    def __init__(self, headers: dict[bytes, bytes], body: bytes) -> None:
        self.headers = headers
        self.content = io.BytesIO(body)

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name.lower())


def _check(body: Body) -> None:
    if len(body.fields) > max(MAX_FORM_FIELDS, MAX_PARTS) and body.kind != "json":
        raise ContractBroken(f"{len(body.fields)} fields kept")
    if len(body.files) > MAX_PARTS:
        raise ContractBroken(f"{len(body.files)} files kept")
    for name in body.fields:
        body.text(name)
    json.dumps(body.fields)


def one_input(data: bytes) -> None:
    head, _, payload = data.partition(b"\n")
    content_type, _, length = head.partition(b"\t")
    headers = {b"content-type": content_type}
    if length:
        headers[b"content-length"] = length
    request = _Request(headers, payload)
    try:
        check_size(request, LIMIT)
    except ApiError as error:
        if error.status not in (400, 413):
            raise
        return
    try:
        body = parse_body(request)
    except ApiError as error:
        if error.status != 400:
            raise ContractBroken(f"status {error.status} for a malformed body") from error
        error.body()
        return
    if request.content.tell() != 0:
        raise ContractBroken("the body was not rewound")
    _check(body)
