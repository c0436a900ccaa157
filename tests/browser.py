"""The system Chromium, driven by Playwright, for the console's tests.

Only Debian's ``/usr/bin/chromium`` is used (never ``playwright install``:
no browser is downloaded).  :func:`playwright_or_unavailable` skips the
calling test when either is missing, or fails it under
``TWISTED_SPARK_STRICT_TESTS=1`` (see tests/strict.py).
"""

from __future__ import annotations

from pathlib import Path

from strict import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def playwright_or_unavailable():
    """``(sync_playwright, expect)`` from Playwright, once Chromium is known to exist."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    return sync_playwright, expect


def launch(playwright):
    """A headless Chromium browser."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
