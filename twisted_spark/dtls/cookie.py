# -*- test-case-name: tests.test_dtls_handshake -*-
"""Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1).

A cookie is a 4-byte timestamp and an HMAC-SHA256, truncated to 28 bytes,
over that timestamp, the client's address and its ClientHello random.  The
server keeps nothing between the first ClientHello and the second, and
does no expensive work for an address that has not echoed a fresh cookie.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["COOKIE_LENGTH", "CookieJar"]

COOKIE_LENGTH = 32
_MAC_LENGTH = COOKIE_LENGTH - 4


def _address_bytes(address: object) -> bytes:
    return repr(address).encode()


class CookieJar:
    """Makes and checks cookies with one secret; they last ``lifetime`` seconds."""

    __slots__ = ("_secret", "lifetime")

    def __init__(self, secret: bytes, lifetime: float = 60.0) -> None:
        if len(secret) < 16:
            raise ValueError("cookie secret must be at least 16 bytes")
        self._secret = secret
        self.lifetime = lifetime

    def _mac(self, stamp: bytes, address: object, client_random: bytes) -> bytes:
        message = stamp + client_random + _address_bytes(address)
        return hmac.digest(self._secret, message, hashlib.sha256)[:_MAC_LENGTH]

    def make(self, address: object, client_random: bytes, now: float) -> bytes:
        stamp = (int(now) & 0xFFFFFFFF).to_bytes(4, "big")
        return stamp + self._mac(stamp, address, client_random)

    def check(self, cookie: bytes, address: object, client_random: bytes, now: float) -> str | None:
        """None if the cookie is ours, fresh and for this client; else why not."""
        if len(cookie) != COOKIE_LENGTH:
            return f"cookie of {len(cookie)} bytes"
        stamp = cookie[:4]
        if not hmac.compare_digest(cookie[4:], self._mac(stamp, address, client_random)):
            return "cookie does not match this address and ClientHello"
        age = (int(now) - int.from_bytes(stamp, "big")) & 0xFFFFFFFF
        if age > self.lifetime:
            return f"cookie is {age} s old"
        return None
