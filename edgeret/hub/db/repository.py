"""The one way the hub (intake, workers, forwarder, health) and a reader app read and write the database.

Every method is one short transaction. A capture's row is the commit mark of an
upload: its stream file is written (fsynced) first, then the row, so a crash
between the two leaves a stream without a row, which ``HubStore.recover`` removes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgeret.hub.db.models import (
    FAILED,
    GRADED,
    PACS_PENDING,
    PACS_REFUSED,
    PACS_SENT,
    STORED,
    Capture,
    OutboxItem,
)


class AlreadyThere(Exception):
    """A row for this capture id exists already (another upload of it committed first)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def columns(record: dict[str, Any]) -> dict[str, Any]:
    """The filterable columns of a record (the record itself stays whole in the JSON column)."""
    stream = record.get("stream") or {}
    device = record.get("device_quality") if isinstance(record.get("device_quality"), dict) else {}
    findings = record.get("findings") if isinstance(record.get("findings"), dict) else {}
    task = findings.get("task")
    oct_task = task == "quality-oct"
    hub_quality = findings.get("quality", findings.get("grade") if oct_task else None)
    ungradable = None
    if "gradable" in findings:
        ungradable = not findings["gradable"]
    elif "quality" in findings:
        ungradable = findings["quality"] == "poor"
    received = record.get("received_at")
    pacs = record.get("pacs")
    return {
        "camera": record.get("camera"), "device": _text(record.get("device"), 64),
        "source_name": _text(record.get("source_name"), 256),
        "received_at": datetime.fromtimestamp(received, timezone.utc) if received else utcnow(),
        "modality": record.get("modality") or stream.get("modality"),
        "stream_sha256": record["stream_sha256"], "stream_bytes": int(stream.get("bytes") or 0),
        "codec_id": stream.get("codec"), "codec_model": stream.get("model"), "codec_bpp": stream.get("bpp"),
        "width": stream.get("width"), "height": stream.get("height"),
        "device_quality": _text(device.get("quality", device.get("grade")), 32),
        "device_gradable": device.get("gradable") if isinstance(device.get("gradable"), bool) else None,
        "device_p_poor": device.get("p_poor") if isinstance(device.get("p_poor"), int | float) else None,
        "hub_task": task, "hub_result": _text(findings.get("result", findings.get("grade")), 64),
        "hub_quality": hub_quality, "ungradable": ungradable,
        "dr_grade": findings.get("dr_grade"), "referable": findings.get("referable"),
        "p_referable": findings.get("p_referable"), "dme": findings.get("dme"),
        "oct_quality": findings.get("grade") if oct_task else None,
        "sop_instance_uid": (record.get("dicom") or {}).get("sop_instance_uid"),
        "pacs_status": None if not pacs else PACS_REFUSED if "refused" in pacs
        else PACS_SENT if pacs.get("sop_instance_uid") else PACS_PENDING,
    }


