"""intake_batches.owner_host, owner_pid, owner_started_at and an index on status: dead runs are noticed

A batch records the process that runs it (host, pid and the pid's start time, so a reused pid is not taken for the
owner). A batch still `running` whose owner is gone is marked `crashed`; the status index finds running batches.

Revision ID: 0015_batch_owner
Revises: 0014_lead_step_marks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_batch_owner"
down_revision = "0014_lead_step_marks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("intake_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_host", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("owner_pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("owner_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_intake_batches_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("intake_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_intake_batches_status")
        batch_op.drop_column("owner_started_at")
        batch_op.drop_column("owner_pid")
        batch_op.drop_column("owner_host")
