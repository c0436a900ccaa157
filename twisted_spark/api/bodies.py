"""Request bodies: size check first, then urlencoded, JSON or multipart.

:func:`read_body` is called once per request, before authentication (the
token may travel in the body).  The size is checked against
``Content-Length`` and the buffered content *before* anything is parsed, so a
huge body is refused with 413 without ever being decoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from twisted.web.server import Request

from twisted_spark.api.errors import ApiError, bad_request


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart body."""

    field: str
    filename: str | None
    data: bytes
    content_type: str | None = None


@dataclass
class Body:
    """The parsed body: ``fields`` (name -> value) and ``files`` (multipart)."""

    kind: str = "empty"  # "empty" | "form" | "json" | "multipart"
    fields: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    def get(self, name, default=None):
        return self.fields.get(name, default)

    def text(self, name, default=None) -> str | None:
        """The field as a string (JSON numbers/bools converted), or ``default``."""
        value = self.fields.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        return str(value)


def limited_request_factory(limit: int):
    """A ``Request`` class that stops buffering a body after ``limit`` bytes.

    twisted.web buffers the whole body before any resource runs; with this
    as the Site's ``requestFactory`` a too-large body (by ``Content-Length``
    or by the bytes actually sent) is discarded as it arrives and the API
    answers 413 (:func:`read_body` sees ``body_too_large``).
    """

    class LimitedRequest(Request):
        body_limit = limit
        body_too_large = False
        _body_received = 0

        def gotLength(self, length):
            if length is not None and length > self.body_limit:
                self.body_too_large = True
                length = 0
            super().gotLength(length)

        def handleContentChunk(self, data):
            if self.body_too_large:
                return
            self._body_received += len(data)
            if self._body_received > self.body_limit:
                self.body_too_large = True
                self.content.seek(0)
                self.content.truncate()
                return
            super().handleContentChunk(data)

    return LimitedRequest


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "Request Entity Too Large",
        f"The request body is larger than {limit} bytes.",
    )


def _content_length(request) -> int | None:
    raw = request.getHeader(b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request("Content-Length is not a number.") from None


def _buffered_size(content) -> int:
    position = content.seek(0, 2)
    content.seek(0)
    return position


def read_body(request, limit: int) -> Body:
    """Parse the body of ``request``; 413 if over ``limit`` bytes, 400 if malformed."""
    if getattr(request, "body_too_large", False):
        raise too_large(limit)
    length = _content_length(request)
    if length is not None and length > limit:
        raise too_large(limit)
    content = request.content
    if content is None:
        return Body()
    if _buffered_size(content) > limit:
        raise too_large(limit)
    data = content.read()
    content.seek(0)
    if not data:
        return Body()
    ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return _parse_json(data)
    if media == "multipart/form-data":
        return _parse_multipart(ctype, data)
    return _parse_form(data)


def _parse_json(data: bytes) -> Body:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise bad_request("The JSON request body must be an object.")
    return Body("json", value)


def _parse_form(data: bytes) -> Body:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The form body is not UTF-8.") from None
    fields = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        fields.setdefault(name, value)  # the first value of a repeated field wins
    return Body("form", fields)


def _parse_multipart(ctype: str, data: bytes) -> Body:
    head = b"Content-Type: " + ctype.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + data)
    if not message.is_multipart() or message.defects:
        raise bad_request("The multipart body is malformed.")
    body = Body("multipart")
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            body.files.setdefault(
                name, UploadedFile(name, filename, payload, part.get_content_type())
            )
        else:
            charset = part.get_content_charset() or "utf-8"
            body.fields.setdefault(name, payload.decode(charset, "replace"))
    return body
