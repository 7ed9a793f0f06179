"""api_keys, and lead_inbox.api_key_id + idempotency_key: the HTTP front door's keys and retried POSTs

`leadflow api` takes leads over HTTP from sites and integrations, each with its own key. A key is stored only as
the SHA-256 of its high-entropy token (the token is shown once, when created); it carries a name, the channel its
leads default to, the browser origins it may be used from and an optional rate. A POST carrying an
`Idempotency-Key` header records it beside the inbox row, unique per API key, so a retried POST finds the row it
stored the first time instead of storing a second one.

Revision ID: 0019_api_keys
Revises: 0018_quarantine_retry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0019_api_keys"
down_revision = "0018_quarantine_retry"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("default_channel", sa.String(64), nullable=True),
        sa.Column("allowed_origins", Json, nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(),
                  nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
    )
    with op.batch_alter_table("lead_inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                      nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
        batch_op.create_index("ix_lead_inbox_api_key_id_idempotency_key", ["api_key_id", "idempotency_key"],
                              unique=True)


def downgrade() -> None:
    with op.batch_alter_table("lead_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_inbox_api_key_id_idempotency_key")
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("api_key_id")
    op.drop_table("api_keys")
