"""index lead submissions by (batch_id, lead_id) instead of batch_id alone

The intake spam check reads a batch's submissions of a chunk's leads (`batch_id = ? AND lead_id IN (...)`). With
an index on batch_id alone every part of the IN-list walked the whole batch so far (quadratic in the chunks of a
big file); the composite index finds each lead's rows and still serves lookups by batch alone.

Revision ID: 0009_subs_batch_lead
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009_subs_batch_lead"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lead_submissions", schema=None) as batch_op:
        batch_op.create_index("ix_lead_submissions_batch_id_lead_id", ["batch_id", "lead_id"], unique=False)
        batch_op.drop_index("ix_lead_submissions_batch_id")


def downgrade() -> None:
    with op.batch_alter_table("lead_submissions", schema=None) as batch_op:
        batch_op.create_index("ix_lead_submissions_batch_id", ["batch_id"], unique=False)
        batch_op.drop_index("ix_lead_submissions_batch_id_lead_id")
