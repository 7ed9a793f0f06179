"""Leads' step marks: move them on with each step's writes, and read which leads still need which step.

The marks (leads.step_mark, leadflow/domain/progress.py) are written inside the transaction of the step they
record, so after a crash the CRM itself says what is missing; a re-run, a resumed batch and `leadflow repair`
read it here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, bindparam, func, select, update

from leadflow.crm.schema import Lead, LeadEvent, LeadSubmission
from leadflow.crm.spam import _STORED_ROWS
from leadflow.crm.store import Store, execute_in, read_in, utc
from leadflow.domain.progress import LeadStep

LEADS = Lead.__table__
SUBMISSIONS = LeadSubmission.__table__
EVENTS = LeadEvent.__table__


def mark_step(conn: Connection, lead_ids: Iterable[int], reached: LeadStep, now: datetime,
              after: Collection[LeadStep] | None = None) -> int:
    """Move these leads to `reached`, only those at the step right before it (or at one of `after`); how many.

    One UPDATE per part of the ids (an IN-list, or an array on PostgreSQL): a lead that is behind (its earlier step
    is still missing) or ahead (a concurrent run already moved it) is left alone, so a mark never skips a step.
    """
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return 0
    before = sorted(int(s) for s in after) if after is not None else [int(reached) - 1]
    stmt = (update(LEADS)
            .where(LEADS.c.id.in_(bindparam("values", expanding=True)), LEADS.c.step_mark.in_(before))
            .values(step_mark=int(reached), step_marked_at=now))
    return execute_in(conn, stmt, ids)


def update_and_mark(store: Store, conn: Connection, changed: pd.DataFrame | Sequence[pd.DataFrame],
                    lead_ids: Iterable[int], reached: LeadStep, now: datetime,
                    since: Mapping[int, int] | None = None) -> None:
    """Write a step's changed lead columns (`changed`, by id) and mark all `lead_ids` as having reached the step.

    The changed leads are marked by the UPDATE that writes their columns (on PostgreSQL every UPDATE of a row is a
    new row version, so a separate mark rewrote each of them twice), the rest by `mark_step`: same transaction, same
    rule (only leads at the step right before move). `changed` may be several frames, each with its own columns
    and leads. `since` (lead id -> step): leads whose earlier steps finished in this run without writing their
    marks (intake leaves details' write and mark to the score's write); they may move from that step or any after
    it.
    """
    ids = {int(i) for i in lead_ids}
    frames = [f for f in ([changed] if isinstance(changed, pd.DataFrame) else changed) if not f.empty]
    folded = {int(i): int(s) for i, s in (since or {}).items() if int(i) in ids}
    written: set[int] = set()
    for frame in frames:
        frame_ids = set(frame["id"].astype("int64").tolist())
        if frame_ids <= ids:
            store.update_leads(conn, frame, mark=(int(reached), now), since=folded)
            written |= frame_ids
        else:
            # Rows the step writes but does not mark: written as they are, the marked ones moved on their own.
            store.update_leads(conn, frame)
    rest = ids - written
    for lowest in sorted({folded.get(i, int(reached) - 1) for i in rest}):
        group = [i for i in rest if folded.get(i, int(reached) - 1) == lowest]
        mark_step(conn, group, reached, now, after=[LeadStep(s) for s in range(lowest, int(reached))])


def finish_qualification(conn: Connection, lead_ids: Iterable[int], now: datetime,
                         left_out: Iterable[int] = ()) -> int:
    """Mark complete the leads whose qualification ran to its end, the scored spam leads it left out, and the
    scored leads it `left_out` on purpose (converted or closed in the exporting CRM)."""
    ids = sorted({int(i) for i in lead_ids})
    done = mark_step(conn, ids, LeadStep.COMPLETE, now)
    done += mark_step(conn, left_out, LeadStep.COMPLETE, now, after=[LeadStep.SCORED])
    stmt = (update(LEADS)
            .where(LEADS.c.id.in_(bindparam("values", expanding=True)), LEADS.c.step_mark == int(LeadStep.SCORED),
                   LEADS.c.is_spam.is_(True))
            .values(step_mark=int(LeadStep.COMPLETE), step_marked_at=now))
    return done + execute_in(conn, stmt, ids)


def steps_by_email(conn: Connection, emails: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(id, step mark) by email of the leads with these emails."""
    stmt = select(LEADS.c.email, LEADS.c.id, LEADS.c.step_mark).where(
        LEADS.c.email.in_(bindparam("values", expanding=True)))
    return {email: (int(id_), int(step)) for email, id_, step in read_in(conn, stmt, sorted(set(emails)), raw=True)}


def steps_of(conn: Connection, lead_ids: Iterable[int]) -> dict[int, int]:
    """The step mark of each of these leads."""
    stmt = select(LEADS.c.id, LEADS.c.step_mark).where(LEADS.c.id.in_(bindparam("values", expanding=True)))
    return {int(i): int(s) for i, s in read_in(conn, stmt, sorted({int(i) for i in lead_ids}), raw=True)}


