"""leads.holds_capacity: whether a lead holds one of its owner's open-lead slots

Live assignments reserve a slot in `sales_reps.open_leads`; the flag lets a status change or a spam flag give the
slot back exactly once (and a reopened lead take it again). Leads assigned before this revision by live runs are
marked from their qualification tasks, and each rep's counter is recounted from the marks: before this revision a
closed or spam-flagged lead never gave its slot back, so the counters only grew.

Revision ID: 0011_rep_capacity_holds
Revises: 0010_task_sla_watch
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_rep_capacity_holds"
down_revision = "0010_task_sla_watch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holds_capacity", sa.Boolean(), server_default="0", nullable=False))
    # A live assignment left a qualification task of the owner, open or done (replays and spam flags cancel
    # theirs); only a lead still on the owner's plate (the open statuses of leadflow.crm.assignments) holds the slot.
    op.execute(
        "UPDATE leads SET holds_capacity = true WHERE owner_id IS NOT NULL AND spam_flagged_at IS NULL "
        "AND NOT is_spam AND status IN ('new', 'working', 'qualified', 'discovery_call_booked') AND EXISTS ("
        "SELECT 1 FROM crm_tasks t WHERE t.lead_id = leads.id AND t.kind = 'qualification' "
        "AND t.status IN ('open', 'done') AND t.owner_id = leads.owner_id)"
    )
    op.execute(
        "UPDATE sales_reps SET open_leads = (SELECT COUNT(*) FROM leads "
        "WHERE leads.owner_id = sales_reps.id AND leads.holds_capacity)"
    )


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("holds_capacity")
