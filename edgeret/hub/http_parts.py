"""Parts of the hub's HTTP server with one job each: escaping what cameras send before it is logged,
a connection's reads under a per-request deadline, the requests in flight (for a stop that finishes
them), and the nesting depth of a metadata header."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["DeadlineReader", "InFlight", "json_depth", "log_safe", "safe_log"]


def log_safe(text: str) -> str:
    """``text`` with every control character escaped (a newline becomes the two characters \\n): what a
    camera sends (file names, metadata, paths) can never forge a line in the hub's log."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def safe_log(log: Callable[[str], None]) -> Callable[[str], None]:
    def write(line: str) -> None:
        log(log_safe(line))

    write.escapes = True  # type: ignore[attr-defined] - so wrapping twice is a no-op
    return log if getattr(log, "escapes", False) else write


class DeadlineReader(io.RawIOBase):
    """The connection's read side with an overall deadline per request, not only a per-read timeout.

    Between requests a read waits at most ``idle`` seconds; the first byte of a request starts its
    deadline, after which every read waits at most what is left of it (and at most ``per_read``)."""

    def __init__(self, sock: socket.socket, *, idle: float, per_read: float, whole: float) -> None:
        super().__init__()
        self.sock, self.idle, self.per_read, self.whole = sock, idle, per_read, whole
        self.deadline: float | None = None  # None: between requests

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            timeout = self.idle
        else:
            timeout = min(self.per_read, self.deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError(f"the request took longer than its {self.whole:g} s deadline")
        self.sock.settimeout(timeout)
        n = self.sock.recv_into(buffer)
        if self.deadline is None and n:
            self.deadline = time.monotonic() + self.whole
        return n


class InFlight:
    """The requests being served, so that a stop finishes them (an upload in flight is answered and
    stored) instead of closing the store under them; once closing, a new request is answered 503."""

    def __init__(self) -> None:
        self._count, self.closing = 0, False
        self._cond = threading.Condition()

    def begin(self) -> bool:
        with self._cond:
            if self.closing:
                return False
            self._count += 1
            return True

    def end(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def finish(self, timeout: float) -> bool:
        """Take no new request; wait (up to ``timeout``) for those being served. True if none is left."""
        with self._cond:
            self.closing = True
            return self._cond.wait_for(lambda: self._count == 0, timeout)


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (without recursing: the value may be deep)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
