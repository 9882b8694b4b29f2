"""Errors a user can act on.

Every user-facing failure raises an :class:`EdgeretError` subclass; the CLI
prints its message as one line and exits non-zero, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


def one_line(what: BaseException | str, limit: int = 200) -> str:
    """An exception's message (or any text) squeezed onto one line for an error message."""
    text = " ".join(str(what).split())
    text = text[:limit] + "..." if len(text) > limit else text
    return text or (type(what).__name__ if isinstance(what, BaseException) else "")


class EdgeretError(Exception):
    """A problem the user can fix (bad input, bad configuration, unknown name)."""

    exit_code = 2


class InputError(EdgeretError):
    """A file the user gave us cannot be used; the message names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ProfileError(EdgeretError):
    """A device profile is invalid; names the file, the field and the reason."""

    def __init__(self, source: str | Path, field: str, reason: str) -> None:
        self.source = str(source)
        self.field = field
        self.reason = reason
        super().__init__(f"{self.source}: field '{field}': {reason}")


class PluginError(EdgeretError):
    """Plugins conflict or a requested plugin/task/backend does not exist."""


class BackendUnavailable(EdgeretError):
    """No backend can run here; the message says why each one was skipped."""
