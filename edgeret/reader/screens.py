"""Screenshots of the reader app with headless Debian chromium driven by Playwright (``make demo``, the
browser tests, the benchmark). Never a browser download: the Debian package's binary or $EDGERET_CHROMIUM;
without it (or without the playwright package) :func:`unavailable` says why and nothing is taken."""

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
        return "Debian's chromium is not installed (apt-get install chromium, or set $EDGERET_CHROMIUM)"
    return None


def launch(playwright):
    """Headless chromium (no sandbox: it may run as root, where chromium's sandbox refuses to start)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])


def screenshot_app(url: str, name: str, password: str, out: Path, capture_id: str | None) -> list[Path]:
    """Log in as ``name``, save the worklist (all captures) and one capture's view under ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/login")
            page.fill("#name", name)
            page.fill("#password", password)
            page.click("#login")
            page.wait_for_url(f"{url}/")
            page.goto(f"{url}/?queue=all")
            saved.append(out / "reader-worklist.png")
            page.screenshot(path=str(saved[-1]), full_page=True)
            if capture_id:
                page.goto(f"{url}/captures/{capture_id}?queue=all")
                page.wait_for_function("document.getElementById('image').naturalWidth > 0")
                saved.append(out / "reader-capture.png")
                page.screenshot(path=str(saved[-1]), full_page=True)
        finally:
            browser.close()
    for path in saved:
        path.chmod(0o600)  # the pages show patient fields
    return saved
