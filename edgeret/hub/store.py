"""What the hub has received, on disk, once per capture.

Layout under the store folder::

    streams/ID.ert    the stream exactly as the camera sent it
    dicom/ID.dcm      the decoded image with the hub's findings (Secondary Capture)
    records/ID.json   everything else; written LAST, so it is the commit mark
    outbox/ID         present while the DICOM still has to reach the PACS
    pacs-rejected/ID.txt   the PACS refused it for good (kept, with the reason)

A stream or DICOM file without a record is a commit a crash interrupted: the
camera got no acknowledgement and will send it again, so ``recover`` removes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeret.atomic import fsync_dir, make_folders, write_bytes_atomic
from edgeret.folder_lock import FolderLock
from edgeret.upload_protocol import CAPTURE_ID, check_capture_id


class HubStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.streams, self.dicom_dir = self.root / "streams", self.root / "dicom"
        self.records, self.outbox = self.root / "records", self.root / "outbox"
        self.pacs_rejected = self.root / "pacs-rejected"
        make_folders("hub store", self.root, self.streams, self.dicom_dir, self.records, self.outbox,
                     self.pacs_rejected)
        self._lock = FolderLock(self.root, "hub store")  # before recover: it deletes half-finished commits
        self.recover()

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
        check_capture_id(capture_id)
        try:
            return json.loads((self.records / f"{capture_id}.json").read_text())
        except FileNotFoundError:
            return None

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.records.glob("*.json"))

    def dicom_path(self, capture_id: str) -> Path:
        check_capture_id(capture_id)
        return self.dicom_dir / f"{capture_id}.dcm"

    def commit(self, capture_id: str, stream: bytes, dicom: bytes, record: dict[str, Any], *,
               forward: bool) -> None:
        """Stream, DICOM, outbox mark, then the record (see the module docstring for why this order)."""
        check_capture_id(capture_id)
        write_bytes_atomic(self.streams / f"{capture_id}.ert", stream)
        write_bytes_atomic(self.dicom_path(capture_id), dicom)
        if forward:
            write_bytes_atomic(self.outbox / capture_id, b"")
        self._write_record(capture_id, record)

    def _write_record(self, capture_id: str, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=1, sort_keys=True)
        write_bytes_atomic(self.records / f"{capture_id}.json", text.encode())
        fsync_dir(self.records)

    # --- PACS outbox ----------------------------------------------------------------------

    def outbox_ids(self) -> list[str]:
        marks = [p for p in self.outbox.iterdir() if CAPTURE_ID.match(p.name)]
        return [p.name for p in sorted(marks, key=lambda p: p.stat().st_mtime)]

    def forwarded(self, capture_id: str, pacs: dict[str, Any]) -> None:
        """The PACS has it: note where in the record, then drop the outbox mark."""
        record = self.record(capture_id) or {}
        self._write_record(capture_id, {**record, "pacs": pacs})
        (self.outbox / capture_id).unlink(missing_ok=True)

    def pacs_refused(self, capture_id: str, reason: str) -> None:
        write_bytes_atomic(self.pacs_rejected / f"{capture_id}.txt", (reason + "\n").encode())
        record = self.record(capture_id) or {}
        self._write_record(capture_id, {**record, "pacs": {"refused": reason}})
        (self.outbox / capture_id).unlink(missing_ok=True)



