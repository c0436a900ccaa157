# -*- test-case-name: tests.test_api_auth -*-
"""Who is calling: bearer tokens (three carriers) and HTTP Basic.

:class:`Authenticator` is the only place that reads credentials.  The route
decorator in :mod:`twisted_spark.api.app` calls :meth:`Authenticator.caller`
for every token route, so handlers only ever see a resolved :class:`Caller`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from twisted_spark.api.errors import ApiError, bad_request
from twisted_spark.api.tokens import looks_like_token
from twisted_spark.models import AccessToken, User
from twisted_spark.text import NUL, is_utf8_text

# Each error is built fresh: a shared exception instance would pile up tracebacks.


def missing_token() -> ApiError:
    return ApiError(401, "invalid_request", "The access token was not found")


def invalid_token() -> ApiError:
    return ApiError(401, "invalid_token", "The access token provided is invalid.")


def expired_token() -> ApiError:
    return ApiError(401, "invalid_token", "The access token provided has expired.")


def two_carriers() -> ApiError:
    return bad_request(
        "Only one method may be used to authenticate at a time (Auth header, GET or POST)."
    )


@dataclass(frozen=True)
class Caller:
    """The authenticated user of one request, and the token it used."""

    user: User
    token: AccessToken | None = None

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin


def query_args(request) -> dict[str, str]:
    """The query string as ``{name: first value}``."""
    return uri_query_args(request.uri)


def uri_query_args(uri: bytes) -> dict[str, str]:
    """The query string of ``uri`` as ``{name: first value}`` (names percent-decoded)."""
    if b"?" not in uri:  # most API calls: nothing to parse (twice per request)
        return {}
    query = urlsplit(uri.decode("latin-1")).query
    args: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        args.setdefault(name, value)
    return args


def _authorization(headers) -> tuple[str, str] | None:
    """``(scheme in lower case, credentials)`` of the last Authorization header."""
    raw = headers.getRawHeaders(b"authorization")
    if not raw:
        return None
    scheme, _, rest = raw[-1].decode("latin-1").strip().partition(" ")
    return scheme.lower(), rest.strip()


def head_tokens(headers, uri: bytes) -> list[str]:
    """The tokens sent outside the body: ``Authorization: Bearer`` and ``?access_token=``.

    Known as soon as the request head has arrived, so a request with none of
    them can be refused before its body is read or parsed.
    """
    found = []
    auth = _authorization(headers)
    if auth is not None and auth[0] == "bearer":
        found.append(auth[1])
    query = uri_query_args(uri).get("access_token")
    if query is not None:
        found.append(query)
    return found


def bearer_token(request, body) -> str | None:
    """The token of the request, from exactly one carrier, or ``None``.

    Carriers: ``Authorization: Bearer``, ``?access_token=`` and a body field
    ``access_token``; more than one → 400.  The body field is removed.
    """
    found = head_tokens(request.requestHeaders, request.uri)
    if "access_token" in body.fields:
        found.append(body.text("access_token") or "")
        del body.fields["access_token"]
    if len(found) > 1:
        raise two_carriers()
    return found[0] if found else None


def basic_credentials(request) -> tuple[str, str] | None:
    """``(username, password)`` from an ``Authorization: Basic`` header, or None."""
    auth = _authorization(request.requestHeaders)
    if auth is None or auth[0] != "basic":
        return None
    try:
        decoded = base64.b64decode(auth[1], validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    name, sep, password = decoded.partition(":")
    if not sep:
        return None
    return name, password


class Authenticator:
    """Resolve tokens and passwords against the store.

    :param store: an :class:`~twisted_spark.interfaces.IStore`.
    :param clock: ``IReactorTime`` for token expiry.
    :param verify_password: ``(password, hash) -> Deferred[bool]``, run off the reactor.
    :param hash_password: ``(password) -> Deferred[str]``; used once to build a
        decoy hash so unknown users cost as much time as wrong passwords.
    """

    def __init__(self, store, clock, verify_password, hash_password):
        self.store = store
        self.clock = clock
        self.verify_password = verify_password
        self.hash_password = hash_password
        self._decoy = None

    async def token_caller(self, token: str | None) -> Caller:
        """The :class:`Caller` for ``token``, or the 401 :class:`ApiError`."""
        if token is None:
            raise missing_token()
        if not looks_like_token(token):
            raise invalid_token()
        record = await self.store.get_token(token)
        if record is None:
            raise invalid_token()
        if record.expired(self.clock.seconds()):
            raise expired_token()
        user = await self.store.get_user(record.username)
        if user is None:
            raise invalid_token()
        return Caller(user, record)

    async def caller(self, request, body) -> Caller:
        """Authenticate a token route (exactly one carrier, valid and unexpired)."""
        return await self.token_caller(bearer_token(request, body))

    async def optional_caller(self, request, body) -> Caller | None:
        """Like :meth:`caller`, but ``None`` when no token was sent at all."""
        token = bearer_token(request, body)
        if token is None:
            return None
        return await self.token_caller(token)

    async def check_password(self, username: str, password: str) -> User | None:
        """The user if ``password`` is right, else ``None`` (same cost either way).

        Text with an unpaired surrogate (possible in JSON, never in a stored
        name or password) or a NUL (possible in HTTP Basic's base64) is simply
        wrong: no store or hash is asked about it.
        """
        if not (is_utf8_text(username) and is_utf8_text(password)) or NUL in username:
            await self._decoy_check("")
            return None
        user = await self.store.get_user(username.strip().lower())
        if user is None:
            await self._decoy_check(password)
            return None
        if await self.verify_password(password, user.password_hash):
            return user
        return None

    async def _decoy_check(self, password: str) -> None:
        """Spend one password check's time on a hash nothing matches."""
        if self._decoy is None:
            self._decoy = await self.hash_password("decoy password, never matches")
        await self.verify_password(password, self._decoy)
