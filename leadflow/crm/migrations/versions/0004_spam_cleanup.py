"""spam cleanup: tombstones of purged spam, exemptions of restored leads, index on the flag time

Revision ID: 0004_spam
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_spam"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spam_tombstones",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("reasons", sa.String(length=500), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=True),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spam_tombstones")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_spam_tombstones_email_hash")),
    )
    op.create_table(
        "spam_exemptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=True),
        sa.Column("reasons", sa.String(length=500), nullable=True),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restored_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spam_exemptions")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_spam_exemptions_email_hash")),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index("ix_leads_spam_flagged_at", ["spam_flagged_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_spam_flagged_at")
    op.drop_table("spam_exemptions")
    op.drop_table("spam_tombstones")
