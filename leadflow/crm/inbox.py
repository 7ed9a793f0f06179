"""The `lead_inbox` staging table: any system inserts leads, intake claims them, processes them and marks them.

Claims are atomic: on PostgreSQL the candidate rows are locked with FOR UPDATE SKIP LOCKED, so concurrent claimers
take disjoint rows without waiting; on SQLite every write transaction starts as BEGIN IMMEDIATE (see store.py), so
the claiming UPDATE runs alone. A claim older than the claim timeout counts as abandoned (the run crashed) and
its rows are claimed again; processing is idempotent, so a row handled twice is still stored once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, bindparam, func, or_, select, update

from leadflow.crm.schema import ApiKey, CrmTask, IntakeBatch, Lead, LeadInboxRow, OutboxMessage
from leadflow.crm.store import Store
from leadflow.domain.inbox import InboxError, inbox_frame

INBOX = LeadInboxRow.__table__
API_KEYS = ApiKey.__table__
# The event `leadflow submit` emits after an insert; the continuous intake deployment is triggered by it.
SUBMITTED_EVENT = "leadflow.lead.submitted"
INBOX_RESOURCE_ID = "leadflow.lead_inbox"
DEFAULT_CLAIM_TIMEOUT = timedelta(minutes=15)


@dataclass
class InboxClaim:
    """Rows one claimer took from the inbox, under one token."""

    token: str
    ids: list[int] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __len__(self) -> int:
        return len(self.ids)


def submit_lead(store: Store, payload: dict[str, Any], now: datetime | None = None) -> int:
    """Insert one lead into the inbox (what a form handler does in SQL) and return its inbox id."""
    if not isinstance(payload, dict) or not payload:
        raise InboxError("a lead must be a non-empty JSON object of field -> value")
    values: dict[str, Any] = {"payload": payload}
    if now is not None:
        values["received_at"] = now
    with store.begin() as conn:
        return int(conn.execute(INBOX.insert().values(values).returning(INBOX.c.id)).scalar_one())


class KeyRevoked(Exception):
    """The API key a lead was posted with is revoked (or gone): the lead was not stored."""


def submit_lead_once(store: Store, payload: dict[str, Any], *, api_key_id: int | None = None,
                     idempotency_key: str | None = None, require_active_key: bool = False) -> tuple[int, bool]:
    """Insert one lead unless this API key already stored one under this idempotency key: (inbox id, inserted).

    The row is committed before this returns, so an id given to a client is never lost. With require_active_key,
    raises KeyRevoked instead when the API key is revoked, checked in the insert's own transaction.
    """
    if not isinstance(payload, dict) or not payload:
        raise InboxError("a lead must be a non-empty JSON object of field -> value")
    with store.begin() as conn:
        if require_active_key and api_key_id not in _active_keys(conn, [api_key_id]):
            raise KeyRevoked("the API key is revoked")
        return _insert_once(store, conn, payload, api_key_id, idempotency_key)


def submit_leads_once(store: Store, leads: list[tuple[dict[str, Any], int | None, str | None]], *,
                      require_active_key: bool = False) -> list[tuple[int, bool] | Exception]:
    """submit_lead_once for many leads (payload, api key id, idempotency key) in one transaction: one commit.

    What concurrent API requests share. If the transaction fails, each lead is tried on its own, so one bad row
    fails only its own request: its place in the result holds the error instead of (inbox id, inserted). With
    require_active_key, a lead whose key is revoked is not stored and its place holds a KeyRevoked.
    """
    try:
        with store.begin() as conn:
            active = _active_keys(conn, [key_id for _, key_id, _ in leads]) if require_active_key else None
            results: list[tuple[int, bool] | Exception] = [KeyRevoked("the API key is revoked")] * len(leads)
            stored = [i for i, (_, key_id, _) in enumerate(leads) if active is None or key_id in active]
            # Leads without an idempotency key in one multi-row INSERT (one statement, not one per lead).
            plain = [i for i in stored if leads[i][2] is None]
            if plain:
                stmt = INBOX.insert().returning(INBOX.c.id, sort_by_parameter_order=True)
                ids = conn.execute(stmt, [{"payload": leads[i][0], "api_key_id": leads[i][1],
                                           "idempotency_key": None} for i in plain]).scalars().all()
                for i, inbox_id in zip(plain, ids, strict=True):
                    results[i] = (int(inbox_id), True)
            for i in stored:
                if leads[i][2] is not None:
                    results[i] = _insert_once(store, conn, *leads[i])
            return results
    except Exception:
        if len(leads) == 1:
            raise
    results = []
    for payload, key_id, idempotency in leads:
        try:
            results.append(submit_lead_once(store, payload, api_key_id=key_id, idempotency_key=idempotency,
                                            require_active_key=require_active_key))
        except Exception as exc:  # handed to that lead's request, which answers for it
            results.append(exc)
    return results


def _active_keys(conn: Any, key_ids: list[int | None]) -> set[int]:
    """Which of these API key ids are unrevoked (read in the insert's transaction, so a revoke is seen at once).

    On PostgreSQL the rows are read FOR SHARE: a revoke's UPDATE waits for the inserts that already passed this
    check, so once `leadflow api keys revoke` has returned no lead of that key can still commit (under READ
    COMMITTED a plain read would let one commit just after). SQLite serializes writers anyway.
    """
    wanted = sorted({k for k in key_ids if k is not None})
    if not wanted:
        return set()
    stmt = (select(API_KEYS.c.id).where(API_KEYS.c.id.in_(wanted), API_KEYS.c.revoked_at.is_(None))
            .with_for_update(read=True))
    return {int(k) for k in conn.execute(stmt).scalars()}


def _insert_once(store: Store, conn: Any, payload: dict[str, Any], api_key_id: int | None,
                 idempotency_key: str | None) -> tuple[int, bool]:
    values = {"payload": payload, "api_key_id": api_key_id, "idempotency_key": idempotency_key}
    if idempotency_key is None:
        return int(conn.execute(INBOX.insert().values(values).returning(INBOX.c.id)).scalar_one()), True
    # ON CONFLICT DO NOTHING on the (api_key_id, idempotency_key) index: two concurrent retries insert one row.
    stmt = (store.insert(INBOX).values(values)
            .on_conflict_do_nothing(index_elements=["api_key_id", "idempotency_key"]).returning(INBOX.c.id))
    inserted = conn.execute(stmt).scalar_one_or_none()
    if inserted is not None:
        return int(inserted), True
    same = select(INBOX.c.id).where(INBOX.c.idempotency_key == idempotency_key,
                                    INBOX.c.api_key_id.is_(None) if api_key_id is None
                                    else INBOX.c.api_key_id == api_key_id)
    return int(conn.execute(same).scalar_one()), False


def _claimable(now: datetime, claim_timeout: timedelta):
    return and_(INBOX.c.processed_at.is_(None),
                or_(INBOX.c.claimed_at.is_(None), INBOX.c.claimed_at < now - claim_timeout))


def has_claimable_rows(store: Store, *, now: datetime | None = None,
                       claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT) -> bool:
    """Whether a claim now would take any row: a cheap look that lets an idle run end without a trace."""
    stmt = select(INBOX.c.id).where(_claimable(now or datetime.now(UTC), claim_timeout)).limit(1)
    with store.engine.connect() as conn:
        return conn.execute(stmt).first() is not None


def claim_rows(store: Store, limit: int, *, now: datetime | None = None,
               claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT, replay: bool = False,
               token: str | None = None) -> InboxClaim:
    """Atomically claim up to `limit` unprocessed rows (oldest first) and return them as a raw intake chunk.

    `token` names the claimer (intake passes its flow run id, so that a crashed run's rows can be given back by
    `release_run_claims`); without one, every claim gets a token of its own.
    """
    now = now or datetime.now(UTC)
    token = token or str(uuid.uuid4())
    candidates = select(INBOX.c.id).where(_claimable(now, claim_timeout)).order_by(INBOX.c.id).limit(limit)
    if store.dialect == "postgresql":
        # Rows another claimer has locked are skipped, not waited for: claimers never block each other.
        candidates = candidates.with_for_update(skip_locked=True)
    stmt = (
        update(INBOX)
        .where(INBOX.c.id.in_(candidates.scalar_subquery()))
        .values(claim_token=token, claimed_at=now, attempts=INBOX.c.attempts + 1)
        .returning(INBOX.c.id, INBOX.c.payload, INBOX.c.received_at)
    )
    with store.begin() as conn:
        rows = sorted(conn.execute(stmt).all(), key=lambda row: row[0])
    claim = InboxClaim(token=token, ids=[int(r[0]) for r in rows])
    claim.frame = inbox_frame(rows, replay=replay)
    return claim


def mark_processed(store: Store, claim: InboxClaim, batch_id: str, now: datetime | None = None) -> int:
    """Mark a claim's rows processed once intake has written them; returns how many rows were marked."""
    if not claim.ids:
        return 0
    stmt = (
        update(INBOX)
        .where(INBOX.c.claim_token == claim.token, INBOX.c.processed_at.is_(None),
               INBOX.c.id.in_(bindparam("ids", expanding=True)))
        .values(processed_at=now or datetime.now(UTC), batch_id=batch_id)
    )
    with store.begin() as conn:
        return conn.execute(stmt, {"ids": claim.ids}).rowcount


def release_claim(store: Store, claim: InboxClaim) -> int:
    """Give a claim's unprocessed rows back at once (a run that failed), instead of waiting for the timeout."""
    if not claim.ids:
        return 0
    stmt = (
        update(INBOX)
        .where(INBOX.c.claim_token == claim.token, INBOX.c.processed_at.is_(None))
        .values(claim_token=None, claimed_at=None)
    )
    with store.begin() as conn:
        return conn.execute(stmt).rowcount


def release_run_claims(store: Store, token: str) -> int:
    """Give back every unprocessed row a claimer (a flow run) still holds: its process crashed or was cancelled."""
    stmt = (
        update(INBOX)
        .where(INBOX.c.claim_token == token, INBOX.c.processed_at.is_(None))
        .values(claim_token=None, claimed_at=None)
    )
    with store.begin() as conn:
        return conn.execute(stmt).rowcount


def pending_count(store: Store) -> int:
    """How many inbox rows still wait to be processed (claimed or not)."""
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(INBOX).where(INBOX.c.processed_at.is_(None)))
                   .scalar_one())


