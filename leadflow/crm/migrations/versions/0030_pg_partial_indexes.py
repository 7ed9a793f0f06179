"""leads: indexes only where a statement looks leads up; owner, account and spam flag time indexed where set

Every new lead added an entry to each of the eleven indexes of leads. Five served no statement of leadflow/crm
(company_key, company_domain, created_at, last_touch_at, priority: none is compared in a WHERE clause or a join;
without statistics the planner even walked ix_leads_last_touch_at and ix_leads_status for single-row updates,
bench/RESULTS.md session 6) and go. Owner, account and spam flag time are NULL for most leads (all of an intake's
until qualification routes them or the spam check flags them); their indexes now hold only the rows where they are
set (`WHERE col IS NOT NULL`), which is all their statements look for: a purge's `spam_flagged_at < cutoff`, a
rep's or an account's leads; no statement looks for `IS NULL` through them. Partial indexes work alike on SQLite.
Without the priority and last-touch indexes, qualification's priority update and Update Lead Source's touch update
change no indexed column, so PostgreSQL may keep them on their page (heap-only) where there is room: its rule for
such updates, not measured here. The index and ANALYZE savings are measured in bench/RESULTS.md, session 12.

Revision ID: 0030_pg_partial_indexes
Revises: 0029_pg_write_once
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030_pg_partial_indexes"
down_revision = "0029_pg_write_once"
branch_labels = None
depends_on = None

DROPPED = ("company_key", "company_domain", "created_at", "last_touch_at", "priority")
WHERE_SET = ("spam_flagged_at", "owner_id", "account_id")


def upgrade() -> None:
    for column in DROPPED + WHERE_SET:
        op.drop_index(f"ix_leads_{column}", table_name="leads")
    for column in WHERE_SET:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(f"ix_leads_{column}", "leads", [column], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for column in WHERE_SET:
        op.drop_index(f"ix_leads_{column}", table_name="leads")
    for column in DROPPED + WHERE_SET:
        op.create_index(f"ix_leads_{column}", "leads", [column])
