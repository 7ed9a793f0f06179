"""Lead qualification's steps, one per seed step and named like its task, and the one sequence that runs them.

Each step reads from the CRM (leadflow/crm), decides with pure functions (leadflow/domain) and writes back
through the CRM's repositories. `qualify` runs them in the flow's order over batches of leads: the
lead-qualification flow hands it the Prefect tasks, the benchmark and the concurrency test the plain steps
bound to a store (`local_steps`), so every caller runs the same sequence, data check included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from data_checks.qualification import guard_qualification
from leadflow.crm import accounts as account_store
from leadflow.crm import assignments, outbox, progress
from leadflow.crm import leads as lead_store
from leadflow.crm import tasks as task_store
from leadflow.crm.accounts import AccountResult
from leadflow.crm.assignments import CapacityConflict
from leadflow.crm.store import Store, is_transient_db_error
from leadflow.domain import accounts as matching
from leadflow.domain import crm_state, messages, qualification, records, routing
from leadflow.domain.accounts import LeadLinks
from leadflow.domain.progress import LeadStep
from leadflow.domain.qualification import QualificationPolicy
from leadflow.domain.reps import rep_label
from leadflow.domain.summary import QualificationSummary, add, counts
from leadflow.steps import followup, sla
from leadflow.steps.faults import with_crash_points

# --- Load Leads To Qualify / Qualification Checklist / Check Company Existence -----------------------------------


def load_leads_to_qualify(store: Store, lead_ids: Sequence[int]) -> tuple[pd.DataFrame, int, int]:
    """The leads with what qualification needs, and how many spam leads and not yet scored leads were left out.

    A lead whose spam check, details or score is still missing (its step mark says so) is never qualified: a
    later run, or `leadflow repair`, finishes those steps first.
    """
    leads = followup.reopen_returning_leads(store, lead_store.load_leads(store, lead_ids), datetime.now(UTC))
    spam = leads["is_spam"].to_numpy(dtype=bool)
    unscored = ~spam & (leads["step_mark"].to_numpy() < LeadStep.SCORED)
    return leads.loc[~spam & ~unscored].reset_index(drop=True), int(spam.sum()), int(unscored.sum())


def qualification_checklist(leads: pd.DataFrame, policy: QualificationPolicy) -> pd.DataFrame:
    """BANT checklist per lead: budget, authority, need, timeline each met, not met or unknown, with why."""
    return qualification.evaluate_checklist(leads, policy)


def check_company_existence(store: Store, leads: pd.DataFrame, policy: QualificationPolicy) -> pd.DataFrame:
    """Match each lead's company to the accounts: domain first, then cleaned name, fuzzy within blocks.

    A lead whose unfinished qualification (a killed run's) already created its new company's account keeps the
    "new company" evidence recorded then, instead of matching that account by domain now.
    """
    match = matching.match_companies(leads, account_store.load_accounts(store), policy.matching)
    return _kept_new_company_evidence(leads, match)


def _evidence(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        return json.loads(value)
    return None


def _kept_new_company_evidence(leads: pd.DataFrame, match: pd.DataFrame) -> pd.DataFrame:
    """The match, with "new company" restored for unfinished leads whose recorded evidence says so."""
    if "step_mark" not in leads or "match_details" not in leads:
        return match
    unfinished = np.isin(leads["step_mark"].to_numpy(), [LeadStep.SCORED, LeadStep.ASSIGNED])
    found = match["match_band"].isin(["domain", "auto_link"]).to_numpy(dtype=bool, na_value=False)
    rows = np.flatnonzero(unfinished & found)
    stored = {i: _evidence(leads["match_details"].iat[i]) for i in rows}
    rows = [i for i in rows if stored[i] and stored[i].get("band") == "new_company"]
    if not rows:
        return match
    match = match.copy()
    for i in rows:
        row, evidence = match.index[i], stored[i]
        match.at[row, "match_band"] = "new_company"
        match.at[row, "match_method"] = evidence.get("method")
        match.at[row, "match_score"] = evidence.get("score")
        match.at[row, "matched_account_id"] = pd.NA
        match.at[row, "new_name"] = leads["company"].iat[i]
        match.at[row, "new_name_key"] = evidence.get("key")
        match.at[row, "new_domain"] = evidence.get("domain")
        match.at[row, "match_details"] = json.dumps(evidence)
    return match


# --- Create Account Entry / Link Lead to Account -----------------------------------------------------------------


def create_account_entries(store: Store, leads: pd.DataFrame, match: pd.DataFrame) -> AccountResult:
    """Create one account per new company (race-safe on both unique keys), and record that on its leads."""
    result = account_store.create_accounts(store, leads, match)
    if "step_mark" in leads:
        new = match["match_band"].eq("new_company").to_numpy(dtype=bool, na_value=False)
        lead_store.record_new_company_evidence(store, leads["lead_id"][new].astype("int64").tolist(),
                                               match["match_details"][new].astype(str).tolist())
    return result


def link_leads_to_accounts(leads: pd.DataFrame, match: pd.DataFrame, accounts: AccountResult) -> LeadLinks:
    """Each lead's matched or new account and the match evidence (Assign Lead Owner stores them)."""
    return matching.link_leads_to_accounts(leads, match, accounts.account_ids)


# --- Determine Lead Priority ---------------------------------------------------------------------------------------


def determine_lead_priority(leads: pd.DataFrame, checks: pd.DataFrame, match: pd.DataFrame,
                            policy: QualificationPolicy) -> pd.DataFrame:
    """Each lead's priority, deciding rule and reason, and whether they or the checklist `changed`.

    The batch's decisions are checked (data_checks/qualification.py) before anything of them is written: a
    value the policy cannot produce stops the run.
    """
    priority = qualification.determine_priority(leads, checks, policy)
    priority["changed"] = qualification.priority_changes(leads, checks, priority)
    guard_qualification(leads, checks, priority, match, policy)
    return priority


# --- Assign Lead Owner ---------------------------------------------------------------------------------------------


@dataclass
class AssignmentResult:
    """Every routing decision of a run, and which of them were new."""

    decisions: pd.DataFrame
    newly_assigned: pd.Series
    newly_queued: pd.Series
    # Rep id -> name, as routing read them: summaries name reps instead of "rep 3".
    rep_names: dict[int, str] = field(default_factory=dict)


def assign_lead_owners(store: Store, leads: pd.DataFrame, links: LeadLinks, priority: pd.DataFrame,
                       policy: QualificationPolicy, replay: bool, now: datetime, match: pd.DataFrame | None,
                       checks: pd.DataFrame, *, flow_run_id: str | None = None) -> AssignmentResult:
    """Route every lead in one transaction that holds the reps (row locks on PostgreSQL, the write lock on SQLite).

    The same transaction writes what the earlier steps decided (account link and evidence, checklist, priority)
    with the owner, one UPDATE per changed lead.

    Current owners and account owners are read inside that transaction, so two runs at once see each other's
    assignments; capacity is reserved with `UPDATE ... WHERE open_leads + n <= max_open_leads`, whose row count
    proves no rep went over. Replays record historical decisions without reserving capacity or moving rotation.
    """
    for attempt in range(4):
        try:
            return _assign(store, leads, links, checks, priority, policy, replay=replay, now=now,
                           flow_run_id=flow_run_id, match=match)
        except Exception as exc:
            if attempt == 3 or not (is_transient_db_error(exc) or isinstance(exc, CapacityConflict)):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _assign(store: Store, leads: pd.DataFrame, links: LeadLinks, checks: pd.DataFrame, priority: pd.DataFrame,
            policy: QualificationPolicy, *, replay: bool, now: datetime, flow_run_id: str | None,
            match: pd.DataFrame | None) -> AssignmentResult:
    ids = leads["lead_id"].astype("int64").tolist()
    accounts = links.account
    with store.begin() as conn:
        # A replay reserves no capacity and moves no rotation (routing returns neither): it only reads the reps, so
        # it takes no locks on them, and parallel backfill windows do not queue behind each other's transaction.
        reps = assignments.load_reps(conn, lock=not replay)
        owners = lead_store.current_owners(conn, ids)
        acc_owner = account_store.account_owners(conn, [int(a) for a in accounts.dropna().unique()])
        queued = task_store.waiting_in_queue(conn, ids)
        frame = pd.DataFrame({
            "lead_id": leads["lead_id"].to_numpy(),
            "owner_id": leads["lead_id"].map(owners).to_numpy(),
            "account_id": accounts.to_numpy(),
            "account_owner_id": accounts.map(acc_owner).to_numpy(),
            "country": leads["country"].to_numpy(),
            "priority": priority["priority"].to_numpy(),
            "employee_count": leads["employee_count"].to_numpy(),
            "company_size": leads["company_size"].to_numpy(),
        }, index=leads.index)
        result = routing.assign_owners(frame, reps, policy.routing, enforce_capacity=not replay)
        decisions = result.decisions
        assignments.reserve_capacity(conn, result.reserved)
        assignments.record_rotation(conn, result.rotation)
        account_store.claim_account_owners(conn, store, result.account_owners, now)
        had_owner = frame["owner_id"].notna().to_numpy()
        assigned = decisions["owner_id"].notna().to_numpy() & ~had_owner
        newly_queued = decisions["assignment_rule"].eq(routing.FALLBACK).to_numpy(dtype=bool) & ~np.isin(
            decisions["lead_id"].to_numpy(), list(queued))
        # The ASSIGNED mark moves with each changed lead's UPDATE; the unchanged leads are marked on their own below.
        marked = lead_store.update_qualified_leads(conn, store, leads, links, checks, priority, decisions["owner_id"],
                                                   assigned, now, holds_capacity=not replay, mark=LeadStep.ASSIGNED)
        if assigned.any():
            rows = pd.DataFrame({"b_id": decisions["lead_id"][assigned].to_numpy(),
                                 "b_owner": decisions["owner_id"][assigned].to_numpy()})
            # A lead that waited in the fallback queue hands its open qualification task to the new owner.
            task_store.hand_over_open_tasks(conn, store, rows.loc[rows["b_id"].isin(list(queued))])
        lead_store.insert_events(conn, store, records.qualified_events(
            leads, accounts, priority, decisions, assigned | newly_queued, policy, replay, now, flow_run_id, match,
            checks))
        progress.mark_step(conn, sorted(set(ids) - marked), LeadStep.ASSIGNED, now)
        if "step_mark" in leads:
            decisions, assigned, newly_queued = _resume_assigned(conn, leads, decisions, assigned, newly_queued)
    return AssignmentResult(decisions=decisions, newly_assigned=pd.Series(assigned, index=leads.index),
                            newly_queued=pd.Series(newly_queued, index=leads.index),
                            rep_names={int(i): str(n) for i, n in zip(reps["id"], reps["name"], strict=True)})


def _resume_assigned(conn: Any, leads: pd.DataFrame, decisions: pd.DataFrame, assigned: np.ndarray,
                     newly_queued: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Routing as a killed run decided it, for its leads routed before the kill (ASSIGNED): tasks and messages need it.

    Their owner or queue place is stored already, so routing them again says "existing owner" or finds them in the
    queue; the assignment their routing recorded says whether they were newly assigned or queued, and by which rule.
    """
    resumed = leads["step_mark"].to_numpy() == LeadStep.ASSIGNED
    if not resumed.any():
        return decisions, assigned, newly_queued
    recorded = progress.assignments_decided(conn, leads.loc[resumed, "lead_id"].astype("int64").tolist())
    decisions, assigned, newly_queued = decisions.copy(), assigned.copy(), newly_queued.copy()
    for position in np.flatnonzero(resumed):
        found = recorded.get(int(leads["lead_id"].iat[position]))
        if not found or "rule" not in found:
            continue
        row = decisions.index[position]
        decisions.at[row, "assignment_rule"] = found["rule"]
        decisions.at[row, "owner_id"] = found.get("owner_id")
        decisions.at[row, "fallback_reason"] = found.get("reason")
        decisions.at[row, "segment"] = found.get("segment")
        decisions.at[row, "candidates"] = list(found.get("candidates") or [])
        assigned[position] = found.get("owner_id") is not None
        newly_queued[position] = found["rule"] == routing.FALLBACK
    return decisions, assigned, newly_queued


# --- tasks and messages --------------------------------------------------------------------------------------------


@dataclass
class Qualified:
    """The in-memory results of the deciding steps for one batch, shared by the task and message steps."""

    leads: pd.DataFrame
    checks: pd.DataFrame
    match: pd.DataFrame
    accounts: pd.Series
    priority: pd.DataFrame
    assignment: AssignmentResult
    qualification_due: pd.Series
    discovery_due: pd.Series


def qualified(leads: pd.DataFrame, checks: pd.DataFrame, match: pd.DataFrame, accounts: pd.Series,
              priority: pd.DataFrame, assignment: AssignmentResult, policy: QualificationPolicy, now: datetime,
              timezone: str) -> Qualified:
    """Bundle one batch's decisions with its SLA due times (business hours in `timezone`) for the later steps."""
    return Qualified(leads, checks, match, accounts, priority, assignment,
                     qualification.due_times(priority["priority"], policy.sla.qualification_minutes, now, policy.sla,
                                             timezone),
                     qualification.due_times(priority["priority"], policy.sla.discovery_call_minutes, now,
                                             policy.sla, timezone))


def assign_qualification_tasks(store: Store, q: Qualified, policy: QualificationPolicy, replay: bool,
                               now: datetime) -> int:
    """Assign Qualification Task: one per lead, owned by its rep (or unowned in the fallback queue)."""
    frame = records.task_rows(q.leads, q.assignment.decisions, q.priority, q.checks, q.accounts, q.match,
                              "qualification", q.qualification_due, policy, replay, now)
    return task_store.insert_tasks(store, frame)


def create_discovery_call_tasks(store: Store, q: Qualified, policy: QualificationPolicy, replay: bool,
                                now: datetime) -> int:
    """Create Discovery Call Task for the leads of the configured priorities whose checklist passes."""
    wanted = (q.priority["priority"].isin(policy.messages.discovery_call_priorities).to_numpy(dtype=bool)
              & q.checks["passes"].to_numpy(dtype=bool))
    if not wanted.any():
        return 0
    frame = records.task_rows(q.leads.loc[wanted], q.assignment.decisions.loc[wanted], q.priority.loc[wanted],
                              q.checks.loc[wanted], q.accounts.loc[wanted], q.match.loc[wanted], "discovery_call",
                              q.discovery_due.loc[wanted], policy, replay, now)
    return task_store.insert_tasks(store, frame)


def send_auto_responses(store: Store, q: Qualified, policy: QualificationPolicy, now: datetime) -> int:
    """Queue the auto-response to new prospects (never to suppressed leads); returns the rows queued."""
    if not policy.messages.auto_response:
        return 0
    fresh = q.leads.loc[q.leads["status"].fillna("new").eq("new").to_numpy(dtype=bool)]
    return outbox.queue_messages(store, messages.auto_responses(fresh, now))


def alert_sales_reps(store: Store, q: Qualified, policy: QualificationPolicy, now: datetime) -> int:
    """Queue an alert to the rep of each newly assigned lead of the alerting priorities."""
    hot = q.priority["priority"].isin(policy.messages.rep_alert_priorities).to_numpy(dtype=bool)
    chosen = q.assignment.newly_assigned & pd.Series(hot, index=q.leads.index)
    frame = records.qualification_messages(q.leads, q.assignment.decisions, q.priority, q.checks,
                                           q.qualification_due, chosen)
    return outbox.queue_messages(store, messages.rep_alerts(frame, assignments.reps_frame(store), now))


def notify_sales_manager(store: Store, q: Qualified, policy: QualificationPolicy, now: datetime, *,
                         manager_urls: str | None, sales_inbox: str) -> int:
    """Queue notices about leads newly in the fallback queue and about open tasks newly past their SLA.

    Only whether `manager_urls` is set matters (the notices name the `manager` channel; its URLs stay secret).
    """
    queued = q.assignment.newly_queued.to_numpy(dtype=bool)
    unassigned = pd.DataFrame({"lead_id": q.leads["lead_id"][queued], "priority": q.priority["priority"][queued],
                               "fallback_reason": q.assignment.decisions["fallback_reason"][queued]})
    if "email" in q.leads.columns:
        # The notice lists each lead masked (j***@a***.com), so the manager can tell them apart without the address.
        unassigned["email"] = q.leads["email"][queued]
    notices = outbox.queue_messages(store, messages.unassigned_notice(
        unassigned, policy.routing.fallback_queue, policy.messages.sla_risk_priorities, bool(manager_urls), sales_inbox,
        now))
    # The SLA watch of the delivery runs, here too: it stamps what it reports, so no breach is reported twice.
    return notices + sla.watch_task_slas(store, manager_urls, sales_inbox, now).notices


def finish_lead_qualification(store: Store, lead_ids: Sequence[int], now: datetime,
                              left_out: Sequence[int] = ()) -> int:
    """Mark the batch's leads complete once their tasks and messages are queued; the spam among them, and the
    converted or closed leads qualification `left_out`, are complete once scored. Returning leads among them are
    first welcomed back: their rep is alerted with their history."""
    from leadflow.config.settings import get_settings

    followup.welcome_back(store, [int(i) for i in lead_ids], now, get_settings().timezone)
    with store.begin() as conn:
        return progress.finish_qualification(conn, lead_ids, now, left_out)


# --- the one sequence ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualificationSteps:
    """The steps `qualify` runs, by their task's name: the Prefect tasks, or the plain steps bound to a store.

    Each takes what its task takes (no store: a task finds the process's store itself). A step with a `submit`
    method (a Prefect task) runs the checklist beside the company match; a plain one runs it at once.
    """

    load_leads_to_qualify: Callable[[list[int]], tuple[pd.DataFrame, int]]
    qualification_checklist: Callable[..., pd.DataFrame]
    check_company_existence: Callable[..., pd.DataFrame]
    create_account_entries: Callable[..., AccountResult]
    link_leads_to_accounts: Callable[..., LeadLinks]
    determine_lead_priority: Callable[..., pd.DataFrame]
    assign_lead_owners: Callable[..., AssignmentResult]
    assign_qualification_tasks: Callable[..., int]
    create_discovery_call_tasks: Callable[..., int]
    send_auto_responses: Callable[..., int]
    alert_sales_reps: Callable[..., int]
    notify_sales_manager: Callable[..., int]
    finish_lead_qualification: Callable[..., int]


# Each step's task name (tasks/qualification.py): crash points name the plain steps by them too.
QUALIFICATION_STEP_NAMES = {
    "load_leads_to_qualify": "Load Leads To Qualify", "qualification_checklist": "Qualification Checklist",
    "check_company_existence": "Check Company Existence", "create_account_entries": "Create Account Entry",
    "link_leads_to_accounts": "Link Lead to Account", "determine_lead_priority": "Determine Lead Priority",
    "assign_lead_owners": "Assign Lead Owner", "assign_qualification_tasks": "Assign Qualification Task",
    "create_discovery_call_tasks": "Create Discovery Call Task", "send_auto_responses": "Send Auto-Response",
    "alert_sales_reps": "Alert Sales Rep", "notify_sales_manager": "Notify Sales Manager",
    "finish_lead_qualification": "Finish Lead Qualification",
}


def local_steps(store: Store, *, manager_urls: str | None = None, sales_inbox: str = "sales@localhost",
                flow_run_id: str | None = None) -> QualificationSteps:
    """The plain step functions bound to a store, for callers without an orchestrator (bench, tests, repair)."""
    return with_crash_points(QualificationSteps(
        load_leads_to_qualify=partial(load_leads_to_qualify, store),
        qualification_checklist=qualification_checklist,
        check_company_existence=partial(check_company_existence, store),
        create_account_entries=partial(create_account_entries, store),
        link_leads_to_accounts=link_leads_to_accounts,
        determine_lead_priority=determine_lead_priority,
        assign_lead_owners=partial(assign_lead_owners, store, flow_run_id=flow_run_id),
        assign_qualification_tasks=partial(assign_qualification_tasks, store),
        create_discovery_call_tasks=partial(create_discovery_call_tasks, store),
        send_auto_responses=partial(send_auto_responses, store),
        alert_sales_reps=partial(alert_sales_reps, store),
        notify_sales_manager=partial(notify_sales_manager, store, manager_urls=manager_urls, sales_inbox=sales_inbox),
        finish_lead_qualification=partial(finish_lead_qualification, store),
    ), QUALIFICATION_STEP_NAMES)


def _start(step: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """Start a step beside the next ones when it can be submitted (a Prefect task), else run it now."""
    submit = getattr(step, "submit", None)
    if submit is not None:
        return submit(*args).result
    value = step(*args)
    return lambda: value


def summary_of(q: Qualified, summary: QualificationSummary) -> None:
    """Fold one batch's decisions into the summary."""
    summary.leads += len(q.leads)
    for target, values in ((summary.by_priority, q.priority["priority"]), (summary.by_tier, q.leads["tier"]),
                           (summary.matches_by_band, q.match["match_band"]),
                           (summary.assignments_by_rule, q.assignment.decisions["assignment_rule"])):
        for key, n in counts(values).items():
            target[key] = target.get(key, 0) + n
    owners = q.assignment.decisions["owner_id"].astype("Int64")
    for key, n in counts(owners).items():
        name = "none" if key == "none" else rep_label(q.assignment.rep_names, key)
        summary.assignments_by_rep[name] = summary.assignments_by_rep.get(name, 0) + n
    summary.checklist_passed += int(q.checks["passes"].sum())
    summary.priorities_changed += int(q.priority["changed"].sum()) if "changed" in q.priority else 0
    summary.leads_linked += int(q.accounts.notna().sum())
    summary.newly_assigned += int(q.assignment.newly_assigned.sum())
    summary.newly_queued += int(q.assignment.newly_queued.sum())


def qualify(steps: QualificationSteps, lead_ids: Sequence[int], policy: QualificationPolicy,
            summary: QualificationSummary, *, replay: bool, timezone: str, clock: Callable[[], datetime],
            chunk_size: int, messages: str = "auto") -> QualificationSummary:
    """Every qualification step over the leads, batch by batch, in the flow's order (delivery is the caller's).

    `messages` (auto, none, all) decides who is worked live and messaged: see `crm_state.freshness`.
    """
    if messages not in crm_state.MESSAGE_MODES:
        raise ValueError(f"messages must be one of {', '.join(crm_state.MESSAGE_MODES)}, not {messages!r}")
    ids = [int(i) for i in lead_ids]
    for start in range(0, len(ids), chunk_size):
        _qualify_batch(steps, ids[start:start + chunk_size], policy, summary, replay=replay, timezone=timezone,
                       now=clock(), messages=messages)
    return summary


def _qualify_batch(steps: QualificationSteps, ids: list[int], policy: QualificationPolicy,
                   summary: QualificationSummary, *, replay: bool, timezone: str, now: datetime,
                   messages: str = "auto") -> None:
    """Every step over one batch of leads: converted or closed ones left out, older ones recorded as history."""
    tick = time.perf_counter()
    leads, spam, unscored = steps.load_leads_to_qualify(ids)
    summary.skipped_spam += spam
    summary.skipped_unscored += unscored
    summary.add_time("load", time.perf_counter() - tick)
    closed = leads["status"].isin(crm_state.default_status_map().closed_statuses).to_numpy(dtype=bool)
    left_out = [int(i) for i in leads.loc[closed, "lead_id"]]
    if closed.any():
        summary.skipped_closed += int(closed.sum())
        if not replay:
            add(summary.messages_held_back, crm_state.HELD_CLOSED, int(closed.sum()))
        leads = leads.loc[~closed].reset_index(drop=True)
    summary.resumed += int((leads["step_mark"].to_numpy() == LeadStep.ASSIGNED).sum())
    if leads.empty:
        _finish(steps, ids, left_out, now, summary)
        return
    if replay:
        _qualify_part(steps, leads, policy, summary, replay=True, send=False, timezone=timezone, now=now)
        _finish(steps, ids, left_out, now, summary)
        return
    # A lead with a priority was qualified before: a later run keeps working it live (see crm_state.freshness).
    fresh = crm_state.freshness(leads["last_touch_at"], now, policy.messages.fresh_hours, messages,
                                qualified_before=leads["priority"].notna())
    for name, n in fresh.held_back.items():
        add(summary.messages_held_back, name, n)
    summary.historical += int(fresh.historical.sum())
    for historical, send in ((True, False), (False, False), (False, True)):
        part = (fresh.historical == historical) & (fresh.messages == send)
        if part.any():
            _qualify_part(steps, leads.loc[part].reset_index(drop=True), policy, summary, replay=historical,
                          send=send, timezone=timezone, now=now)
    _finish(steps, ids, left_out, now, summary)


def _finish(steps: QualificationSteps, ids: list[int], left_out: list[int], now: datetime,
            summary: QualificationSummary) -> None:
    """Mark the batch complete only now that its tasks and messages are queued: a kill before this leaves its
    leads ASSIGNED, and the next run or repair queues them again (idempotent by key)."""
    tick = time.perf_counter()
    steps.finish_lead_qualification(ids, now, left_out)
    summary.add_time("finish_lead_qualification", time.perf_counter() - tick)


def _qualify_part(steps: QualificationSteps, leads: pd.DataFrame, policy: QualificationPolicy,
                  summary: QualificationSummary, *, replay: bool, send: bool, timezone: str,
                  now: datetime) -> None:
    """The steps after loading over leads treated alike: live or recorded as history (`replay`), messaged or not."""
    tick = time.perf_counter()

    def timed(step: str) -> None:
        nonlocal tick
        summary.add_time(step, time.perf_counter() - tick)
        tick = time.perf_counter()

    checklist = _start(steps.qualification_checklist, leads, policy)
    match = steps.check_company_existence(leads, policy)
    timed("check_company_existence")
    accounts = steps.create_account_entries(leads, match)
    summary.accounts_created += accounts.created
    timed("create_account_entries")
    links = steps.link_leads_to_accounts(leads, match, accounts)
    timed("link_leads_to_accounts")
    checks = checklist()
    timed("wait_for_checklist")
    priority = steps.determine_lead_priority(leads, checks, match, policy)
    timed("determine_lead_priority")
    assignment = steps.assign_lead_owners(leads, links, priority, policy, replay, now, match, checks)
    timed("assign_lead_owner")
    q = qualified(leads, checks, match, links.account, priority, assignment, policy, now, timezone)
    summary_of(q, summary)
    add(summary.tasks_created, "qualification", steps.assign_qualification_tasks(q, policy, replay, now))
    timed("assign_qualification_tasks")
    add(summary.tasks_created, "discovery_call", steps.create_discovery_call_tasks(q, policy, replay, now))
    timed("create_discovery_call_tasks")
    if replay or not send:
        return
    add(summary.messages_queued, "auto_response", steps.send_auto_responses(q, policy, now))
    timed("send_auto_responses")
    add(summary.messages_queued, "rep_alert", steps.alert_sales_reps(q, policy, now))
    timed("alert_sales_reps")
    add(summary.messages_queued, "manager_notice", steps.notify_sales_manager(q, policy, now))
    timed("notify_sales_manager")
