"""One process per folder: an advisory lock that the kernel releases when its process ends, however it ends.

The agent's spool and the hub's store each clean up half-finished writes when they open (``recover``);
a second agent or hub on the same folder would delete the first one's writes in flight. The lock makes
the second one stop with a one-line error instead. Nothing is left to clean up after a crash or
``kill -9``: the lock dies with the process (``flock``), the pid in the file is only for the message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from edgeret.errors import InputError

try:
    import fcntl
except ImportError:  # Windows: no lock (cameras and hubs run Linux)
    fcntl = None

LOCK_NAME = ".lock"


class FolderLock:
    """Held from construction until :meth:`release` (or the end of the process)."""

    def __init__(self, folder: str | Path, what: str) -> None:
        self.folder = Path(folder)
        self._file: IO[str] | None = None
        if fcntl is None:
            return
        handle = open(self.folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another open of the file: another process (or object)
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise InputError(self.folder, f"this {what} is in use by {who}; stop it first, or give "
                                          f"another folder") from None
        except OSError:  # a file system without locks (some network mounts): run unguarded, as before
            handle.close()
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None
