"""The lead_followups table: sequence state, step tasks and their outcomes, recycling and re-engagement (all SQL)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, bindparam, exists, func, select, update

from leadflow.crm.schema import CrmTask, Lead, LeadEvent, LeadFollowup, SalesRep
from leadflow.crm.store import Store, chunked, select_in, utc
from leadflow.domain.followup import ACTIVE, RECYCLED, STOPPED

FOLLOWUPS = LeadFollowup.__table__
LEADS = Lead.__table__
TASKS = CrmTask.__table__
REPS = SalesRep.__table__
EVENTS = LeadEvent.__table__
# Every follow-up step task's kind starts so: followup_call, followup_email, followup_social, followup_breakup.
TASK_PREFIX = "followup_"
TASK_KINDS = ("followup_call", "followup_email", "followup_social", "followup_breakup")


def _frame(rows: Sequence[Sequence[Any]], columns: list[str], times: Sequence[str] = ()) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for name in times:
        frame[name] = utc(frame[name])
    return frame


# --- stop, enroll ---------------------------------------------------------------------------------------------


def active_sequences_to_check(conn: Connection, enroll_statuses: list[str]) -> pd.DataFrame:
    """Active sequences whose lead left the enroll statuses, turned spam or has no owner: lead_id, status, is_spam,
    owner_id."""
    stmt = (select(FOLLOWUPS.c.lead_id, LEADS.c.status, LEADS.c.is_spam, LEADS.c.owner_id)
            .join(LEADS, LEADS.c.id == FOLLOWUPS.c.lead_id)
            .where(FOLLOWUPS.c.state == ACTIVE,
                   LEADS.c.status.not_in(sorted(enroll_statuses)) | LEADS.c.is_spam.is_(True)
                   | LEADS.c.owner_id.is_(None)))
    return _frame(conn.execute(stmt).all(), ["lead_id", "status", "is_spam", "owner_id"])


def stop_sequences(conn: Connection, store: Store, stops: pd.DataFrame, now: datetime) -> int:
    """Stop these active sequences (lead_id, reason) and cancel their open step tasks; returns sequences stopped."""
    if stops.empty:
        return 0
    frame = pd.DataFrame({"b_id": stops["lead_id"].astype("int64"), "b_reason": stops["reason"].astype(str),
                          "b_now": now, "b_active": ACTIVE, "b_stopped": STOPPED, "b_none": None})
    stopped = store.bulk(conn, update(FOLLOWUPS).where(FOLLOWUPS.c.lead_id == bindparam("b_id"),
                                                       FOLLOWUPS.c.state == bindparam("b_active"))
                         .values(state=bindparam("b_stopped"), stop_reason=bindparam("b_reason"),
                                 stopped_at=bindparam("b_now"), due_at=bindparam("b_none"),
                                 updated_at=bindparam("b_now")), frame)
    cancel_open_steps(conn, stops["lead_id"].astype("int64").tolist(), now)
    return stopped


def cancel_open_steps(conn: Connection, lead_ids: Sequence[int], now: datetime) -> int:
    """Cancel the open follow-up step tasks of these leads (their sequence stopped); returns tasks cancelled."""
    cancelled = 0
    for part in chunked(sorted({int(i) for i in lead_ids})):
        cancelled += int(conn.execute(
            update(TASKS).where(TASKS.c.lead_id.in_(bindparam("ids", expanding=True)), TASKS.c.status == "open",
                                TASKS.c.kind.in_(TASK_KINDS))
            .values(status="cancelled", completed_at=now), {"ids": list(part)}).rowcount or 0)
    return cancelled


def leads_to_enroll(conn: Connection, enroll_statuses: list[str], limit: int) -> pd.DataFrame:
    """Owned leads in an enroll status that never had a sequence: lead_id, tier, channel, owner_id, rep timezone."""
    stmt = (select(LEADS.c.id, LEADS.c.tier, LEADS.c.first_touch_source, LEADS.c.owner_id, REPS.c.timezone)
            .join(REPS, REPS.c.id == LEADS.c.owner_id)
            .where(LEADS.c.status.in_(sorted(enroll_statuses)), LEADS.c.is_spam.is_(False),
                   ~exists().where(FOLLOWUPS.c.lead_id == LEADS.c.id))
            .order_by(LEADS.c.id).limit(limit))
    return _frame(conn.execute(stmt).all(), ["lead_id", "tier", "channel", "owner_id", "timezone"])


def insert_sequences(conn: Connection, store: Store, frame: pd.DataFrame) -> int:
    """Insert new sequence rows (lead_id, state, cadence, policy_version, sequence, step, started_at, due_at,
    updated_at); a lead that has one already keeps it. Returns rows added."""
    if frame.empty:
        return 0
    stmt = store.insert(FOLLOWUPS).values({c: bindparam(c) for c in frame.columns}).on_conflict_do_nothing(
        index_elements=["lead_id"])
    return store.bulk(conn, stmt, frame)


# --- due steps ------------------------------------------------------------------------------------------------

DUE_COLUMNS = ["lead_id", "cadence", "sequence", "step", "started_at", "due_at", "owner_id", "email", "email_opt_in",
               "do_not_contact", "is_spam", "first_name", "company", "rep_name", "timezone"]


def due_lead_ids(conn: Connection, now: datetime) -> list[int]:
    """Leads whose active sequence has a step due by `now`, ascending."""
    stmt = (select(FOLLOWUPS.c.lead_id).where(FOLLOWUPS.c.state == ACTIVE, FOLLOWUPS.c.due_at <= bindparam("now"))
            .order_by(FOLLOWUPS.c.lead_id))
    return [int(i) for i in conn.execute(stmt, {"now": now}).scalars()]


def due_steps(conn: Connection, lead_ids: Sequence[int], now: datetime) -> pd.DataFrame:
    """What creating the due step of these leads needs: the sequence, the lead's contact flags, its rep's zone."""
    columns = [FOLLOWUPS.c.lead_id, FOLLOWUPS.c.cadence, FOLLOWUPS.c.sequence, FOLLOWUPS.c.step,
               FOLLOWUPS.c.started_at, FOLLOWUPS.c.due_at, LEADS.c.owner_id, LEADS.c.email, LEADS.c.email_opt_in,
               LEADS.c.do_not_contact, LEADS.c.is_spam, LEADS.c.first_name, LEADS.c.company,
               REPS.c.name.label("rep_name"), REPS.c.timezone]
    stmt = (select(*columns).select_from(FOLLOWUPS.join(LEADS, LEADS.c.id == FOLLOWUPS.c.lead_id)
                                         .outerjoin(REPS, REPS.c.id == LEADS.c.owner_id))
            .where(FOLLOWUPS.c.lead_id.in_(bindparam("values", expanding=True)), FOLLOWUPS.c.state == ACTIVE,
                   FOLLOWUPS.c.due_at <= bindparam("now")))
    rows: list[Any] = []
    for part in chunked(sorted({int(i) for i in lead_ids})):
        result = conn.execute(stmt, {"values": list(part), "now": now})
        rows.extend(result.cursor.fetchall())
        result.close()
    frame = _frame(rows, DUE_COLUMNS, ("started_at", "due_at"))
    for name in ("email_opt_in", "do_not_contact", "is_spam"):
        frame[name] = frame[name].map(lambda v: None if pd.isna(v) else bool(v)).astype("boolean")
    return frame


def advance_sequences(conn: Connection, store: Store, moves: pd.DataFrame, now: datetime) -> int:
    """Move sequences past the step just created (lead_id, sequence, step, next_step, next_due, state), guarded by
    their sequence and step so a concurrent run moves each once. Returns sequences moved."""
    if moves.empty:
        return 0
    frame = pd.DataFrame({"b_id": moves["lead_id"].astype("int64"), "b_seq": moves["sequence"].astype("int64"),
                          "b_step": moves["step"].astype("int64"), "b_next": moves["next_step"].astype("int64"),
                          "b_due": pd.to_datetime(moves["next_due"], utc=True), "b_state": moves["state"],
                          "b_active": ACTIVE, "b_now": now})
    stmt = (update(FOLLOWUPS).where(FOLLOWUPS.c.lead_id == bindparam("b_id"),
                                    FOLLOWUPS.c.sequence == bindparam("b_seq"),
                                    FOLLOWUPS.c.step == bindparam("b_step"),
                                    FOLLOWUPS.c.state == bindparam("b_active"))
            .values(step=bindparam("b_next"), due_at=bindparam("b_due"), state=bindparam("b_state"),
                    updated_at=bindparam("b_now")))
    return store.bulk(conn, stmt, frame)


# --- outcomes -------------------------------------------------------------------------------------------------


def recorded_outcomes(conn: Connection, lead_ids: Sequence[int]) -> set[tuple[int, str, pd.Timestamp]]:
    """(lead, outcome, time) of every follow-up outcome already recorded for these leads (a re-import skips them)."""
    from leadflow.domain.followup import FOLLOWUP_OUTCOME

    rows = select_in(conn, [EVENTS.c.lead_id, EVENTS.c.occurred_at, EVENTS.c.details["outcome"].as_string()],
                     EVENTS.c.lead_id, lead_ids, EVENTS.c.event_type == FOLLOWUP_OUTCOME)
    return {(int(i), str(o), pd.Timestamp(t).tz_localize("UTC") if pd.Timestamp(t).tzinfo is None
             else pd.Timestamp(t).tz_convert("UTC")) for i, t, o in rows}


def record_outcomes(conn: Connection, store: Store, outcomes: pd.DataFrame, now: datetime) -> None:
    """Store outcomes (lead_id, outcome, at, stop, event details): the open step task is done, the sequence notes
    the outcome, a stopping outcome stops it, and each outcome is an event."""
    if outcomes.empty:
        return
    ids = outcomes["lead_id"].astype("int64")
    at = pd.to_datetime(outcomes["at"], utc=True)
    finish_open_steps(conn, store, ids, at)
    store.bulk(conn, update(FOLLOWUPS).where(FOLLOWUPS.c.lead_id == bindparam("b_id"))
               .values(last_outcome=bindparam("b_outcome"), last_outcome_at=bindparam("b_at"),
                       updated_at=bindparam("b_now")),
               pd.DataFrame({"b_id": ids, "b_outcome": outcomes["outcome"].astype(str), "b_at": at, "b_now": now}))
    stops = outcomes.loc[outcomes["stop"].astype(bool)]
    if not stops.empty:
        stop_sequences(conn, store, pd.DataFrame({"lead_id": stops["lead_id"], "reason": stops["outcome"]}), now)
    store.insert_events(conn, pd.DataFrame({"lead_id": ids, "event_type": "followup_outcome",
                                            "occurred_at": at, "batch_id": None, "flow_run_id": None,
                                            "details": outcomes["details"].tolist()}))


def finish_open_steps(conn: Connection, store: Store, lead_ids: pd.Series, at: pd.Series) -> None:
    """Mark each lead's open follow-up step task done at its time (an outcome answered the step)."""
    store.bulk(conn, update(TASKS).where(TASKS.c.lead_id == bindparam("b_id"), TASKS.c.status == bindparam("b_open"),
                                         TASKS.c.kind.like(bindparam("b_kind")))
               .values(status=bindparam("b_done"), completed_at=bindparam("b_at")),
               pd.DataFrame({"b_id": lead_ids.reset_index(drop=True), "b_at": at.reset_index(drop=True),
                             "b_open": "open", "b_done": "done", "b_kind": "followup_%"}))


