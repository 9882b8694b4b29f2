"""What the hub has received: the payload on disk, the records and the PACS outbox in the database.

Layout under the store folder::

    streams/ID.ert    the stream exactly as the camera sent it
    dicom/ID.dcm      the decoded image with the hub's findings
    hub.db            SQLite (WAL): one row per capture, the PACS outbox (edgeret.hub.db)

A capture's database row is the commit mark: its stream file is written and
fsynced first, then the row (``stored``); a worker later writes the DICOM and
marks the row ``graded``. A stream or DICOM file without a row is a commit a
crash interrupted: the camera got no acknowledgement and will send it again,
so ``recover`` removes it; a save that fails (a full disk) removes what it
wrote itself. Files are written 0600 in 0700 folders, the
database too: they hold patient data.

A store an older hub kept as JSON records (``records/ID.json``) is imported
with ``edgeret hub migrate-store DIR`` (``edgeret.hub.migrate_store``); the hub
refuses to open it before that, rather than serve without its records.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from edgeret.errors import EdgeretError
from edgeret.hub.db import BUSY_TIMEOUT_MS, DB_FILE, open_repository, sqlite_url
from edgeret.hub.db.models import STORED
from edgeret.hub.db.repository import HubRepository
from edgeret.link.atomic import make_folders, write_bytes_atomic
from edgeret.link.folder_lock import FolderLock
from edgeret.link.protocol import check_capture_id

PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700  # patient data: the hub's user only


def private_database_file(root: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (its -wal and -shm files take its mode)."""
    path = root / DB_FILE
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE)
    os.close(fd)
    os.chmod(path, PRIVATE_FILE)


class HubStore:
    def __init__(self, root: str | Path, *, database_url: str | None = None,
                 busy_timeout_ms: int | None = None) -> None:
        """``database_url``: a SQLAlchemy URL (PostgreSQL for a multi-node hub); default SQLite in the
        store folder."""
        self.root = Path(root)
        self.streams, self.dicom_dir = self.root / "streams", self.root / "dicom"
        make_folders("hub store", self.root, self.streams, self.dicom_dir, mode=PRIVATE_FOLDER)
        legacy = self.root / "records"
        if legacy.is_dir() and any(legacy.glob("*.json")):
            raise EdgeretError(f"{self.root}: this store keeps its records as JSON files (an older hub); "
                               f"import them first: edgeret hub migrate-store {self.root}")
        self._lock = FolderLock(self.root, "hub store")  # before recover: it deletes half-finished commits
        if database_url is None:
            private_database_file(self.root)
        try:
            self.db: HubRepository = open_repository(database_url or sqlite_url(self.root),
                                                     busy_timeout_ms=busy_timeout_ms or BUSY_TIMEOUT_MS)
        except BaseException:
            self._lock.release()
            raise
        self.recover()

    def close(self) -> None:
        """Release the store for another hub (the lock also ends with the process)."""
        self.db.close()
        self._lock.release()

    def recover(self) -> list[str]:
        """Remove the parts of commits a crash interrupted; returns the file names removed."""
        known = set(self.db.ids())
        removed = []
        for folder in (self.streams, self.dicom_dir):
            for path in folder.iterdir():
                tmp = path.name.startswith(".") and path.name.endswith(".tmp")
                if tmp or path.stem not in known:
                    path.unlink(missing_ok=True)
                    removed.append(f"{folder.name}/{path.name}")
        return removed

    def record(self, capture_id: str) -> dict[str, Any] | None:
        """The capture's record; None when there is none."""
        check_capture_id(capture_id)
        return self.db.get(capture_id)

    def ids(self) -> list[str]:
        return sorted(self.db.ids())

    def count(self) -> int:
        """How many captures are stored (one indexed count in the database: no folder listing)."""
        return self.db.count()

    def dicom_path(self, capture_id: str) -> Path:
        check_capture_id(capture_id)
        return self.dicom_dir / f"{capture_id}.dcm"

    def stream_path(self, capture_id: str) -> Path:
        check_capture_id(capture_id)
        return self.streams / f"{capture_id}.ert"

    def save(self, capture_id: str, stream: bytes, record: dict[str, Any]) -> None:
        """The stream (fsynced), then its row as ``stored``: the capture is acknowledged once this returns.

        If either fails (a full disk, a database that cannot be written) the stream is removed again: the
        capture is absent and the camera's retry starts afresh."""
        check_capture_id(capture_id)
        path = self.stream_path(capture_id)
        try:
            write_bytes_atomic(path, stream, mode=PRIVATE_FILE)
            self.db.add({**record, "capture_id": capture_id}, status=STORED)
        except BaseException:
            with contextlib.suppress(OSError):  # else recover() removes it at the next start
                path.unlink(missing_ok=True)
            raise

    # --- PACS outbox ----------------------------------------------------------------------

    def outbox_ids(self) -> list[str]:
        """Captures still to send to the PACS, oldest first."""
        return self.db.outbox_ids()

    def forwarded(self, capture_id: str, pacs: dict[str, Any]) -> None:
        """The PACS has it: the record notes where and the outbox row is settled (one transaction). If
        the database cannot be written the row stays pending and a later pass sends it again (the PACS
        keeps one copy)."""
        self.db.outbox_sent(capture_id, pacs)

    def pacs_refused(self, capture_id: str, reason: str) -> None:
        self.db.outbox_refused(capture_id, reason)
