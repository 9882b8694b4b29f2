"""``edgeret hub migrate-store DIR``: import an older hub's JSON records into the database, once.

An older hub kept ``records/ID.json`` (the commit mark), ``outbox/ID`` (a PACS send
still due) and ``pacs-rejected/ID.txt``. Each committed record becomes a row (its
outbox mark an outbox row); then ``records/`` and ``outbox/`` are renamed
``*.imported`` (kept, never deleted). Idempotent: a record whose id has a row is
skipped, so a run that was interrupted is simply run again. A record without the
stream's sha256 or without its stream file was never a commit: skipped, counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeret.errors import EdgeretError
from edgeret.hub.db import open_repository, sqlite_url
from edgeret.hub.db.models import GRADED
from edgeret.hub.db.repository import AlreadyThere
from edgeret.link.atomic import make_folders
from edgeret.link.folder_lock import FolderLock
from edgeret.link.protocol import CAPTURE_ID


@dataclass(frozen=True)
class Migrated:
    imported: int
    already: int  # had a row already (an earlier run)
    skipped: int  # not a commit: no stream sha256, not JSON, or no stream file


def migrate_store(root: str | Path, *, database_url: str | None = None) -> Migrated:
    root = Path(root)
    records = root / "records"
    if not root.is_dir():
        raise EdgeretError(f"{root}: no such hub store")
    make_folders("hub store", root, mode=0o700)
    lock = FolderLock(root, "hub store")  # no hub may run on it meanwhile
    try:
        if database_url is None:
            from edgeret.hub.store import private_database_file

            private_database_file(root)
        db = open_repository(database_url or sqlite_url(root))
        try:
            counts = [0, 0, 0]
            for path in sorted(records.glob("*.json")) if records.is_dir() else []:
                counts[_import_one(db, root, path)] += 1
        finally:
            db.close()
        for name in ("records", "outbox", "pacs-rejected"):
            folder = root / name
            if folder.is_dir():
                folder.rename(_free_name(root, f"{name}.imported"))
    finally:
        lock.release()
    return Migrated(*counts)


def _import_one(db, root: Path, path: Path) -> int:
    """0 imported, 1 already there, 2 skipped."""
    capture_id = path.stem
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return 2
    if (not CAPTURE_ID.match(capture_id) or not isinstance(record, dict)
            or not isinstance(record.get("stream_sha256"), str)
            or not (root / "streams" / f"{capture_id}.ert").is_file()):
        return 2
    rejected = root / "pacs-rejected" / f"{capture_id}.txt"
    if rejected.is_file():
        record["pacs"] = {"refused": rejected.read_text().strip()}
    record["capture_id"] = capture_id
    pending = (root / "outbox" / capture_id).exists()
    dicom = root / "dicom" / f"{capture_id}.dcm"
    try:
        db.add(record, status=GRADED, dicom_path=str(dicom.relative_to(root)) if dicom.is_file() else None,
               forward=pending)
    except AlreadyThere:
        return 1
    return 0


def _free_name(root: Path, name: str) -> Path:
    target, n = root / name, 1
    while target.exists():
        n += 1
        target = root / f"{name}.{n}"
    return target