def record_mail_replies(conn: Connection, store: Store, replies: pd.DataFrame, now: datetime) -> int:
    """Mail from leads (lead_id, at, stop, details): a lead with a sequence notes it as its last outcome, a stopping
    reply ends an active sequence (open step tasks cancelled, not done: the rep did not do them), an advancing one
    marks the open step done, and each is a followup_outcome event; leads without a sequence are left alone.
    Returns the sequences stopped."""
    if replies.empty:
        return 0
    ids = replies["lead_id"].astype("int64")
    known = {int(i) for (i,) in select_in(conn, [FOLLOWUPS.c.lead_id], FOLLOWUPS.c.lead_id, ids.unique().tolist())}
    replies = replies.loc[ids.isin(known).to_numpy()]
    if replies.empty:
        return 0
    ids = replies["lead_id"].astype("int64")
    at = pd.to_datetime(replies["at"], utc=True)
    store.bulk(conn, update(FOLLOWUPS).where(FOLLOWUPS.c.lead_id == bindparam("b_id"))
               .values(last_outcome=bindparam("b_outcome"), last_outcome_at=bindparam("b_at"),
                       updated_at=bindparam("b_now")),
               pd.DataFrame({"b_id": ids, "b_outcome": "replied", "b_at": at, "b_now": now}))
    stops = replies.loc[replies["stop"].astype(bool)]
    stopped = stop_sequences(conn, store, pd.DataFrame({"lead_id": stops["lead_id"], "reason": "replied"}), now)
    advances = replies.loc[~replies["stop"].astype(bool)]
    if not advances.empty:
        # A policy where a reply advances: the open step is done (its aim, an answer, is met), as record_outcomes.
        finish_open_steps(conn, store, advances["lead_id"].astype("int64"), pd.to_datetime(advances["at"], utc=True))
    store.insert_events(conn, pd.DataFrame({"lead_id": ids, "event_type": "followup_outcome", "occurred_at": at,
                                            "batch_id": None, "flow_run_id": None,
                                            "details": replies["details"].tolist()}))
    return stopped


