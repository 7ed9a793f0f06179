"""Rep capacity bookkeeping: a live assignment holds one of the owner's open-lead slots until the lead closes.

`sales_reps.open_leads` is what routing weighs against `max_open_leads`. Qualification reserves a slot when it
assigns a lead live (never in replay) and marks the lead `holds_capacity`. The slot is given back when the lead
stops being work for the rep: its status moves to converted, disqualified or recycled, or spam-cleanup flags it.
If the lead is reopened (or a spam flag is lifted) while it still has an owner, it takes its slot again. Each
call runs inside the caller's transaction, next to the status or spam change it follows, so the counter and the
leads never disagree; the `holds_capacity` flag makes every change count once however often it is replayed.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, func, select, update

from leadflow.crm.schema import Lead, SalesRep
from leadflow.crm.store import read_in

LEADS = Lead.__table__
REPS = SalesRep.__table__
# A lead in one of these statuses is on its owner's plate: it holds a slot, and its open tasks can breach their SLA.
OPEN_STATUSES: frozenset[str] = frozenset({"new", "working", "qualified", "discovery_call_booked"})


def _owners(conn: Connection, lead_ids: list[int], holds: bool) -> dict[int, list[int]]:
    """Leads (by owner) among these whose holds_capacity flag is `holds` and that have an owner."""
    stmt = select(LEADS.c.owner_id, LEADS.c.id).where(
        LEADS.c.id.in_(bindparam("values", expanding=True)), LEADS.c.owner_id.is_not(None),
        LEADS.c.holds_capacity.is_(holds))
    owners: dict[int, list[int]] = {}
    for owner, lead_id in read_in(conn, stmt, lead_ids):
        owners.setdefault(int(owner), []).append(int(lead_id))
    return owners


def _flag(conn: Connection, ids: list[int], holds: bool) -> None:
    stmt = update(LEADS).where(LEADS.c.id == bindparam("b_id")).values(holds_capacity=holds)
    conn.execute(stmt, [{"b_id": i} for i in ids])


def release_capacity(conn: Connection, lead_ids: Iterable[int]) -> int:
    """Give back the slots these leads hold (they closed or turned out to be spam); returns slots released."""
    owners = _owners(conn, sorted({int(i) for i in lead_ids}), holds=True)
    for owner, ids in sorted(owners.items()):
        # Never below zero, even if the counter was reset by hand in between.
        conn.execute(update(REPS).where(REPS.c.id == owner)
                     .values(open_leads=func.max(REPS.c.open_leads - len(ids), 0)
                             if conn.dialect.name == "sqlite" else func.greatest(REPS.c.open_leads - len(ids), 0)))
        _flag(conn, ids, holds=False)
    return sum(len(ids) for ids in owners.values())


def hold_capacity(conn: Connection, lead_ids: Iterable[int]) -> int:
    """Take slots again for these owned leads (reopened, or a spam flag lifted); returns slots taken."""
    owners = _owners(conn, sorted({int(i) for i in lead_ids}), holds=False)
    for owner, ids in sorted(owners.items()):
        # A person reopened the lead: it counts even when that takes the rep past max_open_leads.
        conn.execute(update(REPS).where(REPS.c.id == owner).values(open_leads=REPS.c.open_leads + len(ids)))
        _flag(conn, ids, holds=True)
    return sum(len(ids) for ids in owners.values())


def follow_status_changes(conn: Connection, changes: Iterable[tuple[int, str, str]]) -> tuple[int, int]:
    """Release or hold slots for (lead id, old status, new status) changes; returns (released, held)."""
    changes = list(changes)
    closing = [i for i, old, new in changes if old in OPEN_STATUSES and new not in OPEN_STATUSES]
    reopening = [i for i, old, new in changes if old not in OPEN_STATUSES and new in OPEN_STATUSES]
    return (release_capacity(conn, closing) if closing else 0), (hold_capacity(conn, reopening) if reopening else 0)
