"""Follow-up steps, one per task of the lead-follow-up flow: read (crm) -> decide (domain/followup) -> write (crm).

Everything a run does is derived from durable state (lead_followups, leads, crm_tasks), keyed by lead, sequence and
step: a re-run at the same hour finds nothing due and changes nothing, and a killed run's re-run does what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from leadflow.crm import assignments, outbox, tasks
from leadflow.crm import followup as store_fu
from leadflow.crm.status import record_status_changes
from leadflow.crm.store import Store
from leadflow.domain import followup as fu
from leadflow.domain.followup import CadencePolicy
from leadflow.steps import sla


@dataclass
class FollowupResult:
    """What one follow-up run did, for its summary artifact."""

    stopped: dict[str, int] = field(default_factory=dict)
    enrolled: int = 0
    steps_created: dict[str, int] = field(default_factory=dict)
    emails_queued: int = 0
    steps_skipped: dict[str, int] = field(default_factory=dict)
    sequences_completed: int = 0
    reengaged: int = 0
    recycle_scheduled: int = 0
    reengaged_to_previous_owner: int = 0
    reengaged_to_routing: int = 0
    alerts_queued: int = 0
    overdue_escalated: int = 0
    manager_notices: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Counts for summaries and the run's return value."""
        return {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


def _add(target: dict[str, int], values: pd.Series) -> None:
    for key, n in values.value_counts().items():
        target[str(key)] = target.get(str(key), 0) + int(n)


# --- Stop Finished Sequences ----------------------------------------------------------------------------------


def stop_finished_sequences(store: Store, policy: CadencePolicy, now: datetime, result: FollowupResult) -> int:
    """Stop the active sequences whose lead changed status (meeting booked, disqualified, ...), turned spam or lost
    its owner; their open step tasks are cancelled."""
    with store.begin() as conn:
        found = store_fu.active_sequences_to_check(conn, policy.enroll_statuses)
        if found.empty:
            return 0
        found["reason"] = fu.stop_reasons(found["status"], found["is_spam"], found["owner_id"], policy)
        stops = found.loc[found["reason"].notna()]
        store_fu.stop_sequences(conn, store, stops, now)
    _add(result.stopped, stops["reason"])
    return len(stops)


# --- Enroll Leads ---------------------------------------------------------------------------------------------


def enroll_leads(store: Store, policy: CadencePolicy, now: datetime, timezone: str, result: FollowupResult,
                 batch_size: int = 50_000) -> int:
    """Start a sequence for each owned lead in an enroll status that never had one: the cadence of its tier and
    channel, its first step due in its rep's business hours."""
    total = 0
    while True:
        with store.begin() as conn:
            leads = store_fu.leads_to_enroll(conn, policy.enroll_statuses, batch_size)
            if leads.empty:
                break
            cadence = fu.choose_cadences(leads["tier"], leads["channel"], policy)
            first = fu.steps_of(cadence, pd.Series(0, index=leads.index), policy)
            zones = leads["timezone"].map(lambda z: fu.zone(z, timezone))
            due = fu.due_times(pd.Series(pd.Timestamp(now), index=leads.index), first["day"], first["hour"], zones,
                               policy.business_days)
            frame = pd.DataFrame({"lead_id": leads["lead_id"].astype("int64"), "state": fu.ACTIVE,
                                  "cadence": cadence.astype(str), "policy_version": policy.version, "sequence": 1,
                                  "step": 0, "started_at": now, "due_at": due, "updated_at": now})
            total += store_fu.insert_sequences(conn, store, frame)
        if len(leads) < batch_size:
            break
    result.enrolled += total
    return total


# --- Create Due Follow-Up Steps -------------------------------------------------------------------------------


def create_due_steps(store: Store, policy: CadencePolicy, now: datetime, timezone: str, result: FollowupResult,
                     batch_size: int = 50_000) -> int:
    """Create the task (and, with consent, the email) of every step due by `now`, batch by batch, and move each
    sequence on to its next step's due time (or complete it). A sequence behind by several steps (the flow did not
    run for a while) gets each of them in this run, so a re-run of the same hour finds nothing left to do."""
    created = 0
    longest = max(len(c.steps) for c in policy.cadences)
    for _ in range(longest + 1):
        with store.engine.connect() as conn:
            ids = store_fu.due_lead_ids(conn, now)
        if not ids:
            break
        for start in range(0, len(ids), batch_size):
            created += _create_steps(store, policy, now, timezone, result, ids[start:start + batch_size])
    return created


def _create_steps(store: Store, policy: CadencePolicy, now: datetime, timezone: str, result: FollowupResult,
                  ids: list[int]) -> int:
    """The due step of each of these sequences, in one transaction."""
    with store.begin() as conn:
        due = store_fu.due_steps(conn, ids, now)
        if due.empty:
            return 0
        step = fu.steps_of(due["cadence"], due["step"], policy)
        gone = step["kind"].isna().to_numpy()
        if gone.any():
            # The policy lost this cadence or step: the sequence ends here rather than guess.
            store_fu.advance_sequences(conn, store, due.loc[gone].assign(
                next_step=due["step"], next_due=pd.NaT, state=fu.COMPLETED), now)
            result.sequences_completed += int(gone.sum())
            due, step = due.loc[~gone], step.loc[~gone]
            if due.empty:
                return 0
        task_rows, mails = fu.step_rows(due, step, policy, now)
        added = store.insert_new(conn, tasks.TASKS, task_rows)
        result.emails_queued += outbox.queue(conn, store, mails)
        nxt = fu.steps_of(due["cadence"], due["step"] + 1, policy)
        zones = due["timezone"].map(lambda z: fu.zone(z, timezone))
        last = nxt["kind"].isna().to_numpy()
        next_due = fu.due_times(due["started_at"], nxt["day"].fillna(0), nxt["hour"].fillna(0), zones,
                                policy.business_days).where(~last)
        store_fu.advance_sequences(conn, store, pd.DataFrame({
            "lead_id": due["lead_id"], "sequence": due["sequence"], "step": due["step"],
            "next_step": due["step"] + 1, "next_due": next_due,
            "state": np.where(last, fu.COMPLETED, fu.ACTIVE)}), now)
    if added:
        _add(result.steps_created, task_rows["kind"])
        _add(result.steps_skipped, task_rows.loc[task_rows["status"] == "skipped", "kind"])
    result.sequences_completed += int(last.sum())
    return added


# --- Re-engage Recycled Leads ---------------------------------------------------------------------------------


@dataclass
class Reengaged:
    """Leads re-engaged this run: those back with their previous owner, and those that routing must place."""

    to_owner: list[int] = field(default_factory=list)
    to_route: list[int] = field(default_factory=list)


def reengage_recycled(store: Store, policy: CadencePolicy, now: datetime, timezone: str,
                      result: FollowupResult, flow_run_id: str | None = None) -> Reengaged:
    """Bring recycled leads whose re-engage date has come back to `working`: to their previous owner when that rep
    is active (else their routing is left to qualification), with a fresh sequence and a `lead_reengaged` event."""
    out = Reengaged()
    with store.begin() as conn:
        due = store_fu.due_reengagements(conn, now)
        if due.empty:
            return out
        moved = due.loc[due["status"] != "recycled"]
        if not moved.empty:
            # A rep already moved the lead on: the recycle track ends without touching it.
            store_fu.end_recycle(conn, moved["lead_id"].astype(int).tolist(), now)
        due = due.loc[due["status"] == "recycled"].reset_index(drop=True)
        if due.empty:
            return out
        owner_ok = due["rep_available"].to_numpy(dtype=bool) & due["previous_owner_id"].notna().to_numpy()
        owners = pd.DataFrame({"lead_id": due["lead_id"],
                               "owner_id": pd.array(due["previous_owner_id"], dtype="Int64")})
        owners.loc[~owner_ok, "owner_id"] = pd.NA
        store_fu.set_owners(conn, store, owners, now)
        changes = pd.DataFrame({"row": range(1, len(due) + 1), "email": _emails(conn, due["lead_id"]),
                                "status": "working", "reason": "reengaged", "changed_at": pd.Timestamp(now)})
        record_status_changes(conn, store, changes, "followup:reengage", now, flow_run_id)
        cadence = fu.choose_cadences(due["tier"], due["channel"], policy)
        first = fu.steps_of(cadence, pd.Series(0, index=due.index), policy)
        zones = due["timezone"].where(owner_ok).map(lambda z: fu.zone(z, timezone))
        starts = pd.DataFrame({"lead_id": due["lead_id"], "cadence": cadence.astype(str),
                               "policy_version": policy.version,
                               "due_at": fu.due_times(pd.Series(pd.Timestamp(now), index=due.index), first["day"],
                                                      first["hour"], zones, policy.business_days)})
        store_fu.restart_sequences(conn, store, starts, now)
        store.insert_events(conn, pd.DataFrame({
            "lead_id": due["lead_id"].astype("int64"), "event_type": "lead_reengaged", "occurred_at": now,
            "batch_id": None, "flow_run_id": flow_run_id,
            "details": [json_text({"reason": r, "previous_owner_id": None if pd.isna(p) else int(p),
                                   "routed_to": "previous_owner" if ok else "routing"})
                        for r, p, ok in zip(due["recycle_reason"], due["previous_owner_id"], owner_ok, strict=True)]}))
    out.to_owner = due.loc[owner_ok, "lead_id"].astype(int).tolist()
    out.to_route = due.loc[~owner_ok, "lead_id"].astype(int).tolist()
    result.reengaged += len(due)
    result.reengaged_to_previous_owner += len(out.to_owner)
    result.reengaged_to_routing += len(out.to_route)
    return out


def schedule_recycled(store: Store, policy: CadencePolicy, now: datetime, timezone: str, result: FollowupResult,
                      batch_size: int = 50_000) -> int:
    """Give every recycled lead without a re-engage date one (its reason's delay, else the policy's default, from
    now), so no recycled lead waits for ever: those recycled by a CRM export's own state, for one."""
    total = 0
    while True:
        with store.begin() as conn:
            found = store_fu.unscheduled_recycled(conn, batch_size)
            if found.empty:
                break
            found["reengage_at"] = [fu.reengage_at(now, r if isinstance(r, str) else None, None, policy, timezone,
                                                   strict=False)[0] for r in found["reason"]]
            store_fu.recycle(conn, store, found, now)
        total += len(found)
        if len(found) < batch_size:
            break
    result.recycle_scheduled += total
    return total


def json_text(value: dict[str, Any]) -> str:
    """An event's details as JSON text."""
    import json

    return json.dumps(value)


def _emails(conn: Any, lead_ids: pd.Series) -> list[str]:
    found = store_fu.emails(conn, lead_ids.astype(int).tolist())
    return [found[int(i)] for i in lead_ids]


# --- Alert Sales Rep (returning leads) ------------------------------------------------------------------------


def alert_returning_leads(store: Store, lead_ids: list[int], why: str | dict[int, str], now: datetime) -> int:
    """Queue an alert with the lead's history to the current owner of each of these returning or re-engaged leads."""
    if not lead_ids:
        return 0
    with store.engine.connect() as conn:
        leads = store_fu.history(conn, lead_ids)
        seq = store_fu.sequences(conn, lead_ids)
    leads["sequence"] = leads["lead_id"].map(lambda i: seq.get(int(i), 0))
    reasons = leads["lead_id"].map(lambda i: why if isinstance(why, str) else why.get(int(i), ""))
    return outbox.queue_messages(store, fu.returning_alerts(leads, assignments.reps_frame(store), reasons, now))


# --- Escalate Overdue Steps -----------------------------------------------------------------------------------


def escalate_overdue_steps(store: Store, manager_urls: str | None, sales_inbox: str, now: datetime,
                           result: FollowupResult) -> int:
    """Report open step tasks past their deadline to the manager, once each (the SLA watch's notice and stamp)."""
    watch = sla.watch_task_slas(store, manager_urls, sales_inbox, now)
    result.overdue_escalated += watch.breaches
    result.manager_notices += watch.notices
    return watch.breaches


# --- returning leads: the hook of lead qualification ----------------------------------------------------------


def reopen_returning_leads(store: Store, leads: pd.DataFrame, now: datetime,
                           policy: CadencePolicy | None = None) -> pd.DataFrame:
    """Bring back the leads whose fresh submission makes them return (recycled, disqualified for timing, cold):
    status back to working, kept by their owner when that rep is available (else routed again), noted so that
    qualification's end alerts the rep with their history. Returns `leads` with their new status and owner.

    A terminal disqualification, or any that is not about timing, stays closed: qualification leaves it out.
    """
    from leadflow.crm.assignments import OPEN_STATUSES
    from leadflow.domain.progress import LeadStep

    if leads.empty or "step_mark" not in leads:
        return leads
    policy = policy or fu.load_cadence_policy()
    status = leads["status"].astype("string").fillna("new")
    touched = pd.to_datetime(leads["last_touch_at"], utc=True)
    fresh = (touched >= pd.Timestamp(now) - pd.Timedelta(hours=policy.recycle.fresh_hours)).fillna(False).to_numpy()
    maybe = (status.isin(["recycled", "disqualified"]).to_numpy()
             | (status.isin(sorted(OPEN_STATUSES)).to_numpy() & leads["priority"].notna().to_numpy()))
    pending = leads["step_mark"].to_numpy() == int(LeadStep.SCORED)
    ids = leads.loc[maybe & fresh & pending, "lead_id"].astype("int64").tolist()
    if not ids:
        return leads
    with store.begin() as conn:
        info = store_fu.returning_candidates(conn, ids)
        info["why"] = fu.returning(info["status"], info["status_reason"], info["previous_touch_at"], now, policy)
        back = info.loc[info["why"].notna()].reset_index(drop=True)
        if back.empty:
            return leads
        keep = back["rep_available"].to_numpy(dtype=bool) & back["owner_id"].notna().to_numpy()
        gone = back.loc[~keep & back["owner_id"].notna().to_numpy(), "lead_id"].astype(int).tolist()
        if gone:
            # Their rep left or is away: the slot goes back, and routing finds them someone else.
            assignments.release_capacity(conn, gone)
            store_fu.set_owners(conn, store, pd.DataFrame({"lead_id": gone, "owner_id": pd.NA}), now)
        closed = back.loc[~back["status"].isin(sorted(OPEN_STATUSES))]
        if not closed.empty:
            record_status_changes(conn, store, pd.DataFrame({
                "row": range(1, len(closed) + 1), "email": _emails(conn, closed["lead_id"]), "status": "working",
                "reason": "returning", "changed_at": pd.Timestamp(now)}), "returning", now)
        store_fu.mark_returning(conn, store, back, now)
        store.insert_events(conn, pd.DataFrame({
            "lead_id": back["lead_id"].astype("int64"), "event_type": "lead_returned", "occurred_at": now,
            "batch_id": None, "flow_run_id": None,
            "details": [json_text({"why": w, "from": s, "previous_owner_id": None if pd.isna(o) else int(o),
                                   "routed_to": "previous_owner" if k else "routing"})
                        for w, s, o, k in zip(back["why"], back["status"], back["owner_id"], keep, strict=True)]}))
    leads = leads.copy()
    moved = leads["lead_id"].isin(back["lead_id"]).to_numpy()
    leads.loc[moved & ~leads["status"].isin(sorted(OPEN_STATUSES)).to_numpy(), "status"] = "working"
    leads.loc[leads["lead_id"].isin(gone).to_numpy(), "owner_id"] = None
    return leads


def welcome_back(store: Store, lead_ids: list[int], now: datetime, timezone: str,
                 policy: CadencePolicy | None = None) -> int:
    """At qualification's end: alert the owner of each returning lead among these with its history, and start its
    follow-up sequence again. Returns the alerts queued."""
    with store.engine.connect() as conn:
        back = store_fu.waiting_returning(conn, lead_ids) if store_fu.any_returning(conn) else pd.DataFrame()
    if back.empty:
        return 0
    policy = policy or fu.load_cadence_policy()
    cadence = fu.choose_cadences(back["tier"], back["channel"], policy)
    first = fu.steps_of(cadence, pd.Series(0, index=back.index), policy)
    zones = back["timezone"].map(lambda z: fu.zone(z, timezone))
    with store.begin() as conn:
        store_fu.restart_sequences(conn, store, pd.DataFrame({
            "lead_id": back["lead_id"], "cadence": cadence.astype(str), "policy_version": policy.version,
            "due_at": fu.due_times(pd.Series(pd.Timestamp(now), index=back.index), first["day"], first["hour"],
                                   zones, policy.business_days)}), now)
    why = dict(zip(back["lead_id"].astype(int), back["why"].astype(str), strict=True))
    return alert_returning_leads(store, back["lead_id"].astype(int).tolist(), why, now)


# --- the one sequence, for callers without an orchestrator ----------------------------------------------------


def follow_up(store: Store, policy: CadencePolicy, now: datetime, timezone: str, *, manager_urls: str | None = None,
              sales_inbox: str = "sales@localhost", batch_size: int = 50_000,
              flow_run_id: str | None = None) -> tuple[FollowupResult, Reengaged]:
    """Every follow-up step in the flow's order (the benchmark and tests run it without Prefect).

    Re-engaged leads whose previous owner is gone come back in `Reengaged.to_route` with no owner: the caller
    routes them (the flow runs lead-qualification) and then alerts them with `alert_returning_leads`.
    """
    result = FollowupResult()
    stop_finished_sequences(store, policy, now, result)
    schedule_recycled(store, policy, now, timezone, result, batch_size)
    back = reengage_recycled(store, policy, now, timezone, result, flow_run_id)
    result.alerts_queued += alert_returning_leads(store, back.to_owner, "reengaged", now)
    enroll_leads(store, policy, now, timezone, result, batch_size)
    create_due_steps(store, policy, now, timezone, result, batch_size)
    escalate_overdue_steps(store, manager_urls, sales_inbox, now, result)
    return result, back
