"""The SLA watch: tell the sales manager, once per breach, about open tasks whose SLA due time has passed.

Qualification gives every task a due time (P1 within 5 business minutes, ...). A task breaches its SLA later,
when nobody is running qualification, so the every-minute delivery run looks for breaches: open tasks of open
leads past `due_at` that no notice has named yet. They go into one manager notice (an outbox row keyed by the
tasks it names), and the same transaction stamps `crm_tasks.sla_notified_at`, so a breach is reported exactly
once however often the watch runs, and a crash leaves nothing half done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from leadflow.crm import outbox
from leadflow.crm.assignments import OPEN_STATUSES
from leadflow.crm.schema import CrmTask, Lead, OutboxMessage
from leadflow.crm.store import Store, utc
from leadflow.domain import messages

TASKS = CrmTask.__table__
LEADS = Lead.__table__
OUTBOX = OutboxMessage.__table__
# One notice lists at most this many breaches; a backlog beyond it is reported by the next runs.
MAX_PER_NOTICE = 500


@dataclass
class SlaWatchResult:
    """What one SLA watch found and queued."""

    breaches: int = 0
    notices: int = 0

    def as_dict(self) -> dict[str, int]:
        """Counts for summaries."""
        return {"sla_breaches_reported": self.breaches, "sla_notices_queued": self.notices}


def _breaches(conn: Connection, now: datetime) -> pd.DataFrame:
    """Open tasks of open leads past their due time and not reported yet, oldest breach first."""
    stmt = (
        select(TASKS.c.id, TASKS.c.lead_id, TASKS.c.kind, TASKS.c.owner_id, TASKS.c.due_at)
        .join(LEADS, LEADS.c.id == TASKS.c.lead_id)
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
    frame = pd.DataFrame(rows, columns=["id", "lead_id", "kind", "owner_id", "due_at"])
    frame["due_at"] = utc(frame["due_at"])
    return frame


def notify_sla_breaches(store: Store, manager_urls: str | None, sales_inbox: str, now: datetime) -> SlaWatchResult:
    """Queue one manager notice naming the tasks newly past their SLA and mark them as reported."""
    result = SlaWatchResult()
    with store.begin() as conn:
        breaches = _breaches(conn, now)
        if breaches.empty:
            return result
        notice = messages.sla_risk_notice(breaches, manager_urls, sales_inbox, now)
        outbox.queue(conn, store, notice)
        conn.execute(
            update(TASKS).where(TASKS.c.id.in_(bindparam("ids", expanding=True)), TASKS.c.sla_notified_at.is_(None))
            .values(sla_notified_at=now),
            {"ids": breaches["id"].astype(int).tolist()},
        )
    result.breaches = len(breaches)
    result.notices = len(notice)
    return result
