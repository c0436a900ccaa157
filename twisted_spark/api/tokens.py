# -*- test-case-name: tests.test_api_auth -*-
"""Issuing access tokens, their expiry rules, and the failed-login throttle.

Tokens are 40 lowercase hex characters (160 bits) from :mod:`secrets`.
Expiry follows the seed: ``expires_in`` seconds (``0`` = never) or
``expires_at`` (ISO-8601 date or date-time, ``null`` = never); otherwise
the configured lifetime (90 days by default).  A finite lifetime is at most
:data:`MAX_LIFETIME` (10 years); anything else is a 400, never a token whose
expiry cannot be written as a date.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import deque
from datetime import UTC, date, datetime

from twisted_spark.api.errors import ApiError, bad_request
from twisted_spark.models import AccessToken

TOKEN_PATTERN = re.compile(r"[0-9a-f]{40}")
DIGITS = re.compile(r"[0-9]+")

#: The longest lifetime a login may ask for: 10 years (365-day years), in seconds.
MAX_LIFETIME = 10 * 365 * 86400

_NEVER = ("null", "none", "never", "")


def new_token() -> str:
    """A fresh 40-hex-character token from the OS CSPRNG."""
    return secrets.token_hex(20)


def looks_like_token(value: str) -> bool:
    return bool(TOKEN_PATTERN.fullmatch(value))


def parse_iso8601(text: str) -> float:
    """POSIX seconds of an ISO-8601 date or date-time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        if "T" not in text and " " not in text and len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):  # OverflowError: year 1 moved before year 1 by its zone
        raise bad_request(f"expires_at {text!r} is not an ISO-8601 date or date-time.") from None


def _lifetime_seconds(raw) -> int:
    """``expires_in`` as whole seconds: a JSON number, or ASCII digits as text."""
    invalid = bad_request(
        f"expires_in must be a whole number of seconds from 0 to {MAX_LIFETIME} (10 years)."
    )
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise invalid
    if isinstance(raw, str):
        text = raw.strip()
        if not DIGITS.fullmatch(text):  # int() would take "+1", "1_0" and other scripts' digits
            raise invalid
        raw = text
    try:
        seconds = int(raw)
    except (ValueError, OverflowError):  # nan, inf, more digits than int() parses
        raise invalid from None
    if not 0 <= seconds <= MAX_LIFETIME:
        raise invalid
    return seconds


def token_expiry(body, now: float, default_lifetime: int) -> float | None:
    """The ``expires_at`` (POSIX seconds or ``None`` = never) a login asks for.

    Lifetimes are bounded by :data:`MAX_LIFETIME`, so every expiry can be
    written as a date; ``0`` (or ``expires_at`` null) still means never.

    :param body: the parsed :class:`~twisted_spark.api.bodies.Body`.
    """
    has_in = "expires_in" in body.fields
    has_at = "expires_at" in body.fields
    if has_in and has_at:
        raise bad_request("Give expires_in or expires_at, not both.")
    if has_in:
        raw = body.get("expires_in")
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NEVER[:3]):
            return None
        seconds = _lifetime_seconds(raw)
        return None if seconds == 0 else now + seconds
    if has_at:
        raw = body.get("expires_at")
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NEVER):
            return None
        if not isinstance(raw, str):
            raise bad_request("expires_at must be an ISO-8601 date or date-time, or null.")
        when = parse_iso8601(raw)
        if when <= now:
            raise bad_request("expires_at is in the past.")
        if when > now + MAX_LIFETIME:
            raise bad_request("expires_at must be at most 10 years from now.")
        return when
    return now + default_lifetime if default_lifetime else None


def make_token(username: str, client_id: str, now: float, expires_at: float | None):
    return AccessToken(
        token=new_token(),
        username=username,
        client_id=client_id,
        created_at=now,
        expires_at=expires_at,
    )


def token_response(token: AccessToken, now: float) -> dict:
    """``{"access_token","token_type","expires_in"?}`` as the seed shows it."""
    body: dict[str, str | int] = {"access_token": token.token, "token_type": "bearer"}
    if token.expires_at is not None:
        body["expires_in"] = max(0, int(round(token.expires_at - now)))
    return body


def too_many_logins(wait: float) -> ApiError:
    """The 429 answer; ``Retry-After`` is ``wait`` rounded up to whole seconds (at least 1)."""
    return ApiError(
        429,
        "too_many_requests",
        "Too many failed logins from this address; try again later.",
        headers={"Retry-After": max(1, math.ceil(wait))},
    )


class LoginThrottle:
    """Limit password checks per remote address over a sliding minute.

    Every attempt is charged *before* its password is hashed
    (:meth:`charge`), so concurrent attempts cannot outrun the count: of 200
    wrong passwords sent at once from one address, ``per_minute`` are
    checked and the rest answered 429 at once.  An attempt whose password
    was right is refunded (:meth:`refund`): only failures use up the
    allowance, so users who log in often never lock their address out.

    :param clock: ``IReactorTime`` (only ``seconds()`` is used).
    :param per_minute: failures allowed in 60 s before 429; 0 disables.
    :param max_addresses: bound on remembered addresses (memory stays bounded).
    """

    WINDOW = 60.0

    def __init__(self, clock, per_minute: int, max_addresses: int = 10000):
        self.clock = clock
        self.per_minute = per_minute
        self.max_addresses = max_addresses
        self._failures: dict[str, deque] = {}

    def _recent(self, address: str) -> deque | None:
        times = self._failures.get(address)
        if times is None:
            return None
        horizon = self.clock.seconds() - self.WINDOW
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def check(self, address: str) -> None:
        """Raise the 429 :class:`ApiError` if ``address`` is throttled.

        ``Retry-After`` is the whole seconds until its oldest charge leaves
        the window, when the address may try again.
        """
        if not self.per_minute:
            return
        times = self._recent(address)
        if times is not None and len(times) >= self.per_minute:
            raise too_many_logins(times[0] + self.WINDOW - self.clock.seconds())

    def charge(self, address: str) -> float | None:
        """Count an attempt about to check a password; 429 if none is left.

        Nothing runs between the check and the count, so concurrent attempts
        each see the ones before.  :return: the charge, for :meth:`refund`.
        """
        if not self.per_minute:
            return None
        self.check(address)
        return self.failed(address)

    def refund(self, address: str, charge: float | None) -> None:
        """Take back a :meth:`charge` (the password was right)."""
        times = self._failures.get(address)
        if charge is None or times is None:
            return
        try:
            times.remove(charge)
        except ValueError:
            return  # already out of the window (or the address was forgotten)
        if not times:
            del self._failures[address]

    def failed(self, address: str) -> float | None:
        """Count a failed attempt of ``address`` now; :return: its time."""
        if not self.per_minute:
            return None
        if address not in self._failures and len(self._failures) >= self.max_addresses:
            for other in list(self._failures):
                self._recent(other)
            if len(self._failures) >= self.max_addresses:
                self._failures.pop(next(iter(self._failures)))
        times = self._failures.setdefault(address, deque(maxlen=self.per_minute))
        now = self.clock.seconds()
        times.append(now)
        return now