# --- an inbox lead's way to a rep alert (bench/speed_to_lead.py) -------------------------------------------------


def processing_run(store: Store, inbox_id: int) -> str | None:
    """The flow run id of the intake batch that processed an inbox row (None until one has)."""
    batches = IntakeBatch.__table__
    stmt = (select(batches.c.flow_run_id).join(INBOX, INBOX.c.batch_id == batches.c.id)
            .where(INBOX.c.id == inbox_id))
    with store.engine.connect() as conn:
        return conn.execute(stmt).scalar_one_or_none()


def rep_alert_queued(store: Store, email: str) -> bool:
    """Whether the outbox holds a rep alert for the lead with this email (what a speed-to-lead probe waits for)."""
    leads, outbox = Lead.__table__, OutboxMessage.__table__
    stmt = (select(outbox.c.id).join(leads, leads.c.id == outbox.c.lead_id)
            .where(leads.c.email == email, outbox.c.kind == "rep_alert"))
    with store.engine.connect() as conn:
        return conn.execute(stmt).first() is not None


def row_trace(store: Store, inbox_id: int, email: str) -> dict[str, Any]:
    """What the CRM holds on an inbox row's way to a rep alert: the row, its lead, the lead's messages and tasks."""
    leads, outbox, tasks = Lead.__table__, OutboxMessage.__table__, CrmTask.__table__
    batches = IntakeBatch.__table__
    with store.engine.connect() as conn:
        row = conn.execute(select(INBOX.c.claimed_at, INBOX.c.claim_token, INBOX.c.processed_at, INBOX.c.attempts,
                                  INBOX.c.batch_id).where(INBOX.c.id == inbox_id)).mappings().first()
        lead = conn.execute(select(leads.c.id, leads.c.status, leads.c.priority, leads.c.owner_id,
                                   leads.c.is_spam, leads.c.score).where(leads.c.email == email)).mappings().first()
        sent = (conn.execute(select(outbox.c.kind).where(outbox.c.lead_id == lead["id"])).scalars().all()
                if lead else [])
        owed = (conn.execute(select(tasks.c.kind, tasks.c.owner_id, tasks.c.status)
                             .where(tasks.c.lead_id == lead["id"])).all() if lead else [])
        run_id = (conn.execute(select(batches.c.flow_run_id).where(batches.c.id == row["batch_id"]))
                  .scalar_one_or_none() if row and row["batch_id"] else None)
    return {"row": dict(row) if row else None, "lead": dict(lead) if lead else None, "outbox": list(sent),
            "tasks": [tuple(t) for t in owed], "run_id": run_id}
