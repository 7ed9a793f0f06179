"""monthly report tables: runs, lead volume, funnel and disqualification reasons, keyed by month

Revision ID: 0005_reports
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_reports"
down_revision = "0003"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _group_columns() -> list[sa.Column]:
    return [
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("cohort", sa.String(length=7), nullable=False),
        sa.Column("breakdown", sa.String(length=16), nullable=False),
        sa.Column("group_value", sa.String(length=500), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "report_runs",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("new_leads", sa.Integer(), nullable=False),
        sa.Column("spam_leads", sa.Integer(), nullable=False),
        sa.Column("submissions", sa.Integer(), nullable=False),
        sa.Column("repeat_submissions", sa.Integer(), nullable=False),
        sa.Column("sla_eligible", sa.Integer(), nullable=False),
        sa.Column("sla_met", sa.Integer(), nullable=False),
        sa.Column("sla_rate", sa.Float(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("summary", JSON, nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_report_runs")),
    )
    op.create_table(
        "report_lead_volume",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.Column("new_leads", sa.Integer(), nullable=False),
        sa.Column("submissions", sa.Integer(), nullable=False),
        sa.Column("repeat_submissions", sa.Integer(), nullable=False),
        sa.Column("spam_leads", sa.Integer(), nullable=False),
        sa.Column("spam_submissions", sa.Integer(), nullable=False),
        sa.Column("new_leads_prev", sa.Integer(), nullable=True),
        sa.Column("new_leads_mom_pct", sa.Float(), nullable=True),
        sa.Column("new_leads_last_year", sa.Integer(), nullable=True),
        sa.Column("new_leads_yoy_pct", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_lead_volume")),
        sa.UniqueConstraint("month", "dimension", "value", name=op.f("uq_report_lead_volume_month_dimension_value")),
    )
    op.create_table(
        "report_funnel",
        *_group_columns(),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("reached", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=True),
        sa.Column("conversion_to_next", sa.Float(), nullable=True),
        sa.Column("median_hours_to_next", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_funnel")),
        sa.UniqueConstraint("month", "cohort", "breakdown", "group_value", "stage",
                            name=op.f("uq_report_funnel_month_cohort_breakdown_group_value_stage")),
    )
    op.create_table(
        "report_dq_reasons",
        *_group_columns(),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("leads", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_dq_reasons")),
        sa.UniqueConstraint("month", "cohort", "breakdown", "group_value", "reason",
                            name=op.f("uq_report_dq_reasons_month_cohort_breakdown_group_value_reason")),
    )


def downgrade() -> None:
    op.drop_table("report_dq_reasons")
    op.drop_table("report_funnel")
    op.drop_table("report_lead_volume")
    op.drop_table("report_runs")
