"""lead qualification: checklist and match details on leads, routing state on reps, outbox delivery claims

Revision ID: 0006_qual
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_qual"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checklist", _json(), nullable=True))
        batch_op.add_column(sa.Column("match_details", _json(), nullable=True))
        batch_op.add_column(sa.Column("qualified_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sales_reps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_leads", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_assigned_seq", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("alert_url", sa.String(length=500), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("send_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_claim_token"), ["claim_token"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_claim_token"))
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("send_started_at")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claim_token")
    with op.batch_alter_table("sales_reps", schema=None) as batch_op:
        batch_op.drop_column("alert_url")
        batch_op.drop_column("last_assigned_seq")
        batch_op.drop_column("open_leads")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("qualified_at")
        batch_op.drop_column("match_details")
        batch_op.drop_column("checklist")
