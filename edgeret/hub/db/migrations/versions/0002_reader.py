"""the reader app: readers, sessions, decisions, audit log (edgeret.reader.models)

Revision ID: 0002_reader
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_reader"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_index("ix_captures_stream_bytes", "captures", ["stream_bytes", "capture_id"])
    op.create_table(
        "readers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
    )
    op.create_table(
        "reader_sessions",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("reader", sa.String(64), sa.ForeignKey("readers.name"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("last_seen", ts, nullable=False),
    )
    op.create_index("ix_reader_sessions_reader", "reader_sessions", ["reader"])
    op.create_table(
        "reader_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("capture_id", sa.String(64), sa.ForeignKey("captures.capture_id"), nullable=False),
        sa.Column("reader", sa.String(64), sa.ForeignKey("readers.name"), nullable=False),
        sa.Column("decided_at", ts, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("gradable", sa.Boolean),
        sa.Column("dr_grade", sa.Integer),
        sa.Column("dme", sa.Boolean),
        sa.Column("referable", sa.Boolean),
        sa.Column("retake", sa.Boolean, nullable=False),
        sa.Column("comment", sa.Text),
    )
    op.create_index("ix_reader_decisions_capture", "reader_decisions", ["capture_id", "decided_at"])
    op.create_table(
        "reader_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", ts, nullable=False),
        sa.Column("reader", sa.String(64)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("capture_id", sa.String(64)),
        sa.Column("client", sa.String(64)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_reader_audit_capture", "reader_audit", ["capture_id", "at"])
    op.create_index("ix_reader_audit_reader", "reader_audit", ["reader", "at"])


def downgrade() -> None:
    op.drop_table("reader_audit")
    op.drop_table("reader_decisions")
    op.drop_table("reader_sessions")
    op.drop_table("readers")
    op.drop_index("ix_captures_stream_bytes", "captures")
