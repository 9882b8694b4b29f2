"""The hub's tables (SQLAlchemy 2.x): one row per capture, one outbox row per PACS send.

The ``.ert`` stream and the DICOM file stay on disk as the durable payload; the
database holds what a reader app filters and sorts on (as columns) and the full
record (``record``, JSON). Changing a table here needs a migration in
``migrations/versions`` (the tests check that the two agree).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# a capture's life at the hub
STORED, DECODED, GRADED, FAILED = "stored", "decoded", "graded", "failed"
STATUSES = (STORED, DECODED, GRADED, FAILED)
# its PACS status (None: the hub forwards nowhere)
PACS_PENDING, PACS_SENT, PACS_REFUSED = "pending", "sent", "refused"


class Base(DeclarativeBase):
    pass


class Capture(Base):
    __tablename__ = "captures"

    capture_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera: Mapped[str | None] = mapped_column(String(16))  # the authenticated camera: the site
    device: Mapped[str | None] = mapped_column(String(64))  # self-reported by the agent
    source_name: Mapped[str | None] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # UTC
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    modality: Mapped[str | None] = mapped_column(String(8))
    stream_sha256: Mapped[str] = mapped_column(String(64))
    stream_bytes: Mapped[int] = mapped_column(Integer)
    codec_id: Mapped[str | None] = mapped_column(String(64))  # the rate point, e.g. fundus-factorized-q6
    codec_model: Mapped[str | None] = mapped_column(String(64))
    codec_bpp: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)  # as the stream's header declares
    height: Mapped[int | None] = mapped_column(Integer)
    device_quality: Mapped[str | None] = mapped_column(String(32))  # the camera's verdict
    device_gradable: Mapped[bool | None] = mapped_column(Boolean)
    device_p_poor: Mapped[float | None] = mapped_column(Float)
    hub_task: Mapped[str | None] = mapped_column(String(64))
    hub_result: Mapped[str | None] = mapped_column(String(64))  # the hub's one-word answer
    hub_quality: Mapped[str | None] = mapped_column(String(32))
    ungradable: Mapped[bool | None] = mapped_column(Boolean)
    dr_grade: Mapped[int | None] = mapped_column(Integer)  # ICDR 0-4
    referable: Mapped[bool | None] = mapped_column(Boolean)
    p_referable: Mapped[float | None] = mapped_column(Float)
    dme: Mapped[bool | None] = mapped_column(Boolean)
    oct_quality: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    dicom_path: Mapped[str | None] = mapped_column(String(512))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    pacs_status: Mapped[str | None] = mapped_column(String(16))
    record: Mapped[dict] = mapped_column(JSON)  # everything, as GET /v1/captures/ID answers

    __table_args__ = (
        Index("ix_captures_received_at", "received_at"),
        Index("ix_captures_referable", "referable", "received_at"),
        Index("ix_captures_ungradable", "ungradable", "received_at"),
        Index("ix_captures_camera", "camera", "received_at"),
        Index("ix_captures_status", "status", "received_at"),
        Index("ix_captures_pacs_status", "pacs_status"),
    )


class OutboxItem(Base):
    """One DICOM object to send to the PACS (one per capture: the UIDs come from the capture id)."""

    __tablename__ = "outbox"

    capture_id: Mapped[str] = mapped_column(String(64), ForeignKey("captures.capture_id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # pending, sent, refused
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)