def waiting_submissions(conn: Connection, lead_ids: Sequence[int], except_batch: str | None) -> pd.DataFrame:
    """Stored submissions of these leads that still wait for their spam check, outside `except_batch`.

    Those of the batches that stored one of the lead's submissions since its mark went back to CREATED (the
    batch a killed run was writing), as the intake check reads a batch's rows (same columns).
    """
    names = ["submission_id", *(c.name for c in _STORED_ROWS[1:])]
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return pd.DataFrame(columns=names)
    since = select(SUBMISSIONS.c.lead_id, SUBMISSIONS.c.batch_id).join(
        LEADS, LEADS.c.id == SUBMISSIONS.c.lead_id).where(
        SUBMISSIONS.c.lead_id.in_(bindparam("values", expanding=True)), LEADS.c.step_mark == int(LeadStep.CREATED),
        SUBMISSIONS.c.received_at >= func.coalesce(LEADS.c.step_marked_at, SUBMISSIONS.c.received_at))
    if except_batch is not None:
        since = since.where(SUBMISSIONS.c.batch_id != except_batch)
    pairs = {(int(lead), batch) for lead, batch in read_in(conn, since.distinct(), ids, raw=True)}
    if not pairs:
        return pd.DataFrame(columns=names)
    stmt = select(*_STORED_ROWS, SUBMISSIONS.c.batch_id).where(
        SUBMISSIONS.c.lead_id.in_(bindparam("values", expanding=True)),
        SUBMISSIONS.c.batch_id.in_(sorted({b for _, b in pairs})))
    rows = [row[:-1] for row in read_in(conn, stmt, sorted({lead for lead, _ in pairs}))
            if (int(row[1]), row[-1]) in pairs]
    return pd.DataFrame(rows, columns=names)


def assignments_decided(conn: Connection, lead_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """For leads routed but not finished (ASSIGNED): the assignment their routing recorded, if it decided one.

    Assign Lead Owner writes the mark and a `lead_qualified` event at the same time; the event's `assignment`
    section (rule, owner_id, queue, reason, candidates, segment) is what tasks and messages of that run needed.
    """
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return {}
    stmt = (select(EVENTS.c.lead_id, EVENTS.c.occurred_at, EVENTS.c.details)
            .join(LEADS, LEADS.c.id == EVENTS.c.lead_id)
            .where(EVENTS.c.lead_id.in_(bindparam("values", expanding=True)), EVENTS.c.event_type == "lead_qualified",
                   LEADS.c.step_mark == int(LeadStep.ASSIGNED), EVENTS.c.occurred_at >= LEADS.c.step_marked_at)
            .order_by(EVENTS.c.lead_id, EVENTS.c.occurred_at, EVENTS.c.id))
    found: dict[int, dict[str, Any]] = {}
    for lead_id, _, details in read_in(conn, stmt, ids):
        if int(lead_id) in found:
            continue
        data = json.loads(details) if isinstance(details, str) else details
        found[int(lead_id)] = dict(data.get("assignment") or {})
    return found


def incomplete_leads(conn: Connection, marked_before: datetime | None) -> pd.DataFrame:
    """Leads whose processing is not complete, with the chunk that last sent them through the steps.

    Columns: lead_id, step_mark, is_spam, batch_id and received_at of the lead's latest submission. Leads marked
    at or after `marked_before` are left out (a live run may still be working on them).
    """
    cond = [LEADS.c.step_mark < int(LeadStep.COMPLETE)]
    if marked_before is not None:
        cond.append(func.coalesce(LEADS.c.step_marked_at, LEADS.c.updated_at) < marked_before)
    leads = conn.execute(select(LEADS.c.id, LEADS.c.step_mark, LEADS.c.is_spam).where(and_(*cond))).all()
    columns = ["lead_id", "step_mark", "is_spam", "batch_id", "received_at"]
    if not leads:
        return pd.DataFrame(columns=columns)
    stmt = (select(SUBMISSIONS.c.lead_id, SUBMISSIONS.c.batch_id, SUBMISSIONS.c.received_at, SUBMISSIONS.c.id)
            .where(SUBMISSIONS.c.lead_id.in_(bindparam("values", expanding=True))))
    subs = pd.DataFrame(read_in(conn, stmt, [int(r[0]) for r in leads], raw=True),
                        columns=["lead_id", "batch_id", "received_at", "id"])
    subs["received_at"] = utc(subs["received_at"])
    latest = subs.sort_values(["lead_id", "received_at", "id"]).drop_duplicates("lead_id", keep="last")
    frame = pd.DataFrame([(int(i), int(s), bool(p)) for i, s, p in leads], columns=["lead_id", "step_mark", "is_spam"])
    return frame.merge(latest[["lead_id", "batch_id", "received_at"]], on="lead_id", how="left")[columns]
