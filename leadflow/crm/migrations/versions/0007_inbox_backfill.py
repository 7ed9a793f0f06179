"""lead_inbox staging table and backfill ledger

Revision ID: 0007_inbox
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_inbox"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "lead_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.Column("claim_token", sa.String(length=36), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_inbox")),
    )
    with op.batch_alter_table("lead_inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lead_inbox_claim_token"), ["claim_token"], unique=False)
        batch_op.create_index(batch_op.f("ix_lead_inbox_processed_at"), ["processed_at"], unique=False)

    op.create_table(
        "backfill_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("window_id", sa.String(length=40), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("policy_version", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("summary", _json(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfill_ledger")),
    )
    with op.batch_alter_table("backfill_ledger", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backfill_ledger_source_key_window_id_policy_version",
            ["source_key", "window_id", "policy_version"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("backfill_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_backfill_ledger_source_key_window_id_policy_version")
    op.drop_table("backfill_ledger")
    with op.batch_alter_table("lead_inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lead_inbox_processed_at"))
        batch_op.drop_index(batch_op.f("ix_lead_inbox_claim_token"))
    op.drop_table("lead_inbox")