# --- recycling and re-engagement ------------------------------------------------------------------------------


def recycle(conn: Connection, store: Store, recycled: pd.DataFrame, now: datetime) -> None:
    """Put leads on the recycle track (lead_id, reengage_at, reason, owner_id): a sequence row in state recycled that
    waits for its date, whatever sequence ran before; their open step tasks are cancelled."""
    if recycled.empty:
        return
    frame = pd.DataFrame({"lead_id": recycled["lead_id"].astype("int64"), "state": RECYCLED,
                          "reengage_at": pd.to_datetime(recycled["reengage_at"], utc=True),
                          "recycle_reason": recycled["reason"].astype(object),
                          "previous_owner_id": pd.array(recycled["owner_id"], dtype="Int64"),
                          "stopped_at": now, "stop_reason": "status:recycled", "updated_at": now,
                          "due_at": pd.Series(pd.NaT, index=recycled.index, dtype="datetime64[us, UTC]")})
    stmt = store.insert(FOLLOWUPS).values({c: bindparam(c) for c in frame.columns})
    stmt = stmt.on_conflict_do_update(index_elements=["lead_id"], set_={
        "state": stmt.excluded.state, "reengage_at": stmt.excluded.reengage_at, "due_at": stmt.excluded.due_at,
        "recycle_reason": stmt.excluded.recycle_reason,
        "previous_owner_id": func.coalesce(stmt.excluded.previous_owner_id, FOLLOWUPS.c.previous_owner_id),
        "stopped_at": stmt.excluded.stopped_at, "stop_reason": stmt.excluded.stop_reason,
        "updated_at": stmt.excluded.updated_at})
    store.bulk(conn, stmt, frame)
    cancel_open_steps(conn, frame["lead_id"].tolist(), now)


