"""leads: room on each page for updated rows (PostgreSQL fillfactor 70)

Every lead row is rewritten several times as it moves through intake's steps (spam check, details, score, step
marks). With full pages PostgreSQL writes each new version to another page and adds it to all eleven indexes of
leads; with 30% of each page left free, an update that changes no indexed column (the step marks, scores) stays on
its page as a heap-only tuple and touches no index. Existing pages are filled as before until they are rewritten.
SQLite has no such setting: nothing to do there.

Revision ID: 0023_pg_bulk
Revises: 0022_mailbox
"""

from __future__ import annotations

from alembic import op

revision = "0023_pg_bulk"
down_revision = "0022_mailbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads RESET (fillfactor)")
