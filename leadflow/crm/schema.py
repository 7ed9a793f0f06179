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
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
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
    # Qualification routing: the open-lead counter is reserved with a guarded UPDATE (never above max_open_leads),
    # the assignment sequence is the round-robin rotation state, alert_url the rep's Apprise URL(s).
    open_leads: Mapped[int] = mapped_column(Integer, server_default="0")
    last_assigned_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    alert_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())
    # IANA zone follow-up steps fall due in (business hours of the rep); none means LEADFLOW_TIMEZONE.
    timezone: Mapped[str | None] = mapped_column(String(64))


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
    company_key: Mapped[str | None] = mapped_column(String(300))
    company_domain: Mapped[str | None] = mapped_column(String(253))
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
    last_touch_at: Mapped[datetime] = mapped_column(Timestamp)
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
    priority: Mapped[str | None] = mapped_column(String(2))
    priority_reason: Mapped[str | None] = mapped_column(String(200))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("sales_reps.id"))
    # Whether this lead holds one of its owner's open-lead slots (leadflow/crm/assignments.py gives it back on close).
    holds_capacity: Mapped[bool] = mapped_column(Boolean, server_default="0")
    checklist: Mapped[dict[str, Any] | None] = mapped_column(Json)
    match_details: Mapped[dict[str, Any] | None] = mapped_column(Json)
    qualified_at: Mapped[datetime | None] = mapped_column(Timestamp)
    is_spam: Mapped[bool] = mapped_column(Boolean, server_default="0")
    spam_reasons: Mapped[str | None] = mapped_column(String(500))
    spam_flagged_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # The last processing step finished (leadflow/domain/progress.py): what a re-run or repair still has to do.
    step_mark: Mapped[int] = mapped_column(SmallInteger, server_default="5")
    step_marked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class LeadSubmission(Base):
    """One accepted input row (a touch): who, through which channel, when, and the raw payload."""

    __tablename__ = "lead_submissions"
    # (batch_id, lead_id): the intake spam check reads a batch's rows of a chunk's leads; it serves batch_id alone too.
    __table_args__ = (Index("ix_lead_submissions_lead_id_submitted_at", "lead_id", "submitted_at"),
                      Index("ix_lead_submissions_batch_id_lead_id", "batch_id", "lead_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    batch_id: Mapped[str] = mapped_column(String(36))
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(200))
    submitted_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    raw_payload: Mapped[dict[str, Any]] = mapped_column(Json)


class LeadModelScore(Base):
    """A lead's predicted conversion probability from a trained model, beside (never instead of) its rule score."""

    __tablename__ = "lead_model_scores"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Gone with its lead (erasure, spam purge): a model score is derived data.
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), unique=True)
    model_version: Mapped[str] = mapped_column(String(64), index=True)
    probability: Mapped[float] = mapped_column(Float)
    # The features that pushed the probability up most, e.g. "demo requested +1.2, 51-200 employees +0.4".
    top_features: Mapped[str | None] = mapped_column(Text)
    scored_at: Mapped[datetime] = mapped_column(Timestamp)


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
    # When a manager notice first named this task as past its SLA (the SLA watch reports each breach once).
    sla_notified_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (Index("ix_crm_tasks_status_due_at", "status", "due_at"),)


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
    # Delivery bookkeeping: who claimed the row, when, when its send began (a crash after that point leaves the
    # outcome unknown) and when a failed row may be tried again.
    claim_token: Mapped[str | None] = mapped_column(String(36), index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    send_started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)


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
    created_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    # Set by `leadflow quarantine retry`: recovered (now a submission) or superseded (quarantined again under
    # other reasons, as a new record), with the retry's intake batch; a later retry skips such rows.
    retry_outcome: Mapped[str | None] = mapped_column(String(16))
    retried_at: Mapped[datetime | None] = mapped_column(Timestamp)
    retry_batch_id: Mapped[str | None] = mapped_column(String(36))


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
    status: Mapped[str] = mapped_column(String(16), index=True)
    summary: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    # The process running the batch: a batch left `running` by a process that is gone is marked `crashed`. The start
    # time tells the owner from a later process that got its pid.
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    owner_started_at: Mapped[datetime | None] = mapped_column(Timestamp)


class LeadInboxRow(Base):
    """A lead posted by a form handler or any system, waiting for the continuous intake to claim it."""

    __tablename__ = "lead_inbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The submission as the sender named its fields (canonical names or any known alias); unknown fields are kept.
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    received_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())
    claim_token: Mapped[str | None] = mapped_column(String(36), index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    processed_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    batch_id: Mapped[str | None] = mapped_column(String(36))
    # A POST to `leadflow api` with an Idempotency-Key header: unique per API key, so a retry stores nothing new.
    api_key_id: Mapped[int | None] = mapped_column(BigId)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_lead_inbox_api_key_id_idempotency_key", "api_key_id", "idempotency_key", unique=True),
    )


