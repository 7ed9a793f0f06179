"""lead priority (shared by qualification, reports and SLA checks)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column("priority_reason", sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f("ix_leads_priority"), ["priority"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leads_priority"))
        batch_op.drop_column("priority_reason")
        batch_op.drop_column("priority")
