"""What the daily health artifact reads: one day's intake, alerts, SLAs and quarantine, and the queues right now.

Only aggregates and timings leave this module (sources, reason codes, priorities, counts, times): no address,
name or payload, because the artifact is shown in the Prefect UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, and_, func, not_, select

from leadflow.crm.assignments import OPEN_STATUSES
from leadflow.crm.schema import CrmTask, Lead, LeadSubmission, OutboxMessage, QuarantineRecord
from leadflow.crm.store import Store, utc

LEADS = Lead.__table__
SUBMISSIONS = LeadSubmission.__table__
OUTBOX = OutboxMessage.__table__
TASKS = CrmTask.__table__
QUARANTINE = QuarantineRecord.__table__


@dataclass(frozen=True)
class HealthInputs:
    """One day's raw aggregates for the health artifact (frames of counts and times, no personal data)."""

    submissions: pd.DataFrame  # source, spam, submissions (submitted in the day)
    new_leads: int  # first touched in the day, spam apart
    alerts: pd.DataFrame  # first_touch_at, queued_at, sent_at, status of rep alerts queued in the day
    sla: pd.DataFrame  # kind, due_at, completed_at, status of tasks due in the day (cancelled ones apart)
    unassigned: pd.DataFrame  # priority, leads: open, qualified, unowned, not spam (now)
    outbox: pd.DataFrame  # status, kind, messages, oldest (created_at of the oldest), now
    failed_in_day: pd.DataFrame  # kind, messages: rows queued in the day that failed
    quarantine: pd.DataFrame  # reason_codes, rows (quarantined in the day)


def _frame(conn: Connection, stmt, columns: list[str], times: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in conn.execute(stmt)], columns=columns)
    for name in times:
        frame[name] = utc(frame[name]) if len(frame) else pd.Series(dtype="datetime64[us, UTC]")
    return frame


def load_health_inputs(store: Store, start: datetime, end: datetime) -> HealthInputs:
    """Read the day [start, end) and the current queues, in one read transaction."""
    day = (SUBMISSIONS.c.submitted_at >= start, SUBMISSIONS.c.submitted_at < end)
    with store.engine.connect() as conn:
        submissions = _frame(conn, select(SUBMISSIONS.c.source, LEADS.c.is_spam, func.count())
                             .join(LEADS, LEADS.c.id == SUBMISSIONS.c.lead_id).where(*day)
                             .group_by(SUBMISSIONS.c.source, LEADS.c.is_spam),
                             ["source", "spam", "submissions"])
        # First touched in the day: its earliest submission is in the day, so the submitted_at index narrows it.
        new_leads = conn.execute(select(func.count(func.distinct(LEADS.c.id)))
                                 .join(SUBMISSIONS, SUBMISSIONS.c.lead_id == LEADS.c.id)
                                 .where(*day, LEADS.c.first_touch_at >= start, LEADS.c.first_touch_at < end,
                                        not_(LEADS.c.is_spam))).scalar_one()
        alerts = _frame(conn, select(LEADS.c.first_touch_at, OUTBOX.c.created_at, OUTBOX.c.sent_at, OUTBOX.c.status)
                        .join(LEADS, LEADS.c.id == OUTBOX.c.lead_id)
                        .where(OUTBOX.c.kind == "rep_alert", OUTBOX.c.created_at >= start, OUTBOX.c.created_at < end),
                        ["first_touch_at", "queued_at", "sent_at", "status"],
                        ("first_touch_at", "queued_at", "sent_at"))
        sla = _frame(conn, select(TASKS.c.kind, TASKS.c.due_at, TASKS.c.completed_at, TASKS.c.status)
                     .where(TASKS.c.due_at >= start, TASKS.c.due_at < end, TASKS.c.status != "cancelled"),
                     ["kind", "due_at", "completed_at", "status"], ("due_at", "completed_at"))
        unassigned = _frame(conn, select(LEADS.c.priority, func.count())
                            .where(LEADS.c.owner_id.is_(None), LEADS.c.qualified_at.is_not(None),
                                   LEADS.c.status.in_(sorted(OPEN_STATUSES)), not_(LEADS.c.is_spam))
                            .group_by(LEADS.c.priority), ["priority", "leads"])
        outbox = _frame(conn, select(OUTBOX.c.status, OUTBOX.c.kind, func.count(), func.min(OUTBOX.c.created_at))
                        .where(OUTBOX.c.status.in_(["pending", "sending", "failed"]))
                        .group_by(OUTBOX.c.status, OUTBOX.c.kind), ["status", "kind", "messages", "oldest"],
                        ("oldest",))
        failed = _frame(conn, select(OUTBOX.c.kind, func.count())
                        .where(and_(OUTBOX.c.status == "failed", OUTBOX.c.created_at >= start,
                                    OUTBOX.c.created_at < end)).group_by(OUTBOX.c.kind), ["kind", "messages"])
        quarantine = _frame(conn, select(QUARANTINE.c.reason_codes, func.count())
                            .where(QUARANTINE.c.created_at >= start, QUARANTINE.c.created_at < end)
                            .group_by(QUARANTINE.c.reason_codes), ["reason_codes", "rows"])
    return HealthInputs(submissions=submissions, new_leads=int(new_leads), alerts=alerts, sla=sla,
                        unassigned=unassigned, outbox=outbox, failed_in_day=failed, quarantine=quarantine)