def unscheduled_recycled(conn: Connection, limit: int) -> pd.DataFrame:
    """Recycled leads without a re-engage date (recycled by a CRM export's own state, or before follow-up existed):
    lead_id, reason, owner_id."""
    stmt = (select(LEADS.c.id, LEADS.c.status_reason, LEADS.c.owner_id)
            .where(LEADS.c.status == "recycled", LEADS.c.is_spam.is_(False),
                   ~exists().where(FOLLOWUPS.c.lead_id == LEADS.c.id, FOLLOWUPS.c.state == RECYCLED))
            .order_by(LEADS.c.id).limit(limit))
    return _frame(conn.execute(stmt).all(), ["lead_id", "reason", "owner_id"])


REENGAGE_COLUMNS = ["lead_id", "sequence", "status", "owner_id", "previous_owner_id", "recycle_reason", "tier",
                    "channel", "rep_available", "timezone"]


def due_reengagements(conn: Connection, now: datetime) -> pd.DataFrame:
    """Recycled sequences whose re-engage date has come, with the lead's status, owner and the previous owner's
    availability and time zone."""
    owner = func.coalesce(FOLLOWUPS.c.previous_owner_id, LEADS.c.owner_id)
    stmt = (select(FOLLOWUPS.c.lead_id, FOLLOWUPS.c.sequence, LEADS.c.status, LEADS.c.owner_id,
                   owner.label("previous_owner_id"), FOLLOWUPS.c.recycle_reason, LEADS.c.tier,
                   LEADS.c.first_touch_source, and_(REPS.c.active.is_(True), REPS.c.out_of_office.is_(False)),
                   REPS.c.timezone)
            .select_from(FOLLOWUPS.join(LEADS, LEADS.c.id == FOLLOWUPS.c.lead_id)
                         .outerjoin(REPS, REPS.c.id == owner))
            .where(FOLLOWUPS.c.state == RECYCLED, FOLLOWUPS.c.reengage_at <= bindparam("now"))
            .order_by(FOLLOWUPS.c.lead_id))
    frame = _frame(conn.execute(stmt, {"now": now}).all(), REENGAGE_COLUMNS)
    frame["rep_available"] = frame["rep_available"].map(lambda v: False if pd.isna(v) else bool(v))
    return frame


