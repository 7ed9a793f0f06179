"""leads: room on each page for a lead's rewrite after intake (PostgreSQL fillfactor 30)

Intake inserts a lead and then rewrites it twice (the spam check's step mark, then its details, score and step
mark in one UPDATE, since this revision's code). With fillfactor 70 (0023) a page took about ten freshly inserted
leads and had room for the new versions of two or three of them: most updates left their page and added an entry
to all eleven indexes of leads, and the old pages were left mostly empty. With 30% filled at insert, the rewrites
stay on their page (heap-only, no index entries), and once the old versions are pruned the table ends up smaller
than with 70. Measured at 100k: with this revision's code, 99% of the 170,000 row updates heap-only, 11,300 pages,
indexes 14 MB; while intake rewrote each lead once, 94% at 30 against 20% at 70, 12,300 pages against 13,700,
indexes 14 MB against 23 MB. Existing pages keep their fill until they are rewritten. SQLite has no such setting.

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
