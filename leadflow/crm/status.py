"""Lead statuses in the CRM: recording status changes (guarded lead updates plus status_changed events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from leadflow.crm import assignments as capacity
from leadflow.crm.schema import Lead, LeadEvent
from leadflow.crm.store import Store
from leadflow.domain.status import STATUS_CHANGED, Reject, StatusResult, transition_error

LEADS = Lead.__table__
EVENTS = LeadEvent.__table__


def _bind(store: Store, moment: pd.Timestamp) -> datetime:
    return moment.tz_convert("UTC").to_pydatetime()


def apply_status_changes(store: Store, changes: pd.DataFrame, by: str, now: datetime,
                         flow_run_id: str | None = None) -> StatusResult:
    """Record parsed status changes in one transaction: guarded lead updates plus one status_changed event each.

    Rows apply per lead in time order. A row the same as an already recorded event (same lead, status and time) is
    counted as already recorded, so importing one export twice changes nothing; a row older than the lead's latest
    recorded change is stale and rejected, so an old export cannot undo newer work.
    """
    if changes.empty:
        return StatusResult(rows=0)
    with store.begin() as conn:
        return record_status_changes(conn, store, changes, by, now, flow_run_id)


def record_status_changes(conn: Connection, store: Store, changes: pd.DataFrame, by: str, now: datetime,
                          flow_run_id: str | None = None, *, enforce_transitions: bool = True) -> StatusResult:
    """`apply_status_changes` inside the caller's transaction.

    Without `enforce_transitions` (a CRM export's own state, a fact of the system it comes from) any status but
    spam may follow any other. A row with an `original` value (the export's own spelling) records it in the event.
    """
    result = StatusResult(rows=len(changes))
    if changes.empty:
        return result
    ordered = changes.sort_values(["changed_at", "row"], kind="stable")
    emails = sorted(set(ordered["email"]))
    leads: dict[str, tuple[int, str]] = {}
    # FOR UPDATE holds the rows on PostgreSQL until we commit; SQLite's BEGIN IMMEDIATE already serializes writers.
    stmt = (select(LEADS.c.email, LEADS.c.id, LEADS.c.status, LEADS.c.is_spam)
            .where(LEADS.c.email.in_(bindparam("emails", expanding=True))).with_for_update())
    spam: set[int] = set()
    for start in range(0, len(emails), 5000):
        for email, lead_id, status, is_spam in conn.execute(stmt, {"emails": emails[start:start + 5000]}):
            leads[email] = (int(lead_id), status)
            if is_spam:
                spam.add(int(lead_id))
    ids = [lead_id for lead_id, _ in leads.values()]
    recorded: set[tuple[int, str, pd.Timestamp]] = set()
    latest: dict[int, pd.Timestamp] = {}
    ev = select(EVENTS.c.lead_id, EVENTS.c.occurred_at, EVENTS.c.details["to"].as_string()).where(
        EVENTS.c.event_type == STATUS_CHANGED, EVENTS.c.lead_id.in_(bindparam("ids", expanding=True)))
    for start in range(0, len(ids), 5000):
        for lead_id, at, to in conn.execute(ev, {"ids": ids[start:start + 5000]}):
            moment = pd.Timestamp(at)
            moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
            recorded.add((int(lead_id), str(to), moment))
            latest[int(lead_id)] = max(latest.get(int(lead_id), moment), moment)
    current = {lead_id: status for lead_id, status in leads.values()}
    events: list[dict[str, Any]] = []
    final: dict[int, tuple[str, str, str | None]] = {}  # id -> (status at start, new status, reason)
    for row in ordered.itertuples(index=False):
        found = leads.get(row.email)
        if found is None:
            result.rejected.append(Reject(int(row.row), row.email, "unknown_lead"))
            continue
        lead_id = found[0]
        at = row.changed_at
        if (lead_id, row.status, at) in recorded:
            result.already_recorded += 1
            continue
        if lead_id in spam:
            result.rejected.append(Reject(int(row.row), row.email, "spam_managed_by_spam_cleanup"))
            continue
        if lead_id in latest and at < latest[lead_id]:
            result.rejected.append(Reject(int(row.row), row.email, "stale_update"))
            continue
        old = current[lead_id]
        if old == row.status:
            result.unchanged += 1
            continue
        reason = row.reason if isinstance(row.reason, str) else None
        problem = transition_error(old, row.status, reason)
        if problem and not enforce_transitions and problem.startswith("invalid_transition"):
            problem = None
        if problem:
            result.rejected.append(Reject(int(row.row), row.email, problem))
            continue
        events.append({"lead_id": lead_id, "event_type": STATUS_CHANGED, "occurred_at": _bind(store, at),
                       "flow_run_id": flow_run_id,
                       "details": {"from": old, "to": row.status, "reason": reason, "by": by,
                                   **({"original": original} if (original := getattr(row, "original", None))
                                      and isinstance(original, str) else {})}})
        final[lead_id] = (final.get(lead_id, (old,))[0], row.status, reason)
        current[lead_id] = row.status
        recorded.add((lead_id, row.status, at))
        latest[lead_id] = at
        result.applied += 1
    if final:
        guarded = (update(LEADS).where(LEADS.c.id == bindparam("b_id"), LEADS.c.status == bindparam("b_from"))
                   .values(status=bindparam("b_to"), status_reason=bindparam("b_reason"),
                           updated_at=bindparam("b_now")))
        conn.execute(guarded, [{"b_id": i, "b_from": f, "b_to": t, "b_reason": r, "b_now": now}
                               for i, (f, t, r) in final.items()])
        conn.execute(EVENTS.insert(), events)
        # A closed lead gives its rep's slot back (a reopened one takes it again), in the same transaction.
        capacity.follow_status_changes(conn, [(i, f, t) for i, (f, t, _) in final.items()])
    result.rejected.sort(key=lambda r: r.row)
    return result
