"""Per-camera credentials at the hub: which camera sent a capture, and revoking one without a restart.

``edgeret serve --cameras FILE``: one camera per line, ``NAME TOKEN`` (``#`` starts a
comment). The agent sends its own token as before (``--token-file``). The hub names
the authenticated camera in the capture's record and in the DICOM (StationName), so
the name must fit DICOM's SH: 1-16 of ``A-Z a-z 0-9 . _ -``. Tokens are at least 16
printable ASCII characters and unique.

The file is read again on every request (it is small) and parsed again when its
bytes change: deleting a line revokes that camera at its next upload. A file that
becomes unreadable or invalid fails closed (every camera refused, one log line),
and the cameras' streams stay queued on them until it is fixed.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Callable
from pathlib import Path

from edgeret.errors import InputError

NAME = re.compile(r"^[A-Za-z0-9._-]{1,16}$")
MIN_TOKEN = 16


def parse_cameras(text: str, source: str | Path) -> dict[str, str]:
    """{token: camera name}; InputError naming the file and line for anything wrong."""
    by_token: dict[str, str] = {}
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"line {number}"
        fields = line.split()
        if len(fields) != 2:
            raise InputError(source, f"{where}: expected 'NAME TOKEN', got {len(fields)} field(s)")
        name, token = fields
        if not NAME.match(name):
            raise InputError(source, f"{where}: camera name {name!r} must be 1-16 of A-Z a-z 0-9 . _ - "
                                     "(it becomes the DICOM StationName)")
        if len(token) < MIN_TOKEN or not token.isascii() or not token.isprintable():
            raise InputError(source, f"{where}: the token of '{name}' must be at least {MIN_TOKEN} "
                                     "printable ASCII characters")
        if name in names:
            raise InputError(source, f"{where}: camera '{name}' is listed twice")
        if token in by_token:
            raise InputError(source, f"{where}: '{name}' has the same token as '{by_token[token]}'")
        names.add(name)
        by_token[token] = name
    if not by_token:
        raise InputError(source, "no cameras listed (one 'NAME TOKEN' per line)")
    return by_token


class CameraKeys:
    """The cameras file, checked at start (InputError) and followed while the hub runs."""

    def __init__(self, path: str | Path, log: Callable[[str], None] = print) -> None:
        self.path, self.log = Path(path), log
        self._lock = threading.Lock()
        self._raw = self._read()
        self._keys: dict[str, str] | None = parse_cameras(self._raw.decode("utf-8", "replace"), self.path)

    @property
    def names(self) -> list[str]:
        """The cameras currently allowed (none while the file is invalid)."""
        return sorted((self._keys or {}).values())

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as e:
            raise InputError(self.path, f"cannot read the cameras file ({e.strerror})") from None

    def _current(self) -> dict[str, str] | None:
        with self._lock:
            try:
                raw = self._read()
            except InputError as e:
                raw = str(e).encode()  # remembered as "changed to unreadable"
            if raw != self._raw:
                self._raw = raw
                try:
                    self._keys = parse_cameras(raw.decode("utf-8", "replace"), self.path)
                    self.log(f"hub: cameras file re-read: {', '.join(self.names)}")
                except InputError as e:
                    self._keys = None
                    self.log(f"hub: {e}; refusing every camera until it is fixed")
            return self._keys

    def identify(self, authorization: str) -> str | None:
        """The camera whose ``Bearer`` token this is, else None (every token compared in constant time)."""
        keys = self._current()
        if not keys or not authorization.startswith("Bearer "):
            return None
        given = authorization.removeprefix("Bearer ").encode()
        found = None
        for token, name in keys.items():
            if hmac.compare_digest(given, token.encode()):
                found = name
        return found
