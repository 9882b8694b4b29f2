"""captures and the PACS outbox

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "captures",
        sa.Column("capture_id", sa.String(64), primary_key=True),
        sa.Column("camera", sa.String(16)),
        sa.Column("device", sa.String(64)),
        sa.Column("source_name", sa.String(256)),
        sa.Column("received_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.Column("modality", sa.String(8)),
        sa.Column("stream_sha256", sa.String(64), nullable=False),
        sa.Column("stream_bytes", sa.Integer, nullable=False),
        sa.Column("codec_id", sa.String(64)),
        sa.Column("codec_model", sa.String(64)),
        sa.Column("codec_bpp", sa.Float),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("device_quality", sa.String(32)),
        sa.Column("device_gradable", sa.Boolean),
        sa.Column("device_p_poor", sa.Float),
        sa.Column("hub_task", sa.String(64)),
        sa.Column("hub_result", sa.String(64)),
        sa.Column("hub_quality", sa.String(32)),
        sa.Column("ungradable", sa.Boolean),
        sa.Column("dr_grade", sa.Integer),
        sa.Column("referable", sa.Boolean),
        sa.Column("p_referable", sa.Float),
        sa.Column("dme", sa.Boolean),
        sa.Column("oct_quality", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.Text),
        sa.Column("dicom_path", sa.String(512)),
        sa.Column("sop_instance_uid", sa.String(64)),
        sa.Column("pacs_status", sa.String(16)),
        sa.Column("record", sa.JSON, nullable=False),
    )
    op.create_index("ix_captures_received_at", "captures", ["received_at"])
    op.create_index("ix_captures_referable", "captures", ["referable", "received_at"])
    op.create_index("ix_captures_ungradable", "captures", ["ungradable", "received_at"])
    op.create_index("ix_captures_camera", "captures", ["camera", "received_at"])
    op.create_index("ix_captures_status", "captures", ["status", "received_at"])
    op.create_index("ix_captures_pacs_status", "captures", ["pacs_status"])
    op.create_table(
        "outbox",
        sa.Column("capture_id", sa.String(64), sa.ForeignKey("captures.capture_id"), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("next_attempt_at", ts, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", ts),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("captures")
