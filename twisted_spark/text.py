# -*- test-case-name: tests.test_api_users -*-
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
