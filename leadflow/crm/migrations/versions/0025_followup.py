"""lead_followups: where each lead stands in its follow-up cadence, and when a recycled lead is re-engaged

The lead-follow-up flow enrolls owned working leads in a cadence (leadflow/config/policies/cadence.json), creates
each step's task once (keyed by lead, sequence and step), stops sequences on a status change, a reply or a booked
meeting, and re-activates recycled leads on their re-engage date. sales_reps.timezone places the steps in the rep's
business hours.

Revision ID: 0025_followup
Revises: 0023_pg_bulk
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_followup"
down_revision = "0023_pg_bulk"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lead_followups",
        sa.Column("lead_id", BIG_ID, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cadence", sa.String(64), nullable=True),
        sa.Column("policy_version", sa.String(32), nullable=True),
        sa.Column("sequence", sa.Integer(), server_default="1", nullable=False),
        sa.Column("step", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("stop_reason", sa.String(64), nullable=True),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("reengage_at", TS, nullable=True),
        sa.Column("recycle_reason", sa.String(64), nullable=True),
        sa.Column("last_outcome", sa.String(32), nullable=True),
        sa.Column("last_outcome_at", TS, nullable=True),
        sa.Column("reengaged_at", TS, nullable=True),
        sa.Column("previous_owner_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name="fk_lead_followups_lead_id_leads", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("lead_id", name="pk_lead_followups"),
    )
    op.create_index("ix_lead_followups_state_due_at", "lead_followups", ["state", "due_at"], unique=False)
    op.create_index("ix_lead_followups_reengage_at", "lead_followups", ["reengage_at"], unique=False)
    op.add_column("sales_reps", sa.Column("timezone", sa.String(64), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # In place (SQLite 3.35+): a batch copy of sales_reps would drop the table leads and tasks point at.
        op.execute("ALTER TABLE sales_reps DROP COLUMN timezone")
    else:
        op.drop_column("sales_reps", "timezone")
    op.drop_index("ix_lead_followups_reengage_at", table_name="lead_followups")
    op.drop_index("ix_lead_followups_state_due_at", table_name="lead_followups")
    op.drop_table("lead_followups")
