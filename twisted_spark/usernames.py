# -*- test-case-name: tests.test_api_users -*-
"""What a username may be: the one rule sign-up (API) and ``users add`` (CLI) share.

Names are lowercased first (API.md §3).  Then: 1 to 254 characters, no
whitespace, and nothing HTTP Basic authentication cannot carry -- Basic
sends ``user:password`` in UTF-8 and splits at the first colon, so a name
with ``:`` or with an unpaired surrogate (which has no UTF-8 form) could
never list its tokens.  Control and format characters (zero-width spaces,
bidi overrides) are refused too: they make names that look like others and
corrupt logs.
"""

from __future__ import annotations

import re

from twisted_spark.text import is_utf8_text

_SHAPE = re.compile(r"\S{1,254}")


def username_problem(username: str) -> str | None:
    """The sentence saying why ``username`` (already lowercased) is refused, or None."""
    if not _SHAPE.fullmatch(username):
        return "The username must be 1 to 254 characters without spaces."
    if ":" in username:
        return ("The username must not contain ':' (HTTP Basic authentication separates "
                "the username from the password with it).")
    if not is_utf8_text(username):
        return "The username must not contain unpaired surrogates (no UTF-8 form)."
    # isprintable() is False exactly for the Unicode categories Other and Separator.
    if not username.isprintable():
        return "The username must not contain control, format or other invisible characters."
    return None
