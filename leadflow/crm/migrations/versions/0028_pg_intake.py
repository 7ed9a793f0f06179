"""payload and explanation columns: no planner statistics (PostgreSQL statistics target 0)

Intake analyzes leads, lead_submissions and lead_events after a bulk load (Store.refresh_statistics). Most of that
ANALYZE went into statistics of columns no WHERE clause compares as a whole: the raw payload and message of each
submission, each event's details, and the JSON or free-text explanations on leads (their keys are read with `->>`,
whose selectivity the planner estimates without column statistics). Measured on a 100k-lead CRM: ANALYZE of
lead_submissions took a quarter of its time without raw_payload and message, of lead_events a seventh without
details. SQLite keeps no such statistics: nothing to do there.

Revision ID: 0028_pg_intake
Revises: 0026_model_scores
"""

from __future__ import annotations

from alembic import op

revision = "0028_pg_intake"
down_revision = "0026_model_scores"
branch_labels = None
depends_on = None

# (table, column): read whole or through `->>`, never compared as a whole in a WHERE that a plan depends on.
UNANALYZED = (
    ("lead_submissions", "raw_payload"),
    ("lead_submissions", "message"),
    ("lead_events", "details"),
    ("leads", "enrichment_sources"),
    ("leads", "score_explanation"),
    ("leads", "checklist"),
    ("leads", "match_details"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in UNANALYZED:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS 0")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in UNANALYZED:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS -1")
