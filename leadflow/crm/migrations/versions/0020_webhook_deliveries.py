"""webhook_deliveries: each lead a signed vendor webhook delivered, so a redelivery adds no second inbox row

Vendors redeliver an event they think failed (a timeout, a 5xx); the vendor's id for the lead (Typeform's response
token, Meta's leadgen_id, Calendly's invitee URI, HubSpot's contact id and conversion time) is unique per vendor and
is written in the same transaction as the lead_inbox row it made.

Revision ID: 0020_webhook_deliveries
Revises: 0019_api_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_webhook_deliveries"
down_revision = "0019_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=255), nullable=False),
        sa.Column("inbox_id", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_vendor_delivery_id", ["vendor", "delivery_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_vendor_delivery_id")
    op.drop_table("webhook_deliveries")
