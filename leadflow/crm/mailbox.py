"""The sales mailbox's ledger: which messages were taken and what they became, in one transaction with their effect.

An inquiry's `mailbox_messages` row and its `lead_inbox` row commit together, as do a touch's row and its lead
event: the unique message key makes a second take of the same message (a re-run after the move failed, a copy in
two folders) store nothing. Writes are set-based: a few statements per run, not per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import bindparam, func, select, update

from leadflow.crm import followup as followups
from leadflow.crm import outbox
from leadflow.crm.schema import Lead, LeadEvent, LeadFollowup, LeadInboxRow, MailboxMessageRow, OutboxMessage
from leadflow.crm.store import Store, chunked, read_in

MAILBOX = MailboxMessageRow.__table__
LEADS = Lead.__table__
EVENTS = LeadEvent.__table__
INBOX = LeadInboxRow.__table__
OUTBOX = OutboxMessage.__table__
FOLLOWUPS = LeadFollowup.__table__
# The audit-log event of a known lead's email (reply or new message) taken from the sales mailbox.
EMAIL_RECEIVED_EVENT = "email_received"


@dataclass
class TakenMessages:
    """What one mailbox run stores: new inquiries (inbox payloads), touches of known leads and skipped messages."""

    inquiries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (key, inbox payload)
    touches: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # (key, lead id, event details)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


@dataclass
class StoredMessages:
    """What a store call added: new inquiries (inbox rows), touches and skips by reason; how many were taken before."""

    inquiries: int = 0
    touches: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    already_taken: int = 0
    sequences_stopped: int = 0
    alerts: int = 0


def taken_keys(store: Store, keys: Iterable[str]) -> set[str]:
    """The message keys among these that a run already took."""
    stmt = select(MAILBOX.c.message_key).where(MAILBOX.c.message_key.in_(bindparam("values", expanding=True)))
    with store.engine.connect() as conn:
        return {row[0] for row in read_in(conn, stmt, list(dict.fromkeys(keys)), raw=True)}


def lead_ids_by_email(store: Store, emails: Iterable[str]) -> dict[str, int]:
    """Lead id by normalized email, for the addresses that are leads."""
    stmt = select(LEADS.c.email, LEADS.c.id).where(LEADS.c.email.in_(bindparam("values", expanding=True)))
    with store.engine.connect() as conn:
        return {email: int(lead_id) for email, lead_id in read_in(conn, stmt, list(dict.fromkeys(emails)), raw=True)}


def outbox_keys(store: Store, lead_ids: Sequence[int]) -> list[tuple[int, str]]:
    """(lead id, idempotency key) of the outbox messages of these leads: their Message-IDs derive from the key."""
    stmt = select(OUTBOX.c.lead_id, OUTBOX.c.idempotency_key).where(
        OUTBOX.c.lead_id.in_(bindparam("values", expanding=True)))
    with store.engine.connect() as conn:
        return [(int(lead_id), str(key)) for lead_id, key in read_in(conn, stmt, sorted(set(lead_ids)), raw=True)]


def _claim_keys(conn, store: Store, keys: list[str], outcome: str, reasons: list[str | None], now: datetime,
                flow_run_id: str | None) -> set[str]:
    """Insert the ledger rows of these messages; the keys inserted now (the others were taken before)."""
    rows = [{"message_key": key, "outcome": outcome, "reason": reason, "taken_at": now, "flow_run_id": flow_run_id}
            for key, reason in zip(keys, reasons, strict=True)]
    fresh: set[str] = set()
    for part in chunked(rows, 500):
        stmt = (store.insert(MAILBOX).values(list(part)).on_conflict_do_nothing(index_elements=["message_key"])
                .returning(MAILBOX.c.message_key))
        fresh.update(conn.execute(stmt).scalars())
    return fresh


def lead_context(store: Store, lead_ids: Sequence[int]) -> pd.DataFrame:
    """What a rep's alert about a lead's mail needs: lead_id, owner_id, first_name, last_name, company, sequence
    state (None without a follow-up sequence)."""
    ids = sorted({int(i) for i in lead_ids})
    columns = ["lead_id", "owner_id", "first_name", "last_name", "company", "sequence_state"]
    stmt = (select(LEADS.c.id, LEADS.c.owner_id, LEADS.c.first_name, LEADS.c.last_name, LEADS.c.company,
                   FOLLOWUPS.c.state)
            .select_from(LEADS.outerjoin(FOLLOWUPS, FOLLOWUPS.c.lead_id == LEADS.c.id))
            .where(LEADS.c.id.in_(bindparam("values", expanding=True))))
    with store.engine.connect() as conn:
        rows = read_in(conn, stmt, ids)
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def store_taken(store: Store, taken: TakenMessages, now: datetime, flow_run_id: str | None = None,
                replies: pd.DataFrame | None = None, alerts: pd.DataFrame | None = None) -> StoredMessages:
    """Store a run's messages in one transaction: inbox rows, touch events and skips, each message at most once.

    For the touches stored now (not those taken before), also their follow-up effect (`replies`: message_key,
    lead_id, at, stop, details) and their owners' alerts (`alerts`: outbox rows with a message_key column), so a
    re-run can neither repeat nor lose them.
    """
    result = StoredMessages()
    with store.begin() as conn:
        fresh = _claim_keys(conn, store, [k for k, _ in taken.inquiries], "inquiry", [None] * len(taken.inquiries),
                            now, flow_run_id)
        inbox_rows = [{"payload": payload, "received_at": now} for key, payload in taken.inquiries if key in fresh]
        if inbox_rows:
            conn.execute(INBOX.insert(), inbox_rows)
        result.inquiries = len(inbox_rows)
        fresh = _claim_keys(conn, store, [k for k, _, _ in taken.touches], "touch", [None] * len(taken.touches),
                            now, flow_run_id)
        events = [{"lead_id": lead_id, "event_type": EMAIL_RECEIVED_EVENT, "occurred_at": now, "batch_id": None,
                   "flow_run_id": flow_run_id, "details": details}
                  for key, lead_id, details in taken.touches if key in fresh]
        if events:
            conn.execute(EVENTS.insert(), events)
        result.touches = len(events)
        stored = {key for key, _, _ in taken.touches if key in fresh}
        if replies is not None and not replies.empty:
            result.sequences_stopped = followups.record_mail_replies(
                conn, store, replies.loc[replies["message_key"].isin(stored)].drop(columns="message_key"), now)
        if alerts is not None and not alerts.empty:
            result.alerts = outbox.queue(conn, store, alerts.loc[alerts["message_key"].isin(stored)]
                                         .drop(columns="message_key"))
        fresh = _claim_keys(conn, store, [k for k, _ in taken.skipped], "skipped", [r for _, r in taken.skipped],
                            now, flow_run_id)
        for key, reason in taken.skipped:
            if key in fresh:
                result.skipped[reason] = result.skipped.get(reason, 0) + 1
    stored = result.inquiries + result.touches + sum(result.skipped.values())
    result.already_taken = len(taken.inquiries) + len(taken.touches) + len(taken.skipped) - stored
    return result


def mark_handled(store: Store, keys: Sequence[str], now: datetime) -> int:
    """Record that these taken messages were moved or flagged; returns the rows updated."""
    if not keys:
        return 0
    stmt = (update(MAILBOX).where(MAILBOX.c.message_key.in_(bindparam("keys", expanding=True)),
                                  MAILBOX.c.handled_at.is_(None))
            .values(handled_at=now))
    with store.begin() as conn:
        return conn.execute(stmt, {"keys": list(keys)}).rowcount


def mailbox_counts(store: Store) -> dict[str, int]:
    """Ledger rows by outcome (inquiry, touch, skipped), and how many are taken but not yet moved or flagged."""
    with store.engine.connect() as conn:
        counts = {outcome: int(n) for outcome, n in conn.execute(
            select(MAILBOX.c.outcome, func.count()).group_by(MAILBOX.c.outcome))}
        counts["unhandled"] = int(conn.execute(select(func.count()).select_from(MAILBOX)
                                               .where(MAILBOX.c.handled_at.is_(None))).scalar_one())
    return counts
