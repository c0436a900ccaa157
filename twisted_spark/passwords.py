# -*- test-case-name: tests.test_passwords -*-
"""Slow, salted password hashes, and Deferred versions that run off the reactor.

A hash is the self-describing string
``pbkdf2_sha256$<iterations>$<salt base64>$<hash base64>``, so the work
factor can be raised later without breaking stored hashes: old ones still
verify.

One hash costs about 0.1 s of CPU on purpose; in a server use
:func:`hash_password_async` / :func:`verify_password_async`, which run in
the ``passwords`` executor (hashlib releases the GIL while it works).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from twisted.internet import defer

ALGORITHM = "pbkdf2_sha256"

#: PBKDF2-HMAC-SHA256 rounds for new hashes (OWASP's 2023 recommendation;
#: about 0.1 s on one 2020s core).  Tests may monkeypatch it down for speed.
ITERATIONS = 600_000

#: Bytes of random salt per hash.
SALT_BYTES = 16

#: Stored iteration counts above this are refused rather than computed, so a
#: corrupted or hostile hash cannot tie up a thread for minutes.
MAX_ITERATIONS = 10_000_000


def _derive(password: str, salt: bytes, iterations: int, length: int = 32) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations, length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """Hash ``password`` with a fresh random salt and the current :data:`ITERATIONS`."""
    salt = os.urandom(SALT_BYTES)
    iterations = ITERATIONS
    digest = _derive(password, salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[int, bytes, bytes] | None:
    """Split a stored hash into (iterations, salt, digest); None if malformed."""
    try:
        algorithm, iterations_text, salt_text, digest_text = encoded.split("$")
        if algorithm != ALGORITHM or not (iterations_text.isascii() and iterations_text.isdigit()):
            return None
        iterations = int(iterations_text)
        salt = base64.b64decode(salt_text, validate=True)
        digest = base64.b64decode(digest_text, validate=True)
    except (AttributeError, ValueError, binascii.Error):
        return None
    if not 0 < iterations <= MAX_ITERATIONS or not digest:
        return None
    return iterations, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the stored hash ``encoded``.

    Comparison is constant-time; a hash in an unknown or broken format never
    matches (returns False, never raises).
    """
    parsed = _parse(encoded)
    if parsed is None:
        return False
    iterations, salt, digest = parsed
    return hmac.compare_digest(_derive(password, salt, iterations, len(digest)), digest)


def hash_password_async(password: str, executor) -> defer.Deferred:
    """:func:`hash_password` in ``executor`` (an ``IExecutor``). :rtype: Deferred[str]"""
    return executor.run(hash_password, password)


def verify_password_async(password: str, encoded: str, executor) -> defer.Deferred:
    """:func:`verify_password` in ``executor`` (an ``IExecutor``). :rtype: Deferred[bool]"""
    return executor.run(verify_password, password, encoded)
