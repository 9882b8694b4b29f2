"""The reader app's tables, on the hub's metadata (one database, one migration chain: 0002_reader).

A reader's decision is a new row: the machine's answer in ``captures`` is never written by the reader app.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from edgeret.hub.db.models import Base, Capture

# the worklist's sort by stream size pages by keyset on (stream_bytes, capture_id): an index on the hub's
# table, declared here so that the hub's model file stays as the hub's branch has it
Index("ix_captures_stream_bytes", Capture.stream_bytes, Capture.capture_id)


class Reader(Base):
    __tablename__ = "readers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))  # argon2id, PHC string
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ReaderSession(Base):
    """A logged-in browser. Only the SHA-256 of the cookie's value is stored: a copy of the database does
    not let anyone log in."""

    __tablename__ = "reader_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    reader: Mapped[str] = mapped_column(String(64), ForeignKey("readers.name"))
    csrf: Mapped[str] = mapped_column(String(64))  # the token every form of this session carries
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_reader_sessions_reader", "reader"),)


class Decision(Base):
    """A reader's confirmation or override of one capture's machine answer."""

    __tablename__ = "reader_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    capture_id: Mapped[str] = mapped_column(String(64), ForeignKey("captures.capture_id"))
    reader: Mapped[str] = mapped_column(String(64), ForeignKey("readers.name"))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(16))  # confirm or override
    gradable: Mapped[bool | None] = mapped_column(Boolean)
    dr_grade: Mapped[int | None] = mapped_column(Integer)  # ICDR 0-4; None: not gradable / OCT
    dme: Mapped[bool | None] = mapped_column(Boolean)
    referable: Mapped[bool | None] = mapped_column(Boolean)
    retake: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_reader_decisions_capture", "capture_id", "decided_at"),)


class AuditEvent(Base):
    """Who did what when: every log-in, worklist page, capture view, image, decision and export."""

    __tablename__ = "reader_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reader: Mapped[str | None] = mapped_column(String(64))  # None: a failed log-in's unknown name
    action: Mapped[str] = mapped_column(String(32))
    capture_id: Mapped[str | None] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(64))  # the browser's address
    detail: Mapped[str | None] = mapped_column(Text)  # filters, the decision's id; never patient fields

    __table_args__ = (Index("ix_reader_audit_capture", "capture_id", "at"),
                      Index("ix_reader_audit_reader", "reader", "at"))
