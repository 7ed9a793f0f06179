"""mailbox_messages: the messages the lead-mailbox flow took from the sales mailbox, unique by Message-ID hash

Revision ID: 0022_mailbox
Revises: 0020_webhook_deliveries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_mailbox"
down_revision = "0020_webhook_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_key", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox_messages")),
        sa.UniqueConstraint("message_key", name=op.f("uq_mailbox_messages_message_key")),
    )
    op.create_index(op.f("ix_mailbox_messages_taken_at"), "mailbox_messages", ["taken_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_mailbox_messages_taken_at"), table_name="mailbox_messages")
    op.drop_table("mailbox_messages")
