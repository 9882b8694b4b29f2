"""Debian's chromium driven by Playwright for the reader app's browser tests and benchmark (the helpers
live in edgeret.reader.screens, which make demo uses too)."""

from edgeret.reader.screens import chromium_path, launch, unavailable

__all__ = ["chromium_path", "launch", "unavailable"]
