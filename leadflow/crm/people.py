"""One person's rows across the CRM: found by their normalized email, read for an export, deleted for an erasure.

A person is their lead and its children (submissions, events, tasks, outbox messages, a spam exemption), plus
rows that carry the address without a link to the lead: quarantined input rows and inbox posts (matched inside
their JSON payloads) and messages addressed to them. Every function runs in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, bindparam, cast, delete, func, insert, or_, select

from leadflow.crm.assignments import release_capacity
from leadflow.crm.schema import (
    CrmTask,
    Lead,
    LeadEvent,
    LeadInboxRow,
    LeadSubmission,
    OutboxMessage,
    PersonErasure,
    QuarantineRecord,
    SpamExemption,
    SpamTombstone,
)
from leadflow.crm.store import chunked
from leadflow.domain.privacy import payload_carries

LEADS = Lead.__table__
SUBMISSIONS = LeadSubmission.__table__
EVENTS = LeadEvent.__table__
TASKS = CrmTask.__table__
OUTBOX = OutboxMessage.__table__
QUARANTINE = QuarantineRecord.__table__
INBOX = LeadInboxRow.__table__
EXEMPTIONS = SpamExemption.__table__
TOMBSTONES = SpamTombstone.__table__
ERASURES = PersonErasure.__table__

# The tables of a person, in the order an erasure deletes them (children before the lead they reference).
PERSON_TABLES: tuple[str, ...] = ("lead_events", "lead_submissions", "crm_tasks", "outbox", "spam_exemptions",
                                  "spam_tombstones", "quarantine", "lead_inbox", "leads")
_TABLES = {"leads": LEADS, "lead_submissions": SUBMISSIONS, "lead_events": EVENTS, "crm_tasks": TASKS,
           "outbox": OUTBOX, "quarantine": QUARANTINE, "lead_inbox": INBOX, "spam_exemptions": EXEMPTIONS,
           "spam_tombstones": TOMBSTONES}
# Payload rows scanned per read when the address cannot be pre-filtered in SQL (a non-ASCII or quoted address).
SCAN_CHUNK = 5_000
def _payload_rows(conn: Connection, table, column, email: str) -> list[dict[str, Any]]:
    """Rows of a payload table whose payload carries the address: pre-filtered by LIKE where SQL can, then checked."""
    if email.isascii() and not set(email) & {'"', "\\"}:
        escaped = email.replace("!", "!!").replace("%", "!%").replace("_", "!_")
        stmt = (select(table).where(func.lower(cast(column, Text)).like(f"%{escaped}%", escape="!"))
                .order_by(table.c.id))
        candidates = [dict(r._mapping) for r in conn.execute(stmt)]
    else:
        # Lower-casing non-ASCII text differs between the databases: read bounded chunks and check them here.
        candidates, after = [], 0
        while True:
            rows = [dict(r._mapping) for r in conn.execute(
                select(table).where(table.c.id > after).order_by(table.c.id).limit(SCAN_CHUNK))]
            if not rows:
                break
            candidates += [r for r in rows if payload_carries(r[column.name], email)]
            after = rows[-1]["id"]
        return candidates
    return [r for r in candidates if payload_carries(r[column.name], email)]


def _rows(conn: Connection, table, *where) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(table).where(*where).order_by(table.c.id))]


def person_rows(conn: Connection, email: str, email_hash: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row the CRM holds about the person with this normalized email, by table (empty lists where none).

    `email_hash` (their keyed hash) also finds what only that hash links to them: the tombstone of their purged
    spam lead and an exemption whose lead is gone.
    """
    leads = _rows(conn, LEADS, LEADS.c.email == email)
    ids = [int(r["id"]) for r in leads]
    found: dict[str, list[dict[str, Any]]] = {"leads": leads}
    for name, table in (("lead_submissions", SUBMISSIONS), ("lead_events", EVENTS), ("crm_tasks", TASKS)):
        found[name] = _rows(conn, table, table.c.lead_id.in_(ids)) if ids else []
    exempt = [EXEMPTIONS.c.lead_id.in_(ids)] if ids else []
    if email_hash:
        exempt.append(EXEMPTIONS.c.email_hash == email_hash)
    found["spam_exemptions"] = _rows(conn, EXEMPTIONS, or_(*exempt)) if exempt else []
    found["spam_tombstones"] = _rows(conn, TOMBSTONES, TOMBSTONES.c.email_hash == email_hash) if email_hash else []
    # A message addressed to them belongs to them even without the lead link.
    found["outbox"] = _rows(conn, OUTBOX, or_(OUTBOX.c.lead_id.in_(ids), func.lower(OUTBOX.c.recipient) == email)
                            if ids else func.lower(OUTBOX.c.recipient) == email)
    found["quarantine"] = _payload_rows(conn, QUARANTINE, QUARANTINE.c.raw_payload, email)
    found["lead_inbox"] = _payload_rows(conn, INBOX, INBOX.c.payload, email)
    return {name: found[name] for name in PERSON_TABLES}


def delete_person_rows(conn: Connection, rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Delete the rows `person_rows` found, children first; owners get back the slots the leads held.

    Returns rows deleted per table, plus `capacity_released`.
    """
    lead_ids = [int(r["id"]) for r in rows.get("leads", [])]
    counts = {"capacity_released": release_capacity(conn, lead_ids) if lead_ids else 0}
    for name in PERSON_TABLES:
        table = _TABLES[name]
        ids = [int(r["id"]) for r in rows.get(name, [])]
        deleted = 0
        for part in chunked(ids):
            deleted += conn.execute(delete(table).where(table.c.id.in_(bindparam("ids", expanding=True))),
                                    {"ids": list(part)}).rowcount
        counts[name] = deleted
    return counts


def record_erasure(conn: Connection, email_hash: str, erased_at: datetime, reason: str | None,
                   counts: dict[str, int]) -> int:
    """Write the erasure's audit record (a keyed hash, never the address); returns its id."""
    stmt = insert(ERASURES).values(email_hash=email_hash, erased_at=erased_at, reason=reason, counts=counts)
    return int(conn.execute(stmt.returning(ERASURES.c.id)).scalar_one())


def erasures(conn: Connection, email_hash: str) -> list[dict[str, Any]]:
    """The erasure records of one keyed address hash, oldest first."""
    return _rows(conn, ERASURES, ERASURES.c.email_hash == email_hash)


def erased_hashes(conn: Connection) -> set[str]:
    """Every keyed address hash an erasure recorded: intake quarantines rows of these people (a small table)."""
    return set(conn.execute(select(ERASURES.c.email_hash).distinct()).scalars())
