"""The crm_tasks table: qualification's and discovery calls' tasks, their hand-over, and the SLA watch's reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from leadflow.crm.assignments import OPEN_STATUSES
from leadflow.crm.schema import CrmTask, Lead, SalesRep
from leadflow.crm.store import Store, select_in, utc

TASKS = CrmTask.__table__
LEADS = Lead.__table__
REPS = SalesRep.__table__
# One notice lists at most this many breaches; a backlog beyond it is reported by the next runs.
MAX_PER_NOTICE = 500


def insert_tasks(store: Store, frame: pd.DataFrame) -> int:
    """Insert tasks in a transaction of their own; a key that exists already is left alone. Returns the rows added."""
    if frame.empty:
        return 0
    with store.begin() as conn:
        return store.insert_new(conn, TASKS, frame)


def waiting_in_queue(conn: Connection, lead_ids: Sequence[int]) -> set[int]:
    """Those of these leads whose qualification task has no owner: they wait in the fallback queue."""
    return {int(r[0]) for r in select_in(conn, [TASKS.c.lead_id], TASKS.c.lead_id, lead_ids,
                                         TASKS.c.kind == "qualification", TASKS.c.owner_id.is_(None), raw=True)}


def hand_over_open_tasks(conn: Connection, store: Store, owners: pd.DataFrame) -> None:
    """Give the open unowned tasks of these leads (`b_id`) to their new owner (`b_owner`)."""
    store.bulk(conn, update(TASKS).where(TASKS.c.lead_id == bindparam("b_id"), TASKS.c.owner_id.is_(None),
                                         TASKS.c.status == bindparam("b_open"))
               .values(owner_id=bindparam("b_owner")), owners.assign(b_open="open"))


def sla_breaches(conn: Connection, now: datetime) -> pd.DataFrame:
    """Open tasks of open leads past their due time and not reported yet, oldest breach first.

    With the lead's email (the notice masks it) and the owner's name, so the manager sees whose task it is.
    """
    stmt = (
        select(TASKS.c.id, TASKS.c.lead_id, TASKS.c.kind, TASKS.c.owner_id, TASKS.c.due_at,
               LEADS.c.email.label("lead_email"), REPS.c.name.label("owner_name"))
        .join(LEADS, LEADS.c.id == TASKS.c.lead_id)
        .outerjoin(REPS, REPS.c.id == TASKS.c.owner_id)
        .where(TASKS.c.status == "open", TASKS.c.due_at.is_not(None), TASKS.c.due_at < bindparam("now"),
               # A task of a converted, disqualified, recycled or spam lead breaches nothing (sorted: a set's
               # order changes from process to process, the statement's parameters should not).
               TASKS.c.sla_notified_at.is_(None), LEADS.c.status.in_(sorted(OPEN_STATUSES)),
               LEADS.c.spam_flagged_at.is_(None))
        .order_by(TASKS.c.due_at, TASKS.c.id)
        .limit(MAX_PER_NOTICE)
    )
    if conn.dialect.name == "postgresql":
        # Two watches at once (a delivery run and a qualification run) never report the same breach twice.
        stmt = stmt.with_for_update(of=TASKS, skip_locked=True)
    rows = list(conn.execute(stmt, {"now": now}))
    frame = pd.DataFrame(rows, columns=["id", "lead_id", "kind", "owner_id", "due_at", "lead_email", "owner_name"])
    frame["due_at"] = utc(frame["due_at"])
    return frame


def mark_sla_notified(conn: Connection, task_ids: Sequence[int], now: datetime) -> None:
    """Stamp these tasks as reported by a manager notice, so no breach is reported twice."""
    conn.execute(
        update(TASKS).where(TASKS.c.id.in_(bindparam("ids", expanding=True)), TASKS.c.sla_notified_at.is_(None))
        .values(sla_notified_at=now),
        {"ids": [int(i) for i in task_ids]},
    )