def restart_sequences(conn: Connection, store: Store, starts: pd.DataFrame, now: datetime) -> int:
    """Start sequences again (lead_id, cadence, policy_version, due_at): a new sequence number from step 0, the
    re-engage date cleared. Returns rows changed."""
    if starts.empty:
        return 0
    frame = pd.DataFrame({"b_id": starts["lead_id"].astype("int64"), "b_cadence": starts["cadence"],
                          "b_version": starts["policy_version"], "b_due": pd.to_datetime(starts["due_at"], utc=True),
                          "b_now": now, "b_active": ACTIVE, "b_none": None, "b_one": 1, "b_zero": 0})
    stmt = (update(FOLLOWUPS).where(FOLLOWUPS.c.lead_id == bindparam("b_id"))
            .values(state=bindparam("b_active"), cadence=bindparam("b_cadence"),
                    policy_version=bindparam("b_version"), sequence=FOLLOWUPS.c.sequence + bindparam("b_one"),
                    step=bindparam("b_zero"), started_at=bindparam("b_now"), due_at=bindparam("b_due"),
                    stop_reason=bindparam("b_none"), stopped_at=bindparam("b_none"), reengage_at=bindparam("b_none"),
                    reengaged_at=bindparam("b_now"), updated_at=bindparam("b_now")))
    return store.bulk(conn, stmt, frame)


def set_owners(conn: Connection, store: Store, owners: pd.DataFrame, now: datetime) -> None:
    """Give leads (lead_id, owner_id) an owner, or none (owner_id NA) with their routing left to qualification."""
    if owners.empty:
        return
    from leadflow.domain.progress import LeadStep

    owned = owners.loc[owners["owner_id"].notna()]
    store.bulk(conn, update(LEADS).where(LEADS.c.id == bindparam("b_id"))
               .values(owner_id=bindparam("b_owner"), updated_at=bindparam("b_now")),
               pd.DataFrame({"b_id": owned["lead_id"].astype("int64"), "b_owner": owned["owner_id"].astype("int64"),
                             "b_now": now}))
    unowned = owners.loc[owners["owner_id"].isna()]
    # Back to "scored": the qualification run that follows routes them as it routes any lead.
    store.bulk(conn, update(LEADS).where(LEADS.c.id == bindparam("b_id"))
               .values(owner_id=bindparam("b_none"), holds_capacity=bindparam("b_false"),
                       step_mark=bindparam("b_mark"), step_marked_at=bindparam("b_now"),
                       updated_at=bindparam("b_now")),
               pd.DataFrame({"b_id": unowned["lead_id"].astype("int64"), "b_now": now, "b_none": None,
                             "b_false": False, "b_mark": int(LeadStep.SCORED)}))


def history(conn: Connection, lead_ids: Sequence[int], limit: int = 5) -> pd.DataFrame:
    """What a returning lead's alert tells its rep: the last status changes (from, to, reason, when) and the last
    touches (source, when), newest first, as text; with the lead's alert fields and the previous owner's name."""
    from leadflow.crm.schema import LeadSubmission
    from leadflow.domain.status import STATUS_CHANGED

    ids = sorted({int(i) for i in lead_ids})
    subs = LeadSubmission.__table__
    events = _frame(select_in(conn, [EVENTS.c.lead_id, EVENTS.c.occurred_at, EVENTS.c.details], EVENTS.c.lead_id,
                              ids, EVENTS.c.event_type == STATUS_CHANGED),
                    ["lead_id", "at", "details"], ("at",))
    touches = _frame(select_in(conn, [subs.c.lead_id, subs.c.submitted_at, subs.c.source], subs.c.lead_id, ids),
                     ["lead_id", "at", "source"], ("at",))
    stmt = (select(LEADS.c.id, LEADS.c.first_name, LEADS.c.last_name, LEADS.c.job_title, LEADS.c.company,
                   LEADS.c.country, LEADS.c.priority, LEADS.c.tier, LEADS.c.owner_id,
                   FOLLOWUPS.c.previous_owner_id, REPS.c.name)
            .select_from(LEADS.outerjoin(FOLLOWUPS, FOLLOWUPS.c.lead_id == LEADS.c.id)
                         .outerjoin(REPS, REPS.c.id == func.coalesce(FOLLOWUPS.c.previous_owner_id, LEADS.c.owner_id)))
            .where(LEADS.c.id.in_(bindparam("ids", expanding=True))))
    rows: list[Any] = []
    for part in chunked(ids):
        rows.extend(conn.execute(stmt, {"ids": list(part)}).all())
    leads = _frame(rows, ["lead_id", "first_name", "last_name", "job_title", "company", "country", "priority", "tier",
                          "owner_id", "previous_owner_id", "previous_owner"])
    def _details(value: Any) -> dict[str, Any]:
        return json.loads(value) if isinstance(value, str) else (value or {})

    def status_text(group: pd.DataFrame) -> str:
        parts = []
        for at, details in zip(group["at"], group["details"], strict=True):
            d = _details(details)
            reason = f" ({d['reason']})" if d.get("reason") else ""
            parts.append(f"{at:%Y-%m-%d} {d.get('from')} -> {d.get('to')}{reason}")
        return "; ".join(parts)

    def touch_text(group: pd.DataFrame) -> str:
        return "; ".join(f"{at:%Y-%m-%d} {source}" for at, source in zip(group["at"], group["source"], strict=True))

    changes = {int(k): status_text(g.sort_values("at", ascending=False).head(limit))
               for k, g in events.groupby("lead_id")} if not events.empty else {}
    last = {int(k): touch_text(g.sort_values("at", ascending=False).head(limit))
            for k, g in touches.groupby("lead_id")} if not touches.empty else {}
    leads["history"] = leads["lead_id"].map(changes)
    leads["touches"] = leads["lead_id"].map(last)
    return leads