class ApiKey(Base):
    """A key of one site or integration posting leads to `leadflow api`; only its token's SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The token's first characters, to tell keys apart in listings; too short to guess the rest from.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    default_channel: Mapped[str | None] = mapped_column(String(64))
    # Browser origins (scheme://host[:port]) the key may post from; empty: a server-side key, browsers refused.
    allowed_origins: Mapped[list[str]] = mapped_column(Json, default=list)
    # Requests per minute for this key (None: the api_key_rate_per_minute setting).
    rate_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class WebhookDelivery(Base):
    """A lead a vendor's signed webhook delivered, by the vendor's id for it: a redelivery adds no second inbox row."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_vendor_delivery_id", "vendor", "delivery_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vendor: Mapped[str] = mapped_column(String(32))
    # The vendor's response/lead id (Typeform token, Meta leadgen_id, Calendly invitee URI, HubSpot contact@time).
    delivery_id: Mapped[str] = mapped_column(String(255))
    # No foreign key: retention deletes processed inbox rows, and the delivery must outlive them to stay deduplicated.
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.current_timestamp())


class BackfillLedgerEntry(Base):
    """One backfill window of one source under one policy version: done windows are skipped on re-runs."""

    __tablename__ = "backfill_ledger"
    __table_args__ = (
        Index("ix_backfill_ledger_source_key_window_id_policy_version", "source_key", "window_id", "policy_version",
              unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_key: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(1000))
    window_id: Mapped[str] = mapped_column(String(40))
    window_start: Mapped[datetime | None] = mapped_column(Timestamp)
    window_end: Mapped[datetime | None] = mapped_column(Timestamp)
    policy_version: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(Integer, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    summary: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ReportRun(Base):
    """One published monthly report: its headline numbers, when it was built and as of when."""

    __tablename__ = "report_runs"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    generated_at: Mapped[datetime] = mapped_column(Timestamp)
    as_of: Mapped[datetime] = mapped_column(Timestamp)
    new_leads: Mapped[int] = mapped_column(Integer)
    spam_leads: Mapped[int] = mapped_column(Integer)
    submissions: Mapped[int] = mapped_column(Integer)
    repeat_submissions: Mapped[int] = mapped_column(Integer)
    sla_eligible: Mapped[int] = mapped_column(Integer)
    sla_met: Mapped[int] = mapped_column(Integer)
    sla_rate: Mapped[float | None] = mapped_column(Float)
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    summary: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class ReportLeadVolume(Base):
    """Monthly lead volume by dimension value, with last month's and last year's new leads beside it."""

    __tablename__ = "report_lead_volume"
    __table_args__ = (UniqueConstraint("month", "dimension", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    month: Mapped[str] = mapped_column(String(7))
    dimension: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(500))
    new_leads: Mapped[int] = mapped_column(Integer)
    submissions: Mapped[int] = mapped_column(Integer)
    repeat_submissions: Mapped[int] = mapped_column(Integer)
    spam_leads: Mapped[int] = mapped_column(Integer)
    spam_submissions: Mapped[int] = mapped_column(Integer)
    new_leads_prev: Mapped[int | None] = mapped_column(Integer)
    new_leads_mom_pct: Mapped[float | None] = mapped_column(Float)
    new_leads_last_year: Mapped[int | None] = mapped_column(Integer)
    new_leads_yoy_pct: Mapped[float | None] = mapped_column(Float)


class ReportFunnel(Base):
    """One funnel stage of one creation cohort (overall, by source or by owner) in a monthly report."""

    __tablename__ = "report_funnel"
    __table_args__ = (UniqueConstraint("month", "cohort", "breakdown", "group_value", "stage"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    month: Mapped[str] = mapped_column(String(7))
    cohort: Mapped[str] = mapped_column(String(7))
    breakdown: Mapped[str] = mapped_column(String(16))
    group_value: Mapped[str] = mapped_column(String(500))
    stage: Mapped[str] = mapped_column(String(32))
    reached: Mapped[int] = mapped_column(Integer)
    passed: Mapped[int | None] = mapped_column(Integer)
    conversion_to_next: Mapped[float | None] = mapped_column(Float)
    median_hours_to_next: Mapped[float | None] = mapped_column(Float)


class ReportDisqualificationReason(Base):
    """Disqualified leads of one cohort by their latest reason code, in a monthly report."""

    __tablename__ = "report_dq_reasons"
    __table_args__ = (UniqueConstraint("month", "cohort", "breakdown", "group_value", "reason"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    month: Mapped[str] = mapped_column(String(7))
    cohort: Mapped[str] = mapped_column(String(7))
    breakdown: Mapped[str] = mapped_column(String(16))
    group_value: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(String(200))
    leads: Mapped[int] = mapped_column(Integer)
    share: Mapped[float | None] = mapped_column(Float)


class SpamTombstone(Base):
    """What remains of a purged spam lead: its email hash and reasons, so the address is known as bad later."""

    __tablename__ = "spam_tombstones"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reasons: Mapped[str] = mapped_column(String(500))
    policy_version: Mapped[str | None] = mapped_column(String(32))
    flagged_at: Mapped[datetime | None] = mapped_column(Timestamp)
    purged_at: Mapped[datetime] = mapped_column(Timestamp)


class SpamExemption(Base):
    """An address a person restored from spam: later sweeps and intake checks never flag it again."""

    __tablename__ = "spam_exemptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    lead_id: Mapped[int | None] = mapped_column(BigInteger)
    reasons: Mapped[str | None] = mapped_column(String(500))
    restored_at: Mapped[datetime] = mapped_column(Timestamp)
    restored_by: Mapped[str] = mapped_column(String(200))


class PersonErasure(Base):
    """One erased person: the audit record of the erasure (their events went with them), holding no address."""

    __tablename__ = "person_erasures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # HMAC-SHA256 of the normalized email under LEADFLOW_HASH_KEY: recognizes the person again, reveals nobody.
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    erased_at: Mapped[datetime] = mapped_column(Timestamp)
    reason: Mapped[str | None] = mapped_column(String(500))
    counts: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class MailboxMessageRow(Base):
    """One message the lead-mailbox flow took from the sales mailbox: what it became, keyed by its Message-ID hash.

    Written in the transaction that stores its lead_inbox row or touch event, so a re-run after a failed move or
    flag finds the message taken and only moves or flags it. No address, no text and no lead id: the row outlives
    erasure without holding anyone's data.
    """

    __tablename__ = "mailbox_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_key: Mapped[str] = mapped_column(String(64), unique=True)
    outcome: Mapped[str] = mapped_column(String(16))  # inquiry, touch or skipped
    reason: Mapped[str | None] = mapped_column(String(32))  # a skip reason of leadflow/domain/mailbox.py
    taken_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    handled_at: Mapped[datetime | None] = mapped_column(Timestamp)  # when it was moved or flagged
    flow_run_id: Mapped[str | None] = mapped_column(String(36))


class LeadFollowup(Base):
    """Where a lead stands in its follow-up sequence (leadflow/domain/followup.py), and when a recycled one returns."""

    __tablename__ = "lead_followups"
    __table_args__ = (Index("ix_lead_followups_state_due_at", "state", "due_at"),)

    # Cascade: erasing or purging a lead takes its sequence along (it holds no personal data of its own).
    lead_id: Mapped[int] = mapped_column(BigId, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    # active, stopped, completed (every step created) or recycled (waiting for reengage_at).
    state: Mapped[str] = mapped_column(String(16))
    cadence: Mapped[str | None] = mapped_column(String(64))
    policy_version: Mapped[str | None] = mapped_column(String(32))
    # Each (re)start is a new sequence number: the step tasks' keys name it, so a restarted cadence creates its steps
    # again while a re-run of the same hour creates none.
    sequence: Mapped[int] = mapped_column(Integer, server_default="1")
    step: Mapped[int] = mapped_column(SmallInteger, server_default="0")  # steps created so far: the next one's index
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    stopped_at: Mapped[datetime | None] = mapped_column(Timestamp)
    reengage_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    recycle_reason: Mapped[str | None] = mapped_column(String(64))
    last_outcome: Mapped[str | None] = mapped_column(String(32))
    last_outcome_at: Mapped[datetime | None] = mapped_column(Timestamp)
    reengaged_at: Mapped[datetime | None] = mapped_column(Timestamp)
    previous_owner_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


# Besides its key and email, leads is indexed only where a statement of leadflow/crm looks leads up (0030). The purge
# finds expired spam by flag time (without an index it would scan every lead each night); a rep's and an account's
# leads are found by owner and account. The three are NULL for most leads, so their indexes hold only the others:
# `col = x` and `col < x` imply `col IS NOT NULL`, and no statement looks for `IS NULL` through them.
def _index_where_set(column: str) -> Index:
    """An index of the leads whose `column` is set."""
    where = text(f"{column} IS NOT NULL")
    return Index(f"ix_leads_{column}", Lead.__table__.c[column], postgresql_where=where, sqlite_where=where)


_index_where_set("spam_flagged_at")
_index_where_set("owner_id")
_index_where_set("account_id")