def _text(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


@dataclass(frozen=True)
class Due:
    capture_id: str
    dicom_path: str | None
    attempts: int


class HubRepository:
    """Captures and the PACS outbox. Records are the dicts ``GET /v1/captures/ID`` answers."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(sqlite_immediate=True)

    def close(self) -> None:
        self.engine.dispose()

    def _read(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _write(self) -> Session:
        return Session(self._writer, expire_on_commit=False)

    # --- captures ---------------------------------------------------------------------------

    def get(self, capture_id: str) -> dict[str, Any] | None:
        """The record, with ``status`` (and ``failure_reason`` once failed); None if unknown."""
        with self._read() as session:
            row = session.get(Capture, capture_id)
            return None if row is None else _record_of(row)

    def row(self, capture_id: str) -> Capture | None:
        with self._read() as session:
            return session.get(Capture, capture_id)

    def add(self, record: dict[str, Any], *, status: str = STORED, dicom_path: str | None = None,
            forward: bool = False) -> None:
        """Insert a capture (and, with ``forward``, its outbox row) in one transaction; AlreadyThere if
        its id has a row."""
        now = utcnow()
        row = Capture(capture_id=record["capture_id"], status=status, updated_at=now, dicom_path=dicom_path,
                      record=_json_safe(record), **columns(record))
        try:
            with self._write() as session, session.begin():
                session.add(row)
                session.flush()
                if forward:
                    session.add(_outbox_row(row.capture_id, now))
        except IntegrityError:
            raise AlreadyThere(record["capture_id"]) from None

    def complete(self, record: dict[str, Any], *, dicom_path: str, forward: bool) -> None:
        """A stored capture is decoded, graded and its DICOM written: its row says so, and with
        ``forward`` its outbox row is added, in the same transaction."""
        now = utcnow()
        capture_id = record["capture_id"]
        with self._write() as session, session.begin():
            session.execute(update(Capture).where(Capture.capture_id == capture_id).values(
                status=GRADED, failure_reason=None, updated_at=now, dicom_path=dicom_path,
                record=_json_safe(record), **columns(record)))
            if forward and session.get(OutboxItem, capture_id) is None:
                session.add(_outbox_row(capture_id, now))

    def mark(self, capture_id: str, status: str) -> None:
        """A step of the capture's processing is done (``decoded``)."""
        with self._write() as session, session.begin():
            session.execute(update(Capture).where(Capture.capture_id == capture_id).values(
                status=status, updated_at=utcnow()))

    def fail(self, capture_id: str, reason: str) -> None:
        """Processing after the answer failed for good (the stream does not decode, ...)."""
        with self._write() as session, session.begin():
            row = session.get(Capture, capture_id)
            if row is not None:
                row.status, row.failure_reason, row.updated_at = FAILED, reason, utcnow()
                row.record = {**row.record, "status": FAILED, "failure_reason": reason}

    def ids(self, status: str | None = None) -> list[str]:
        """Capture ids (with ``status``: only those), oldest first."""
        query = select(Capture.capture_id).order_by(Capture.received_at, Capture.capture_id)
        if status is not None:
            query = query.where(Capture.status == status)
        with self._read() as session:
            return list(session.scalars(query))

    def count(self, status: str | None = None) -> int:
        query = select(func.count()).select_from(Capture)
        if status is not None:
            query = query.where(Capture.status == status)
        with self._read() as session:
            return int(session.scalar(query) or 0)

    def worklist(self, *, referable: bool | None = None, ungradable: bool | None = None,
                 camera: str | None = None, status: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, newest_first: bool = True, limit: int = 100,
                 offset: int = 0) -> list[dict[str, Any]]:
        """Records for a reader's worklist, filtered on the indexed columns, by received time."""
        query = select(Capture)
        for column, value in ((Capture.referable, referable), (Capture.ungradable, ungradable),
                              (Capture.camera, camera), (Capture.status, status)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(Capture.received_at >= since)
        if until is not None:
            query = query.where(Capture.received_at < until)
        order = Capture.received_at.desc() if newest_first else Capture.received_at
        query = query.order_by(order).limit(limit).offset(offset)
        with self._read() as session:
            return [_record_of(row) for row in session.scalars(query)]

    # --- PACS outbox ------------------------------------------------------------------------

    def outbox_waiting(self) -> int:
        query = select(func.count()).select_from(OutboxItem).where(OutboxItem.state == PACS_PENDING)
        with self._read() as session:
            return int(session.scalar(query) or 0)

    def outbox_ids(self) -> list[str]:
        """Captures still to send, oldest first."""
        query = (select(OutboxItem.capture_id).where(OutboxItem.state == PACS_PENDING)
                 .order_by(OutboxItem.created_at, OutboxItem.capture_id))
        with self._read() as session:
            return list(session.scalars(query))

    def outbox_due(self, limit: int = 100, now: datetime | None = None) -> list[Due]:
        """Pending sends whose next attempt is due, oldest first."""
        query = (select(OutboxItem.capture_id, Capture.dicom_path, OutboxItem.attempts)
                 .join(Capture, Capture.capture_id == OutboxItem.capture_id)
                 .where(OutboxItem.state == PACS_PENDING, OutboxItem.next_attempt_at <= (now or utcnow()))
                 .order_by(OutboxItem.created_at, OutboxItem.capture_id).limit(limit))
        with self._read() as session:
            return [Due(*row) for row in session.execute(query)]

    def outbox_sent(self, capture_id: str, pacs: dict[str, Any]) -> None:
        """The PACS has it: the outbox row and the record say where, in one transaction."""
        self._settle(capture_id, PACS_SENT, pacs, error=None)

    def outbox_refused(self, capture_id: str, reason: str) -> None:
        """The PACS refused it for good (4xx): kept with its reason, not retried."""
        self._settle(capture_id, PACS_REFUSED, {"refused": reason}, error=reason)

    def outbox_retry(self, capture_id: str, error: str, delay: float) -> None:
        """A failed attempt: counted, its error kept, the next one not before ``delay`` seconds."""
        with self._write() as session, session.begin():
            item = session.get(OutboxItem, capture_id)
            if item is not None:
                item.attempts += 1
                item.last_error = error
                item.next_attempt_at = utcnow() + timedelta(seconds=delay)

    def outbox_item(self, capture_id: str) -> OutboxItem | None:
        with self._read() as session:
            return session.get(OutboxItem, capture_id)

    def _settle(self, capture_id: str, state: str, pacs: dict[str, Any], error: str | None) -> None:
        now = utcnow()
        with self._write() as session, session.begin():
            item = session.get(OutboxItem, capture_id)
            if item is not None:
                item.state, item.attempts, item.last_error = state, item.attempts + 1, error
                item.sent_at = now if state == PACS_SENT else None
            row = session.get(Capture, capture_id)
            if row is not None:
                row.record = {**row.record, "pacs": pacs}
                row.pacs_status, row.updated_at = state, now


def _outbox_row(capture_id: str, now: datetime) -> OutboxItem:
    return OutboxItem(capture_id=capture_id, state=PACS_PENDING, attempts=0, created_at=now,
                      next_attempt_at=now)


def _record_of(row: Capture) -> dict[str, Any]:
    record = dict(row.record)
    record["status"] = row.status
    if row.failure_reason:
        record["failure_reason"] = row.failure_reason
    return record


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """The record as JSON will hold it (no private keys)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}
