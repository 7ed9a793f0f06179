"""person_erasures: one row per erased person, with a keyed hash of the address instead of the address

`leadflow person erase` deletes a person's rows everywhere (their lead_events too), so this row is the audit
record of the erasure: when, why, how many rows went where, and an HMAC of the normalized email.

Revision ID: 0013_person_erasures
Revises: 0012_keyed_email_hashes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013_person_erasures"
down_revision = "0012_keyed_email_hashes"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "person_erasures",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("counts", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_person_erasures"),
    )
    op.create_index("ix_person_erasures_email_hash", "person_erasures", ["email_hash"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_person_erasures_email_hash", table_name="person_erasures")
    op.drop_table("person_erasures")
