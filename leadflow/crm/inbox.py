"""The `lead_inbox` staging table: any system inserts leads, intake claims them, processes them and marks them.

Claims are atomic: on PostgreSQL the candidate rows are locked with FOR UPDATE SKIP LOCKED, so concurrent claimers
take disjoint rows without waiting; on SQLite every write transaction starts as BEGIN IMMEDIATE (see store.py), so
the claiming UPDATE runs alone. A claim older than the claim timeout counts as abandoned (the run crashed) and
its rows are claimed again; processing is idempotent, so a row handled twice is still stored once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, bindparam, func, or_, select, update

from leadflow.crm.schema import LeadInboxRow
from leadflow.crm.store import Store
from leadflow.domain.contract import resolve_columns
from leadflow.io.sources import MALFORMED_COLUMN, ROW_COLUMN

INBOX = LeadInboxRow.__table__
INBOX_ORIGIN = "lead_inbox"
# The event `leadflow submit` emits after an insert; the continuous intake deployment is triggered by it.
SUBMITTED_EVENT = "leadflow.lead.submitted"
INBOX_RESOURCE_ID = "leadflow.lead_inbox"
DEFAULT_CLAIM_TIMEOUT = timedelta(minutes=15)


class InboxError(ValueError):
    """A lead that cannot be posted to the inbox; the message says why in one line."""


@dataclass
class InboxClaim:
    """Rows one claimer took from the inbox, under one token."""

    token: str
    ids: list[int] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __len__(self) -> int:
        return len(self.ids)


def _utc(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def check_lead(payload: Any) -> None:
    """Refuse at once what intake could only quarantine: no object, or no valid email (for `leadflow submit`)."""
    from leadflow.domain import normalize as nz
    from leadflow.domain.spam import mask_email

    if not isinstance(payload, dict) or not payload:
        raise InboxError("a lead must be a non-empty JSON object of field -> value")
    field_name = next((h for h, c in resolve_columns([str(k) for k in payload]).items() if c == "email"), None)
    if field_name is None or payload[field_name] in (None, ""):
        raise InboxError("the lead has no email")
    email = nz.normalize_email(pd.Series([str(payload[field_name])], dtype="string"))
    if not bool(nz.is_valid_email(email).iloc[0]):
        raise InboxError(f"the lead's email {mask_email(str(payload[field_name]))} is not a valid address")


def submit_lead(store: Store, payload: dict[str, Any], now: datetime | None = None) -> int:
    """Insert one lead into the inbox (what a form handler does in SQL) and return its inbox id."""
    if not isinstance(payload, dict) or not payload:
        raise InboxError("a lead must be a non-empty JSON object of field -> value")
    values: dict[str, Any] = {"payload": payload}
    if now is not None:
        values["received_at"] = now
    with store.begin() as conn:
        return int(conn.execute(INBOX.insert().values(values).returning(INBOX.c.id)).scalar_one())


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


def inbox_frame(rows: list[Any], *, replay: bool = False) -> pd.DataFrame:
    """Inbox rows (id, payload, received_at) in the raw chunk shape intake reads from files.

    `_row` is the inbox id, so a quarantine record names the inbox row it came from. A row without a submission
    time gets the time it was received, as the data contract says for live posts; in replay mode it does not, so
    the row is quarantined as `missing_submitted_at` instead of being dated to the replay.
    """
    if not rows:
        return pd.DataFrame({ROW_COLUMN: pd.Series(dtype="int64"), MALFORMED_COLUMN: pd.Series(dtype="string")})
    records: list[dict[str, Any]] = []
    malformed: list[Any] = []
    for _id, payload, _received in rows:
        if isinstance(payload, str):
            with contextlib.suppress(ValueError):
                payload = json.loads(payload)
        if isinstance(payload, dict):
            records.append(payload)
            malformed.append(pd.NA)
        else:
            records.append({})
            malformed.append(json.dumps(payload, default=str, ensure_ascii=False))
    frame = pd.DataFrame.from_records(records, index=pd.RangeIndex(len(rows)))
    frame[MALFORMED_COLUMN] = pd.array(malformed, dtype="string")
    if not replay:
        target = next((h for h, c in resolve_columns([str(c) for c in frame.columns]).items()
                       if c == "submitted_at"), "submitted_at")
        received = pd.Series([_utc(r[2]).isoformat() for r in rows], index=frame.index, dtype="string")
        current = frame[target].astype("string") if target in frame.columns else pd.Series(
            pd.NA, index=frame.index, dtype="string")
        blank = current.isna() | (current.str.strip() == "")
        has_payload = frame[MALFORMED_COLUMN].isna()
        frame[target] = current.where(~(blank & has_payload), received)
    frame[ROW_COLUMN] = [int(r[0]) for r in rows]
    return frame


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