def end_recycle(conn: Connection, lead_ids: Sequence[int], now: datetime) -> None:
    """End the recycle track of leads a rep moved on before their re-engage date (their status is not recycled)."""
    for part in chunked(sorted({int(i) for i in lead_ids})):
        conn.execute(update(FOLLOWUPS).where(FOLLOWUPS.c.lead_id.in_(bindparam("ids", expanding=True)),
                                             FOLLOWUPS.c.state == RECYCLED)
                     .values(state=STOPPED, reengage_at=None, stop_reason="status_changed_before_reengage",
                             updated_at=now), {"ids": list(part)})


def emails(conn: Connection, lead_ids: Sequence[int]) -> dict[int, str]:
    """Lead id -> email (status changes are keyed by email)."""
    return {int(i): e for i, e in select_in(conn, [LEADS.c.id, LEADS.c.email], LEADS.c.id, lead_ids)}


def sequences(conn: Connection, lead_ids: Sequence[int]) -> dict[int, int]:
    """Lead id -> its sequence number, for the leads that have one."""
    return {int(i): int(s) for i, s in select_in(conn, [FOLLOWUPS.c.lead_id, FOLLOWUPS.c.sequence],
                                                  FOLLOWUPS.c.lead_id, lead_ids)}


def followups_frame(store: Store) -> pd.DataFrame:
    """Every lead_followups row (for tests, checks and the benchmark)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(FOLLOWUPS).order_by(FOLLOWUPS.c.lead_id)).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in FOLLOWUPS.columns])
    for name in ("started_at", "due_at", "stopped_at", "reengage_at", "last_outcome_at", "reengaged_at", "updated_at"):
        frame[name] = utc(frame[name])
    return frame


def followup_tasks(store: Store) -> pd.DataFrame:
    """Every follow-up step task (for tests and checks)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(TASKS).where(TASKS.c.kind.in_(TASK_KINDS)).order_by(TASKS.c.id)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in TASKS.columns])


def lead_ids_by_email(conn: Connection, emails: Sequence[str]) -> dict[str, int]:
    """Email -> lead id, for the leads these emails name."""
    return {e: int(i) for e, i in select_in(conn, [LEADS.c.email, LEADS.c.id], LEADS.c.email, list(emails))}


def status_and_owner(conn: Connection, emails: Sequence[str]) -> dict[str, tuple[int, str, int | None]]:
    """Email -> (lead id, status, owner id), for the leads these emails name."""
    return {e: (int(i), s, None if o is None else int(o)) for e, i, s, o in select_in(
        conn, [LEADS.c.email, LEADS.c.id, LEADS.c.status, LEADS.c.owner_id], LEADS.c.email, list(emails))}


# --- returning leads ------------------------------------------------------------------------------------------

RETURNING = "returning"  # a sequence row waiting for qualification to finish its lead: then its rep is alerted


def returning_candidates(conn: Connection, lead_ids: Sequence[int]) -> pd.DataFrame:
    """What deciding whether these leads return needs: status and reason, owner and whether that rep is available,
    and their touch before the latest one."""
    from leadflow.crm.schema import LeadSubmission

    subs = LeadSubmission.__table__
    before = (select(func.max(subs.c.submitted_at)).where(subs.c.lead_id == LEADS.c.id,
                                                          subs.c.submitted_at < LEADS.c.last_touch_at)
              .scalar_subquery())
    stmt = (select(LEADS.c.id, LEADS.c.status, LEADS.c.status_reason, LEADS.c.owner_id,
                   and_(REPS.c.active.is_(True), REPS.c.out_of_office.is_(False)), before)
            .select_from(LEADS.outerjoin(REPS, REPS.c.id == LEADS.c.owner_id))
            .where(LEADS.c.id.in_(bindparam("ids", expanding=True))))
    rows: list[Any] = []
    for part in chunked(sorted({int(i) for i in lead_ids})):
        rows.extend(conn.execute(stmt, {"ids": list(part)}).all())
    frame = _frame(rows, ["lead_id", "status", "status_reason", "owner_id", "rep_available", "previous_touch_at"],
                   ("previous_touch_at",))
    frame["rep_available"] = frame["rep_available"].map(lambda v: False if pd.isna(v) else bool(v))
    return frame


