"""Retention's SQL: strip old submissions' raw payloads, delete old quarantine rows, processed inbox rows and the
intake ledgers of webhooks and the mailbox.

Each store is worked through in batches of ids, one transaction per batch, so a big first run neither holds
locks for long nor redoes finished batches after a crash; a dry run only counts. Every function is idempotent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Table, Text, and_, bindparam, cast, delete, func, select, update

from leadflow.crm.schema import LeadInboxRow, LeadSubmission, MailboxMessageRow, QuarantineRecord, WebhookDelivery
from leadflow.crm.store import Store

SUBMISSIONS = LeadSubmission.__table__
QUARANTINE = QuarantineRecord.__table__
INBOX = LeadInboxRow.__table__
WEBHOOKS = WebhookDelivery.__table__
MAILBOX = MailboxMessageRow.__table__
# What a stripped raw payload holds: nothing. The submission's own columns (source, time, UTM, message) stay.
STRIPPED: dict = {}


def _old_payloads(cutoff: datetime) -> ColumnElement[bool]:
    # Both databases render an empty JSON object as '{}', so a stripped row is not stripped (or counted) again.
    return and_(SUBMISSIONS.c.received_at < cutoff, cast(SUBMISSIONS.c.raw_payload, Text) != "{}")


def _old_quarantine(cutoff: datetime) -> ColumnElement[bool]:
    return QUARANTINE.c.created_at < cutoff


def _old_inbox(cutoff: datetime) -> ColumnElement[bool]:
    # Unprocessed rows still wait for intake: only rows intake finished with age out.
    return and_(INBOX.c.processed_at.is_not(None), INBOX.c.processed_at < cutoff)


def _count(store: Store, table: Table, where: ColumnElement[bool]) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())


def _in_batches(store: Store, table: Table, where: ColumnElement[bool], batch_size: int, write) -> int:
    """Apply `write(ids)` to the matching rows, batch_size ids per transaction; returns rows written."""
    done = 0
    while True:
        with store.begin() as conn:
            ids = list(conn.execute(select(table.c.id).where(where).order_by(table.c.id).limit(batch_size)).scalars())
            if not ids:
                return done
            done += conn.execute(write.where(table.c.id.in_(bindparam("ids", expanding=True))), {"ids": ids}).rowcount


def _purge(store: Store, table: Table, where: ColumnElement[bool], batch_size: int, dry_run: bool) -> int:
    """Delete the matching rows in batches (a dry run counts them); returns how many (would) go."""
    if dry_run:
        return _count(store, table, where)
    return _in_batches(store, table, where, batch_size, delete(table))


def strip_raw_payloads(store: Store, cutoff: datetime, *, batch_size: int = 5_000, dry_run: bool = False) -> int:
    """Empty the raw payload of submissions received before cutoff; returns how many (would) change."""
    where = _old_payloads(cutoff)
    if dry_run:
        return _count(store, SUBMISSIONS, where)
    return _in_batches(store, SUBMISSIONS, where, batch_size, update(SUBMISSIONS).values(raw_payload=STRIPPED))


def purge_quarantine(store: Store, cutoff: datetime, *, batch_size: int = 5_000, dry_run: bool = False) -> int:
    """Delete quarantine rows created before cutoff; returns how many (would) go."""
    return _purge(store, QUARANTINE, _old_quarantine(cutoff), batch_size, dry_run)


def purge_inbox(store: Store, cutoff: datetime, *, batch_size: int = 5_000, dry_run: bool = False) -> int:
    """Delete lead_inbox rows processed before cutoff; returns how many (would) go."""
    return _purge(store, INBOX, _old_inbox(cutoff), batch_size, dry_run)


def purge_webhook_deliveries(store: Store, cutoff: datetime, *, batch_size: int = 5_000,
                             dry_run: bool = False) -> int:
    """Delete webhook delivery rows received before cutoff (vendors stop redelivering within days); returns how
    many (would) go."""
    return _purge(store, WEBHOOKS, WEBHOOKS.c.received_at < cutoff, batch_size, dry_run)


def purge_mailbox_messages(store: Store, cutoff: datetime, *, batch_size: int = 5_000,
                           dry_run: bool = False) -> int:
    """Delete mailbox ledger rows taken before cutoff whose message was moved or flagged (one still in the folder
    keeps its row, or the next run would take it again); returns how many (would) go."""
    where = and_(MAILBOX.c.taken_at < cutoff, MAILBOX.c.handled_at.is_not(None))
    return _purge(store, MAILBOX, where, batch_size, dry_run)
