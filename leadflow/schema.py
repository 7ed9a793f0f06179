"""The CRM schema: typed SQLAlchemy 2 models that BI tools can query (the data contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# How a new submission merges into a known lead (see Store.upsert_leads): details follow the newest non-empty
# value, intent counters keep the highest value ever seen.
MERGED_DETAILS = ("email_domain", "first_name", "last_name", "phone", "job_title", "country", "company",
                  "company_key", "company_domain", "company_size", "industry", "email_opt_in")
MAX_COUNTERS = ("page_views", "pricing_page_visits", "content_downloads", "demo_requested")


class Base(DeclarativeBase):
    """Declarative base with stable constraint names, so migrations stay portable."""

    metadata = MetaData(naming_convention=NAMING)


class SalesRep(Base):
    """A person who works leads: territory, segment and capacity drive routing."""

    __tablename__ = "sales_reps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, server_default="1")
    out_of_office: Mapped[bool] = mapped_column(Boolean, server_default="0")
    territories: Mapped[list[str]] = mapped_column(Json, default=list)
    segments: Mapped[list[str]] = mapped_column(Json, default=list)
    max_open_leads: Mapped[int] = mapped_column(Integer, server_default="50")
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())


class Account(Base):
    """A company we sell to; leads link to it by domain or cleaned name."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    name_key: Mapped[str] = mapped_column(String(300), unique=True)
    domain: Mapped[str | None] = mapped_column(String(253), unique=True)
    industry: Mapped[str | None] = mapped_column(String(100))
    employee_count: Mapped[int | None] = mapped_column(Integer)
    country: Mapped[str | None] = mapped_column(String(2))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("sales_reps.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())


class Lead(Base):
    """One person: the deduplicated, normalized record every submission of theirs feeds."""

    __tablename__ = "leads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_domain: Mapped[str | None] = mapped_column(String(253))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    job_title: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    company: Mapped[str | None] = mapped_column(String(300))
    company_key: Mapped[str | None] = mapped_column(String(300), index=True)
    company_domain: Mapped[str | None] = mapped_column(String(253), index=True)
    company_size: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    email_opt_in: Mapped[bool | None] = mapped_column(Boolean)
    do_not_contact: Mapped[bool] = mapped_column(Boolean, server_default="0")
    page_views: Mapped[int | None] = mapped_column(Integer)
    pricing_page_visits: Mapped[int | None] = mapped_column(Integer)
    content_downloads: Mapped[int | None] = mapped_column(Integer)
    demo_requested: Mapped[bool | None] = mapped_column(Boolean)
    first_touch_at: Mapped[datetime] = mapped_column(Timestamp)
    first_touch_source: Mapped[str] = mapped_column(String(64))
    first_touch_utm_source: Mapped[str | None] = mapped_column(String(200))
    first_touch_utm_medium: Mapped[str | None] = mapped_column(String(200))
    first_touch_utm_campaign: Mapped[str | None] = mapped_column(String(200))
    last_touch_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    last_touch_source: Mapped[str] = mapped_column(String(64))
    last_touch_utm_source: Mapped[str | None] = mapped_column(String(200))
    last_touch_utm_medium: Mapped[str | None] = mapped_column(String(200))
    last_touch_utm_campaign: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), server_default="new", index=True)
    status_reason: Mapped[str | None] = mapped_column(String(64))
    fit_score: Mapped[float | None] = mapped_column(Float)
    intent_score: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)
    tier: Mapped[str | None] = mapped_column(String(16))
    score_policy_version: Mapped[str | None] = mapped_column(String(32))
    score_explanation: Mapped[str | None] = mapped_column(Text)
    scored_at: Mapped[datetime | None] = mapped_column(Timestamp)
    enrichment_status: Mapped[str | None] = mapped_column(String(16))
    enrichment_sources: Mapped[dict[str, Any] | None] = mapped_column(Json)
    enriched_at: Mapped[datetime | None] = mapped_column(Timestamp)
    company_legal_name: Mapped[str | None] = mapped_column(String(300))
    employee_count: Mapped[int | None] = mapped_column(Integer)
    revenue_band: Mapped[str | None] = mapped_column(String(32))
    seniority: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(2), index=True)
    priority_reason: Mapped[str | None] = mapped_column(String(200))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("sales_reps.id"), index=True)
    is_spam: Mapped[bool] = mapped_column(Boolean, server_default="0")
    spam_reasons: Mapped[str | None] = mapped_column(String(500))
    spam_flagged_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class LeadSubmission(Base):
    """One accepted input row (a touch): who, through which channel, when, and the raw payload."""

    __tablename__ = "lead_submissions"
    __table_args__ = (Index("ix_lead_submissions_lead_id_submitted_at", "lead_id", "submitted_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    batch_id: Mapped[str] = mapped_column(String(36), index=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(200))
    submitted_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    raw_payload: Mapped[dict[str, Any]] = mapped_column(Json)


class CrmTask(Base):
    """A to-do for a rep (qualify, discovery call) with its SLA due time."""

    __tablename__ = "crm_tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("sales_reps.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp)


class OutboxMessage(Base):
    """A message we decided to send; delivered exactly once by the delivery task."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)


class LeadEvent(Base):
    """The audit log: what happened to a lead, when, why and in which flow run."""

    __tablename__ = "lead_events"
    __table_args__ = (Index("ix_lead_events_lead_id_occurred_at", "lead_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"))
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime] = mapped_column(Timestamp)
    batch_id: Mapped[str | None] = mapped_column(String(36))
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class QuarantineRecord(Base):
    """A rejected input row, kept whole with the reasons it was rejected."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    batch_id: Mapped[str] = mapped_column(String(36), index=True)
    origin: Mapped[str | None] = mapped_column(String(1000))
    row_number: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str | None] = mapped_column(String(64))
    reason_codes: Mapped[str] = mapped_column(String(500))
    raw_payload: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    flow_run_id: Mapped[str | None] = mapped_column(String(36))


class Firmographic(Base):
    """Reference firmographics by company domain: the embedded enrichment provider reads these."""

    __tablename__ = "firmographics"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    legal_name: Mapped[str | None] = mapped_column(String(300))
    industry: Mapped[str | None] = mapped_column(String(100))
    employee_count: Mapped[int | None] = mapped_column(Integer)
    revenue_band: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class IntakeBatch(Base):
    """One intake run over one input: where it came from and what became of its rows."""

    __tablename__ = "intake_batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    origin: Mapped[str] = mapped_column(String(1000))
    source_name: Mapped[str | None] = mapped_column(String(64))
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
