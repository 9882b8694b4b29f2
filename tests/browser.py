"""Debian's chromium driven by Playwright for the reader app's browser tests, benchmark and demo (never a
browser download: tools/install_chromium.sh installs the Debian package)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    given = os.environ.get("EDGERET_CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    for candidate in (*CANDIDATES, shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def unavailable() -> str | None:
    """Why no headless chromium can be driven here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if chromium_path() is None:
        return "Debian's chromium is not installed (tools/install_chromium.sh, or apt-get install chromium)"
    return None


def launch(playwright):
    """Headless chromium (no sandbox: the tests may run as root, where chromium's sandbox refuses)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])
