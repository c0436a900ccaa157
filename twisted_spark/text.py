# -*- test-case-name: tests.test_api_users,tests.test_api_hostile -*-
"""Checks on text that arrived from outside, shared by the API and the device side."""

from __future__ import annotations


def is_utf8_text(text: str) -> bool:
    """False if ``text`` holds an unpaired surrogate (JSON can spell one, ``"\\ud800"``).

    Such a string has no UTF-8 form: SQLite, the password hash, an SSE
    stream or a device would fail on it, so input holding one is refused.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: The one character PostgreSQL text cannot hold (SQLite can): refused at the
#: API for every store, so both stores accept exactly the same requests.
NUL = "\x00"


def holds_nul(value) -> bool:
    """True if ``value`` -- text, or JSON's lists and objects of it -- contains U+0000."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(holds_nul(item) for item in value)
    return False
