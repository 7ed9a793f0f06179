"""quarantine: which retry recovered or superseded a row, and an index on created_at

`leadflow quarantine retry` re-runs quarantined rows through intake with new options. A row that becomes a
submission is `recovered`; one that is quarantined again for other reasons (a new record) is `superseded`. Both
are stamped with the retry's intake batch and time, so a second retry leaves them alone and nothing is counted
twice. The created_at index serves `quarantine list --since` and the nightly health artifact.

Revision ID: 0018_quarantine_retry
Revises: 0015_batch_owner
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_quarantine_retry"
down_revision = "0015_batch_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("retried_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("retry_batch_id", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_quarantine_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_created_at")
        batch_op.drop_column("retry_batch_id")
        batch_op.drop_column("retried_at")
        batch_op.drop_column("retry_outcome")
