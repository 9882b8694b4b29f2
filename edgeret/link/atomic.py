"""Atomic file writes: a reader sees the old file or the whole new one, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgeret.errors import InputError


def write_bytes_atomic(path: str | Path, data: bytes, *, mode: int = 0o644) -> Path:
    """Temp file in the target folder, fsync, os.replace; InputError naming the file on failure.

    ``mode``: the file's permissions, whatever the umask (0o600 for patient data: the temp file is
    created 0600 and keeps that mode until it is complete, so it is never readable by others)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(p, f"cannot write file ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode != 0o600:
            os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(p, f"cannot write file ({e.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def make_folders(what: str, root: Path, *inside: Path, mode: int | None = None) -> None:
    """``mkdir -p`` ``root`` and the folders ``inside`` it; InputError naming ``root`` and what it is for
    when that fails. ``mode`` (e.g. 0o700 for patient data): set on each of them, also on folders that
    existed already (an older version made them 0755), whatever the umask."""
    try:
        for folder in (root, *inside):
            folder.mkdir(parents=True, exist_ok=True, **({"mode": mode} if mode is not None else {}))
            if mode is not None:
                os.chmod(folder, mode)
    except OSError as e:
        raise InputError(root, f"cannot create the {what} ({e.strerror})") from None


def staging_folder(out: str | Path) -> Path:
    """A fresh hidden folder beside ``out`` to build it in (moved into place whole when done);
    InputError naming ``out`` when its parent cannot hold it."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; the finished folder is for others to read
        return staging
    except OSError as e:
        raise InputError(out, f"cannot create the output folder here ({e.strerror})") from None


def fsync_dir(folder: str | Path) -> None:
    """Make renames and unlinks in ``folder`` survive a power cut (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
