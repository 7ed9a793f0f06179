"""merge the spam, report, qualification and inbox/backfill branches into one head

Revision ID: 0008
Revises: 0004_spam, 0005_reports, 0006_qual, 0007_inbox
"""

from __future__ import annotations

revision = "0008"
down_revision = ("0004_spam", "0005_reports", "0006_qual", "0007_inbox")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
