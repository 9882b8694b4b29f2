"""The device's durable upload queue: one ``.ert`` stream and one ``.json`` record per capture.

Crash safety comes from the order of writes, not from a database:

* ``put`` writes the stream, then the record, each atomically (temp file,
  fsync, rename). The record is the commit mark: a stream without a record is
  an interrupted ``put`` and is removed by ``recover``.
* ``ack`` removes the record first, then the stream, so a crash in between
  leaves an orphan stream (removed at the next start), never a record that
  points at nothing.
* a stream the hub refuses for good is moved to ``rejected/`` with the hub's
  reason, never deleted: a person decides what to do with it.

Files are written 0600 in 0700 folders (patient data), whatever the umask.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeret.link.atomic import fsync_dir, make_folders, write_bytes_atomic
from edgeret.link.folder_lock import FolderLock
from edgeret.link.protocol import CAPTURE_ID, check_capture_id

PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700  # streams and records hold patient data: the agent's user only


@dataclass(frozen=True)
class SpoolItem:
    """One queued capture: its id (sha256 of the original capture file), stream and metadata."""

    capture_id: str
    stream_path: Path
    meta: dict[str, Any]

    def read_stream(self) -> bytes:
        return self.stream_path.read_bytes()


class Spool:
    """A folder-backed FIFO of streams waiting for the hub's acknowledgement."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.queue = self.root / "queue"
        self.rejected = self.root / "rejected"
        make_folders("spool", self.root, self.queue, self.rejected, mode=PRIVATE_FOLDER)
        self._lock = FolderLock(self.root, "spool")  # before recover: it deletes half-finished puts
        self.recover()

    def close(self) -> None:
        """Release the spool for another agent (the lock also ends with the process)."""
        self._lock.release()

    def _paths(self, capture_id: str) -> tuple[Path, Path]:
        check_capture_id(capture_id)
        return self.queue / f"{capture_id}.ert", self.queue / f"{capture_id}.json"

    def recover(self) -> list[str]:
        """Remove what an interrupted put/ack left behind; returns the names removed."""
        removed = []
        for path in self.queue.iterdir():
            leftover_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
            orphan_stream = path.suffix == ".ert" and not path.with_suffix(".json").exists()
            if leftover_tmp or orphan_stream:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def contains(self, capture_id: str) -> bool:
        return self._paths(capture_id)[1].exists()

    def put(self, capture_id: str, stream: bytes, meta: dict[str, Any]) -> bool:
        """Queue a stream; False if this capture is already queued (a re-run after a crash)."""
        stream_path, record_path = self._paths(capture_id)
        if record_path.exists():
            return False
        write_bytes_atomic(stream_path, stream, mode=PRIVATE_FILE)
        record = {**meta, "capture_id": capture_id, "stream_bytes": len(stream), "queued_at": time.time()}
        write_bytes_atomic(record_path, json.dumps(record, sort_keys=True).encode(), mode=PRIVATE_FILE)
        fsync_dir(self.queue)
        return True

    def pending(self) -> list[SpoolItem]:
        """Committed items, oldest first."""
        items = []
        for record_path in self.queue.glob("*.json"):
            capture_id = record_path.stem
            if not CAPTURE_ID.match(capture_id):
                continue
            try:
                meta = json.loads(record_path.read_text())
            except (OSError, ValueError):  # unreadable record: keep the files, skip the item
                continue
            items.append(SpoolItem(capture_id, record_path.with_suffix(".ert"), meta))
        return sorted(items, key=lambda item: (item.meta.get("queued_at", 0.0), item.capture_id))

    def ack(self, capture_id: str) -> None:
        """The hub has the stream: forget it (record first, see the module docstring)."""
        stream_path, record_path = self._paths(capture_id)
        record_path.unlink(missing_ok=True)
        stream_path.unlink(missing_ok=True)
        fsync_dir(self.queue)

    def reject(self, capture_id: str, reason: str) -> Path:
        """Move a stream the hub refused for good to ``rejected/``, with the reason beside it."""
        stream_path, record_path = self._paths(capture_id)
        write_bytes_atomic(self.rejected / f"{capture_id}.reason.txt", (reason + "\n").encode(),
                           mode=PRIVATE_FILE)
        os.replace(stream_path, self.rejected / stream_path.name)
        os.replace(record_path, self.rejected / record_path.name)
        fsync_dir(self.queue)
        return self.rejected / stream_path.name

    def rejected_ids(self) -> list[str]:
        return sorted(p.stem for p in self.rejected.glob("*.ert"))