def mark_returning(conn: Connection, store: Store, back: pd.DataFrame, now: datetime) -> None:
    """Note these leads (lead_id, why, owner_id) as returning: qualification's end alerts their rep and restarts
    their sequence."""
    frame = pd.DataFrame({"lead_id": back["lead_id"].astype("int64"), "state": RETURNING,
                          "recycle_reason": back["why"].astype(str),
                          "previous_owner_id": pd.array(back["owner_id"], dtype="Int64"), "updated_at": now,
                          "reengage_at": pd.Series(pd.NaT, index=back.index, dtype="datetime64[us, UTC]")})
    stmt = store.insert(FOLLOWUPS).values({c: bindparam(c) for c in frame.columns})
    stmt = stmt.on_conflict_do_update(index_elements=["lead_id"], set_={
        "state": stmt.excluded.state, "recycle_reason": stmt.excluded.recycle_reason,
        "reengage_at": stmt.excluded.reengage_at,
        "previous_owner_id": func.coalesce(stmt.excluded.previous_owner_id, FOLLOWUPS.c.previous_owner_id),
        "updated_at": stmt.excluded.updated_at})
    store.bulk(conn, stmt, frame)
    cancel_open_steps(conn, frame["lead_id"].tolist(), now)


def waiting_returning(conn: Connection, lead_ids: Sequence[int]) -> pd.DataFrame:
    """Those of these leads noted as returning: lead_id, why, owner_id, tier, channel, the owner's time zone."""
    stmt = (select(FOLLOWUPS.c.lead_id, FOLLOWUPS.c.recycle_reason, LEADS.c.owner_id, LEADS.c.tier,
                   LEADS.c.first_touch_source, REPS.c.timezone)
            .select_from(FOLLOWUPS.join(LEADS, LEADS.c.id == FOLLOWUPS.c.lead_id)
                         .outerjoin(REPS, REPS.c.id == LEADS.c.owner_id))
            .where(FOLLOWUPS.c.lead_id.in_(bindparam("ids", expanding=True)), FOLLOWUPS.c.state == RETURNING))
    rows: list[Any] = []
    for part in chunked(sorted({int(i) for i in lead_ids})):
        rows.extend(conn.execute(stmt, {"ids": list(part)}).all())
    return _frame(rows, ["lead_id", "why", "owner_id", "tier", "channel", "timezone"])


def report_inputs(store: Store, start: datetime, end: datetime, as_of: datetime
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the monthly report's follow-up figures read, in one snapshot: active sequences counted by cadence and
    step, the rep step tasks still open or due in [start, end), and the leads re-engaged or returning in [start,
    end) with their current status."""
    with store.engine.connect() as conn, conn.begin():
        steps = _frame(conn.execute(select(FOLLOWUPS.c.cadence, FOLLOWUPS.c.step, func.count())
                                    .where(FOLLOWUPS.c.state == ACTIVE)
                                    .group_by(FOLLOWUPS.c.cadence, FOLLOWUPS.c.step)).all(),
                       ["cadence", "step", "leads"])
        tasks = _frame(conn.execute(
            select(TASKS.c.lead_id, TASKS.c.kind, TASKS.c.status, TASKS.c.created_at, TASKS.c.due_at,
                   TASKS.c.completed_at)
            .where(TASKS.c.kind.in_(TASK_KINDS), TASKS.c.created_at < as_of,
                   (TASKS.c.status == "open") | and_(TASKS.c.due_at >= start, TASKS.c.due_at < end))).all(),
            ["lead_id", "kind", "status", "created_at", "due_at", "completed_at"],
            ("created_at", "due_at", "completed_at"))
        returns = _frame(conn.execute(
            select(EVENTS.c.lead_id, EVENTS.c.occurred_at, LEADS.c.status)
            .join(LEADS, LEADS.c.id == EVENTS.c.lead_id)
            .where(EVENTS.c.event_type.in_(["lead_reengaged", "lead_returned"]), EVENTS.c.occurred_at >= start,
                   EVENTS.c.occurred_at < end)).all(), ["lead_id", "occurred_at", "status"], ("occurred_at",))
    return steps, tasks, returns


def any_returning(conn: Connection) -> bool:
    """Whether any lead waits as returning (most qualification batches have none: one indexed probe)."""
    return conn.execute(select(FOLLOWUPS.c.lead_id).where(FOLLOWUPS.c.state == RETURNING).limit(1)).first() is not None


# --- the benchmark's CRM (bench/followup_bench.py) ------------------------------------------------------------

SQLITE_FILL = """
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :leads)
INSERT INTO leads (id, email, first_name, company, first_touch_at, first_touch_source, last_touch_at,
                   last_touch_source, status, owner_id, tier, email_opt_in, do_not_contact, is_spam, holds_capacity,
                   priority, step_mark, created_at, updated_at)
