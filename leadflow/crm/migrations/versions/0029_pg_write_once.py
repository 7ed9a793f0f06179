"""leads: room on each page for a lead's rewrite after intake (PostgreSQL fillfactor 30)

Intake inserts a lead and then rewrites it once (its details, score and step mark in one UPDATE, since this
revision's code). With fillfactor 70 (0023) a page took about ten freshly inserted leads and had room for the new
versions of two or three of them: on a 100k import four updates in five left their page and added an entry to all
eleven indexes of leads, and the old pages were left mostly empty. With 30% filled at insert, the rewrite of nearly
every lead stays on its page (heap-only, no index entries), and once the old versions are pruned the table ends
up smaller than with 70 (measured at 100k: 94% of updates heap-only against 20%, 12,300 pages against 13,700,
indexes 14 MB against 23 MB). Existing pages keep their fill until they are rewritten. SQLite has no such setting.

Revision ID: 0029_pg_write_once
Revises: 0028_pg_intake
"""

from __future__ import annotations

from alembic import op

revision = "0029_pg_write_once"
down_revision = "0028_pg_intake"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads SET (fillfactor = 30)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads SET (fillfactor = 70)")
