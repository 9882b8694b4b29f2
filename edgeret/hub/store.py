"""What the hub has received, on disk, once per capture.

Layout under the store folder::

    streams/ID.ert    the stream exactly as the camera sent it
    dicom/ID.dcm      the decoded image with the hub's findings (Secondary Capture)
    records/ID.json   everything else; written LAST, so it is the commit mark
    outbox/ID         present while the DICOM still has to reach the PACS
    pacs-rejected/ID.txt   the PACS refused it for good (kept, with the reason)

A stream or DICOM file without a record is a commit a crash interrupted: the
camera got no acknowledgement and will send it again, so ``recover`` removes it;
a commit that fails (a full disk) removes what it wrote itself. A record without
the stream's sha256 (what an older hub's forwarder left when the record's own
write had failed) counts as absent: the camera's retry replaces it.

The number of records and the outbox are counted once at start and then kept in
memory as commits and deliveries happen (this process holds the folder lock, so
nothing else writes here): ``GET /v1/health`` and the forwarder never list the
folders. Files are written 0600 in 0700 folders: they hold patient data.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any

from edgeret.link.atomic import fsync_dir, make_folders, write_bytes_atomic
from edgeret.link.folder_lock import FolderLock
from edgeret.link.protocol import CAPTURE_ID, check_capture_id

PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700  # patient data: the hub's user only


class HubStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.streams, self.dicom_dir = self.root / "streams", self.root / "dicom"
        self.records, self.outbox = self.root / "records", self.root / "outbox"
        self.pacs_rejected = self.root / "pacs-rejected"
        make_folders("hub store", self.root, self.streams, self.dicom_dir, self.records, self.outbox,
                     self.pacs_rejected, mode=PRIVATE_FOLDER)
        self._lock = FolderLock(self.root, "hub store")  # before recover: it deletes half-finished commits
        self.recover()
        self._mutex = threading.Lock()  # request threads commit, the forwarder delivers
        self._count = sum(1 for _ in self.records.glob("*.json"))
        marks = [p for p in self.outbox.iterdir() if CAPTURE_ID.match(p.name)]
        self._outbox = dict.fromkeys(p.name for p in sorted(marks, key=lambda p: p.stat().st_mtime))

    def close(self) -> None:
        """Release the store for another hub (the lock also ends with the process)."""
        self._lock.release()

    def recover(self) -> list[str]:
        """Remove the parts of commits a crash interrupted; returns the file names removed."""
        removed = []
        for folder in (self.streams, self.dicom_dir, self.outbox, self.records):
            for path in folder.iterdir():
                tmp = path.name.startswith(".") and path.name.endswith(".tmp")
                orphan = folder is not self.records and not (self.records / f"{path.stem}.json").exists()
                if tmp or orphan:
                    path.unlink(missing_ok=True)
                    removed.append(f"{folder.name}/{path.name}")
        return removed

    def record(self, capture_id: str) -> dict[str, Any] | None:
        """The capture's record; None when there is none, or only a partial one (no stream sha256)."""
        check_capture_id(capture_id)
        try:
            record = json.loads((self.records / f"{capture_id}.json").read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # not JSON: not a commit (records are written whole, atomically)
            return None
        if not isinstance(record, dict) or not isinstance(record.get("stream_sha256"), str):
            return None
        return record

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.records.glob("*.json"))

    def count(self) -> int:
        """How many captures are stored (kept in memory: no folder listing)."""
        with self._mutex:
            return self._count

    def dicom_path(self, capture_id: str) -> Path:
        check_capture_id(capture_id)
        return self.dicom_dir / f"{capture_id}.dcm"

    def commit(self, capture_id: str, stream: bytes, dicom: bytes, record: dict[str, Any], *,
               forward: bool) -> None:
        """Stream, DICOM, outbox mark, then the record (see the module docstring for why this order).

        If any write fails (InputError: a full disk...), what this call wrote is removed again and
        nothing is queued for the PACS: the capture is absent, and the camera's retry starts afresh."""
        check_capture_id(capture_id)
        record_path = self.records / f"{capture_id}.json"
        replaces = record_path.exists()  # a partial record (see ``record``) is overwritten, not counted twice
        parts = [(self.streams / f"{capture_id}.ert", stream), (self.dicom_path(capture_id), dicom)]
        if forward:
            parts.append((self.outbox / capture_id, b""))
        written: list[Path] = []
        try:
            for path, data in parts:
                write_bytes_atomic(path, data, mode=PRIVATE_FILE)
                written.append(path)
            self._write_record(capture_id, record)
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):  # else recover() removes it at the next start
                    path.unlink(missing_ok=True)
            raise
        with self._mutex:
            self._count += 0 if replaces else 1
            if forward:
                self._outbox[capture_id] = None

    def _write_record(self, capture_id: str, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=1, sort_keys=True)
        write_bytes_atomic(self.records / f"{capture_id}.json", text.encode(), mode=PRIVATE_FILE)
        fsync_dir(self.records)

    # --- PACS outbox ----------------------------------------------------------------------

    def outbox_ids(self) -> list[str]:
        """Captures still to send to the PACS, oldest first (kept in memory: no folder listing)."""
        with self._mutex:
            return list(self._outbox)

    def forwarded(self, capture_id: str, pacs: dict[str, Any]) -> None:
        """The PACS has it: note where in the record, then drop the outbox mark. If the record cannot be
        written (InputError) the mark stays and a later pass sends it again (the PACS keeps one copy)."""
        record = self.record(capture_id)
        if record is not None:  # never a record of PACS fields alone
            self._write_record(capture_id, {**record, "pacs": pacs})
        self._unmark(capture_id)

    def pacs_refused(self, capture_id: str, reason: str) -> None:
        write_bytes_atomic(self.pacs_rejected / f"{capture_id}.txt", (reason + "\n").encode(),
                           mode=PRIVATE_FILE)
        record = self.record(capture_id)
        if record is not None:
            self._write_record(capture_id, {**record, "pacs": {"refused": reason}})
        self._unmark(capture_id)

    def _unmark(self, capture_id: str) -> None:
        (self.outbox / capture_id).unlink(missing_ok=True)
        with self._mutex:
            self._outbox.pop(capture_id, None)
