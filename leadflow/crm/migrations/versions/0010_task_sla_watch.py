"""crm_tasks.sla_notified_at and an index on (status, due_at) for the SLA watch

The every-minute delivery run looks for open tasks past their SLA due time that no manager notice has named
yet; `sla_notified_at` records that one did, so every breach is reported exactly once.

Revision ID: 0010_task_sla_watch
Revises: 0009_subs_batch_lead
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_task_sla_watch"
down_revision = "0009_subs_batch_lead"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crm_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_notified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_crm_tasks_status_due_at", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("crm_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_tasks_status_due_at")
        batch_op.drop_column("sla_notified_at")
