# -*- test-case-name: tests.test_api_http,tests.test_api_hostile -*-
"""Request bodies: size check first, then urlencoded, JSON or multipart.

:func:`check_size` refuses an over-limit body (413) from what the request
recorded while the body arrived (see :mod:`twisted_spark.api.site`), its
``Content-Length`` and the buffered bytes, without decoding anything.
:func:`parse_body` then parses it once, with bounds on everything an attacker
controls (field and part counts, part headers, nesting): every malformed body
is a 400 with the API.md §1 error body, never a 500.  The route decorator of
:mod:`twisted_spark.api.app` decides *when* a body may be parsed (after
authentication, except small urlencoded bodies that may carry the token).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_to_bytes

from multipart import (
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
    parse_options_header,
)

from twisted_spark.api.errors import ApiError, bad_request
from twisted_spark.text import holds_nul

KIB = 1024
#: Limit of the small routes (token, users, access tokens, event publishing): no
#: legitimate body there comes near it.  Bodies this small and urlencoded are
#: the only ones read before authentication (they may carry ``access_token``).
SMALL_BODY_LIMIT = 64 * KIB
#: Fields of an urlencoded body.
MAX_FORM_FIELDS = 256
#: Parts of a multipart body (a firmware project's source files and fields).
MAX_PARTS = 256
#: Bytes of one part header line, and header lines per part.
MAX_PART_HEADER = 4 * KIB
MAX_PART_HEADERS = 8
#: Bytes of a multipart field that is not a file.
MAX_PART_FIELD = SMALL_BODY_LIMIT
#: Bytes handed to the multipart parser at a time.
_CHUNK = 64 * KIB


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


def buffered_size(request) -> int:
    """Bytes of body buffered for ``request`` (0 when there is none)."""
    content = request.content
    if content is None:
        return 0
    position = content.seek(0, 2)
    content.seek(0)
    return position


def media_type(request) -> str:
    """The lower-case media type of the body, ``""`` when none was sent."""
    return media_type_of(request.getHeader(b"content-type"))


def media_type_of(content_type: bytes | None) -> str:
    """The lower-case media type of a ``Content-Type`` value (``""`` for ``None``)."""
    return (content_type or b"").decode("latin-1").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def is_form(media: str) -> bool:
    """True for the bodies parsed as urlencoded: the form type, or anything unnamed."""
    return not is_json(media) and media != "multipart/form-data"


def check_size(request, limit: int) -> None:
    """Raise 413 if the body of ``request`` is over ``limit`` bytes (nothing is parsed)."""
    if getattr(request, "body_too_large", False):
        raise too_large(limit)
    length = _content_length(request)
    if length is not None and length > limit:
        raise too_large(limit)
    if buffered_size(request) > limit:
        raise too_large(limit)


def nul_refused() -> ApiError:
    """400 for a NUL character (U+0000) anywhere in a request's text.

    PostgreSQL text cannot hold one (SQLite can); refusing it here, for
    every store, keeps both stores answering every request alike.  The
    request head is checked before authentication, a body when it is parsed.
    """
    sentence = ("The request contains a NUL character (%00 or \\u0000), which no field, "
                "name or id may hold; remove it and send the request again.")
    # ``errors`` too: the routes whose hosted form lists errors (users, claim...) have it.
    return bad_request(sentence, errors=[sentence])


def check_head_text(request) -> None:
    """400 if the path, the query or the Authorization header holds a NUL."""
    authorization = request.getHeader(b"authorization") or b""
    if b"\x00" in unquote_to_bytes(request.uri) or b"\x00" in authorization:
        raise nul_refused()


def parse_body(request) -> Body:
    """Parse the (size-checked) body of ``request``; 400 if it is malformed.

    A field holding a NUL character is refused (:func:`nul_refused`).
    """
    if buffered_size(request) == 0:
        return Body()
    content = request.content
    try:
        media = media_type(request)
        if media == "multipart/form-data":
            body = _parse_multipart(
                request.getHeader(b"content-type").decode("latin-1"), content)
        elif is_json(media):
            body = _parse_json(content.read())
        else:
            body = _parse_form(content.read())
    finally:
        content.seek(0)
    if holds_nul(body.fields):
        raise nul_refused()
    return body


def _parse_json(data: bytes) -> Body:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise bad_request("The JSON request body must be an object.")
    return Body("json", value)


def _parse_form(data: bytes) -> Body:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The form body is not UTF-8.") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise bad_request(f"The form body has more than {MAX_FORM_FIELDS} fields.") from None
    fields: dict[str, object] = {}
    for name, value in pairs:
        fields.setdefault(name, value)  # the first value of a repeated field wins
    return Body("form", fields)


def _parse_multipart(ctype: str, content) -> Body:
    """Stream ``content`` through a bounded multipart parser (no part is parsed twice)."""
    boundary = parse_options_header(ctype)[1].get("boundary")
    if not boundary:
        raise bad_request("The multipart body has no boundary.")
    body = Body("multipart")
    segment: MultipartSegment | None = None
    chunks: list[bytes] = []
    size = 0
    try:
        parser = PushMultipartParser(
            boundary,
            max_header_size=MAX_PART_HEADER,
            max_header_count=MAX_PART_HEADERS,
            max_segment_count=MAX_PARTS,
        )
        for event in parser.parse_blocking(content.read, _CHUNK):
            if isinstance(event, MultipartSegment):
                segment, chunks, size = event, [], 0
            elif event is None:
                assert segment is not None  # the parser starts every part with its segment
                _add_part(body, segment, b"".join(chunks))
            else:
                assert segment is not None
                size += len(event)
                if segment.filename is None and size > MAX_PART_FIELD:
                    raise bad_request(
                        f"The multipart field {segment.name!r} is larger than "
                        f"{MAX_PART_FIELD} bytes.")
                chunks.append(event)
    except ParserLimitReached as error:
        raise bad_request(
            f"The multipart body is over a limit ({error}; at most {MAX_PARTS} parts, "
            f"{MAX_PART_HEADERS} headers of {MAX_PART_HEADER} bytes each).") from None
    except MultipartError:
        raise bad_request("The multipart body is malformed.") from None
    return body


def _add_part(body: Body, segment: MultipartSegment, payload: bytes) -> None:
    name = segment.name
    if not name:
        return
    if segment.filename is not None:
        body.files.setdefault(
            name, UploadedFile(name, segment.filename, payload, segment.content_type))
        return
    body.fields.setdefault(name, _decode_field(name, payload, segment.charset or "utf-8"))


def _decode_field(name: str, payload: bytes, charset: str) -> str:
    """A text part in its declared charset; 400 for a charset that is not a text codec."""
    try:
        return payload.decode(charset, "replace")  # LookupError for rot13, base64...
    except (LookupError, UnicodeError):  # idna and friends refuse "replace"
        raise bad_request(
            f"The multipart field {name!r} has an unknown charset {charset!r}.") from None
