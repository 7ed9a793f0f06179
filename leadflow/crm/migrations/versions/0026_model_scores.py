"""lead_model_scores: a trained model's conversion probability per lead, beside its rule score

A policy that names a trained model (and whose model beat its rules on the same holdout) also gives each lead a
predicted conversion probability, its top contributing features and the model version. The rule score, tier and
explanation on leads stay as they are.

Revision ID: 0026_model_scores
Revises: 0025_followup
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_model_scores"
down_revision = "0025_followup"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lead_model_scores",
        sa.Column("id", BigId, nullable=False),
        sa.Column("lead_id", BigId, nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("top_features", sa.Text(), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name="fk_lead_model_scores_lead_id_leads",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_lead_model_scores"),
        sa.UniqueConstraint("lead_id", name="uq_lead_model_scores_lead_id"),
    )
    op.create_index("ix_lead_model_scores_model_version", "lead_model_scores", ["model_version"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_lead_model_scores_model_version", table_name="lead_model_scores")
    op.drop_table("lead_model_scores")
