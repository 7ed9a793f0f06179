"""leads.step_mark / step_marked_at: the last processing step each lead finished, for resume and repair

Intake and qualification move a lead's mark on in the same transaction as each step's writes (Create Lead
Entry sets 0, Check Spam 1, Retrieve Lead Details 2, Calculate Lead Score 3, Assign Lead Owner 4, the end of
qualification 5), so what a lead still needs is read from the CRM after a crash. Existing leads are complete (5).

Revision ID: 0014_lead_step_marks
Revises: 0013_person_erasures
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_lead_step_marks"
down_revision = "0013_person_erasures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch_op:
        batch_op.add_column(sa.Column("step_mark", sa.SmallInteger(), server_default="5", nullable=False))
        batch_op.add_column(sa.Column("step_marked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite (3.35+) drops a column in place; a batch copy of `leads` would drop the table that the foreign keys
        # of submissions, events and tasks point at, which fails with foreign keys on and rows present.
        op.execute("ALTER TABLE leads DROP COLUMN step_marked_at")
        op.execute("ALTER TABLE leads DROP COLUMN step_mark")
        return
    op.drop_column("leads", "step_marked_at")
    op.drop_column("leads", "step_mark")