SELECT x, 'lead' || x || '@bench' || (x % 997) || '.example', 'Sam', 'Company ' || (x % 5003),
       :start, CASE x % 5 WHEN 0 THEN 'event' ELSE 'web_form' END, :start, 'web_form', 'working',
       1 + x % :reps, 'tier_' || (1 + x % 4), x % 3 != 0, x % 50 = 0, 0, 1, 'P2', 5, :start, :start
FROM n
"""
SQLITE_SEQUENCES = """
INSERT INTO lead_followups (lead_id, state, cadence, policy_version, sequence, step, started_at, due_at, updated_at)
SELECT id, 'active', CASE tier WHEN 'tier_1' THEN 'tier_1' WHEN 'tier_2' THEN 'tier_2' WHEN 'tier_4' THEN 'tier_2'
                               ELSE 'standard' END,
       :version, 1, (id / 7) % 3, :start,
       CASE WHEN (id * 7919) % 1000 < :due_per_mille THEN datetime(:now, '-' || (id % 50) || ' minutes')
            ELSE datetime(:now, '+' || (1 + id % 200) || ' hours') END,
       :start
FROM leads
"""
PG_FILL = """
INSERT INTO leads (id, email, first_name, company, first_touch_at, first_touch_source, last_touch_at,
                   last_touch_source, status, owner_id, tier, email_opt_in, do_not_contact, is_spam, holds_capacity,
                   priority, step_mark, created_at, updated_at)
SELECT x, 'lead' || x || '@bench' || (x % 997) || '.example', 'Sam', 'Company ' || (x % 5003),
       :start, CASE x % 5 WHEN 0 THEN 'event' ELSE 'web_form' END, :start, 'web_form', 'working',
       1 + x % :reps, 'tier_' || (1 + x % 4), x % 3 != 0, x % 50 = 0, false, true, 'P2', 5, :start, :start
FROM generate_series(1, :leads) AS x
"""
PG_SEQUENCES = """
INSERT INTO lead_followups (lead_id, state, cadence, policy_version, sequence, step, started_at, due_at, updated_at)
SELECT id, 'active', CASE tier WHEN 'tier_1' THEN 'tier_1' WHEN 'tier_2' THEN 'tier_2' WHEN 'tier_4' THEN 'tier_2'
                               ELSE 'standard' END,
       :version, 1, (id / 7) % 3, :start,
       CASE WHEN (id * 7919) % 1000 < :due_per_mille THEN CAST(:now AS timestamptz) - (id % 50) * interval '1 minute'
            ELSE CAST(:now AS timestamptz) + (1 + id % 200) * interval '1 hour' END,
       :start
FROM leads
"""


def fill_bench_crm(store: Store, leads: int, reps: int, due_share: float, start: datetime, now: datetime,
                   version: str) -> None:
    """Fill an empty CRM with `leads` owned working leads, each in an active sequence, `due_share` of them due at
    `now`: set-based SQL, fast enough for a million rows."""
    from sqlalchemy import text

    sqlite = store.dialect == "sqlite"
    plain = {"leads": leads, "reps": reps, "version": version, "due_per_mille": round(due_share * 1000)}
    if sqlite:
        params = {**plain, "start": start.replace(tzinfo=None).isoformat(sep=" "),
                  "now": now.replace(tzinfo=None).isoformat(sep=" ")}
    else:
        params = {**plain, "start": start, "now": now.isoformat()}
    with store.begin() as conn:
        conn.execute(text(SQLITE_FILL if sqlite else PG_FILL), params)
        conn.execute(text(SQLITE_SEQUENCES if sqlite else PG_SEQUENCES), params)
