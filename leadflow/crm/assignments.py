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

import pandas as pd
from sqlalchemy import Connection, bindparam, func, select, update

from leadflow.crm.schema import Lead, SalesRep
from leadflow.crm.store import Store, execute_in, read_in

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
    # One UPDATE per part of the ids (an array on PostgreSQL), not one per lead.
    stmt = update(LEADS).where(LEADS.c.id.in_(bindparam("values", expanding=True))).values(holds_capacity=holds)
    execute_in(conn, stmt, sorted(ids))


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


class CapacityConflict(RuntimeError):
    """A rep's capacity changed under a reservation: the assignment transaction rolls back and is retried."""


def load_reps(conn: Connection, lock: bool = False) -> pd.DataFrame:
    """All sales reps with their routing state; `lock` takes row locks on PostgreSQL (SQLite's write lock is held)."""
    stmt = select(REPS.c.id, REPS.c.email, REPS.c.name, REPS.c.active, REPS.c.out_of_office, REPS.c.territories,
                  REPS.c.segments, REPS.c.max_open_leads, REPS.c.open_leads, REPS.c.last_assigned_seq,
                  REPS.c.alert_url).order_by(REPS.c.id)
    if lock and conn.dialect.name == "postgresql":
        # FOR NO KEY UPDATE: tasks and leads referencing a rep take KEY SHARE locks on it, which this must not block.
        stmt = stmt.with_for_update(key_share=True)
    rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(stmt.selected_columns.keys()))


def reps_frame(store: Store) -> pd.DataFrame:
    """All reps (for alerts and reports)."""
    with store.engine.connect() as conn:
        return load_reps(conn)


def reserve_capacity(conn: Connection, reserved: dict[int, int]) -> None:
    """Take `n` open-lead slots of each rep, or raise CapacityConflict if a concurrent run took them first.

    `UPDATE ... WHERE open_leads + n <= max_open_leads`: the row count proves no rep went over.
    """
    guard = (update(REPS).where(REPS.c.id == bindparam("b_id"),
                                REPS.c.open_leads + bindparam("b_n") <= REPS.c.max_open_leads)
             .values(open_leads=REPS.c.open_leads + bindparam("b_n")))
    for rep, n in sorted(reserved.items()):
        if conn.execute(guard, {"b_id": rep, "b_n": n}).rowcount != 1:
            raise CapacityConflict(f"rep {rep} has no room for {n} more leads")


def record_rotation(conn: Connection, rotation: dict[int, int]) -> None:
    """Store each rep's place in the round robin (the sequence number of its last assignment)."""
    for rep, seq in sorted(rotation.items()):
        conn.execute(update(REPS).where(REPS.c.id == rep).values(last_assigned_seq=seq))
