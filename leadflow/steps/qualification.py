"""The CRM reads and writes of lead qualification: accounts, links, priorities, owners, tasks and outbox rows."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from leadflow.crm.outbox import queue_messages
from leadflow.crm.schema import Account, CrmTask, Lead, LeadEvent, LeadSubmission, OutboxMessage, SalesRep
from leadflow.crm.store import Store, is_transient_db_error, read_in, records
from leadflow.domain import accounts as matching
from leadflow.domain import messages, qualification, routing
from leadflow.domain.qualification import QualificationPolicy
from leadflow.steps import sla

LEADS = Lead.__table__
ACCOUNTS = Account.__table__
REPS = SalesRep.__table__
TASKS = CrmTask.__table__
OUTBOX = OutboxMessage.__table__
EVENTS = LeadEvent.__table__
SUBMISSIONS = LeadSubmission.__table__

LEAD_COLUMNS = (
    "id", "email", "first_name", "last_name", "job_title", "country", "company", "company_key", "company_domain",
    "email_domain", "company_size", "industry", "employee_count", "revenue_band", "seniority", "page_views",
    "pricing_page_visits", "demo_requested", "intent_score", "score", "tier", "priority", "priority_reason",
    "checklist", "match_details", "account_id", "owner_id", "do_not_contact", "email_opt_in", "is_spam", "status",
)


class CapacityConflict(RuntimeError):
    """A rep's capacity changed under a reservation: the assignment transaction rolls back and is retried."""



def _select_in(conn: Connection, columns: list, key, values: Sequence[Any], *where, raw: bool = False) -> list[tuple]:
    """Rows whose key is one of `values`, IN-list by IN-list; `raw` returns the driver's tuples as they come.

    Raw rows skip SQLAlchemy's per-row result processing (half the read time of a wide 50,000-row read), so
    callers get what the driver gives: 0/1 for booleans and JSON text on SQLite.
    """
    stmt = select(*columns).where(key.in_(bindparam("values", expanding=True)), *where)
    return read_in(conn, stmt, sorted(set(values)), raw=raw)


def _events(lead_ids: Sequence[int], event_type: str, details: Sequence[str], now: datetime,
            flow_run_id: str | None) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": list(lead_ids), "event_type": event_type, "occurred_at": now, "batch_id": None,
                         "flow_run_id": flow_run_id, "details": list(details)})


# --- reading --------------------------------------------------------------------------------------------------


def resolve_lead_ids(store: Store, lead_ids: Sequence[int] | None = None, emails: Sequence[str] | None = None,
                     all_unqualified: bool = False) -> list[int]:
    """Ids of the leads to qualify: given ids, leads with these emails, or every lead never qualified."""
    ids = {int(i) for i in (lead_ids or [])}
    with store.engine.connect() as conn:
        if emails:
            wanted = [e.strip().lower() for e in emails if e and e.strip()]
            ids.update(int(r[0]) for r in _select_in(conn, [LEADS.c.id], LEADS.c.email, wanted))
        if all_unqualified:
            stmt = select(LEADS.c.id).where(LEADS.c.qualified_at.is_(None), LEADS.c.is_spam.is_(False))
            ids.update(conn.execute(stmt).scalars())
    return sorted(ids)


def load_leads(store: Store, lead_ids: Sequence[int]) -> pd.DataFrame:
    """The leads to qualify with every column qualification reads, and all their messages (oldest first)."""
    with store.engine.connect() as conn:
        rows = _select_in(conn, [LEADS.c[c] for c in LEAD_COLUMNS], LEADS.c.id, [int(i) for i in lead_ids],
                          raw=True)
        # Column lists, not row tuples: pandas builds the same frame from them in half the time.
        columns = zip(*rows, strict=True) if rows else ([] for _ in LEAD_COLUMNS)
        frame = pd.DataFrame(dict(zip(LEAD_COLUMNS, map(list, columns), strict=True))).rename(
            columns={"id": "lead_id"})
        texts = _select_in(conn, [SUBMISSIONS.c.lead_id, SUBMISSIONS.c.message], SUBMISSIONS.c.lead_id,
                           frame["lead_id"].tolist(), SUBMISSIONS.c.message.is_not(None), raw=True)
    frame = frame.sort_values("lead_id", kind="stable").reset_index(drop=True)
    if texts:
        table = pd.DataFrame(texts, columns=["lead_id", "message"])
        # Most leads have one message: only the others are joined (a Python join per group is the slow part).
        several = table["lead_id"].duplicated(keep=False).to_numpy()
        msgs = pd.concat([table.loc[~several].set_index("lead_id")["message"],
                          table.loc[several].groupby("lead_id", sort=False)["message"].agg("\n".join)])
        frame["message"] = frame["lead_id"].map(msgs).astype("string")
    else:
        frame["message"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    for name in ("do_not_contact", "is_spam"):
        frame[name] = frame[name].astype("boolean").fillna(False)
    for name in ("demo_requested", "email_opt_in"):  # raw rows: SQLite hands booleans back as 0/1
        frame[name] = frame[name].astype("boolean")
    return frame


ACCOUNT_COLUMNS = ("id", "name_key", "domain", "owner_id")


def load_accounts(store: Store) -> pd.DataFrame:
    """Every account's id, name key, domain and owner, for matching (a few columns: cheap even for many rows)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(*(ACCOUNTS.c[c] for c in ACCOUNT_COLUMNS))).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(ACCOUNT_COLUMNS))


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


# --- Create Account Entry / Link Lead to Account -----------------------------------------------------------


@dataclass
class AccountResult:
    """Accounts proposed and created by one run, and the account id each new-company lead belongs to."""

    proposed: int = 0
    created: int = 0
    account_ids: pd.Series = field(default_factory=lambda: pd.Series(dtype="Int64"))


def create_account_entries(store: Store, leads: pd.DataFrame, match: pd.DataFrame) -> AccountResult:
    """Insert one account per new company, race-safe: a concurrent insert of the same domain or name wins quietly.

    INSERT ... ON CONFLICT DO NOTHING covers both unique keys (domain and name_key) on SQLite and PostgreSQL; the
    ids are then read back by domain, else by name key, so every run links to the one account that exists.
    """
    result = AccountResult()
    is_new = match["match_band"].eq("new_company").to_numpy(dtype=bool, na_value=False)
    if not is_new.any():
        return result
    for attempt in range(4):
        try:
            return _create_accounts(store, leads, match, is_new, result)
        except Exception as exc:
            # Two runs inserting the same new companies in another order can deadlock on PostgreSQL: the loser
            # retries, and then finds the winner's rows.
            if attempt == 3 or not is_transient_db_error(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    return result


def _create_accounts(store: Store, leads: pd.DataFrame, match: pd.DataFrame, is_new: np.ndarray,
                     result: AccountResult) -> AccountResult:
    domains = match["new_domain"][is_new].dropna().unique().tolist()
    keys = match["new_name_key"][is_new].dropna().unique().tolist()
    by_domain: dict[str, int] = {}
    by_key: dict[str, int] = {}
    result.proposed = result.created = 0
    pending = pd.Series(is_new, index=match.index)
    with store.begin() as conn:
        # A proposal can lose on one key to a proposal that won on the other (same name, other domain): the leads
        # left without an account get a second round of proposals, until every new-company lead has one.
        for _ in range(4):
            proposals = matching.new_accounts(leads.loc[pending], match.loc[pending])
            if proposals.empty:
                break
            result.proposed += len(proposals)
            # Multi-row VALUES with RETURNING: only rows this run really inserted come back, even when a concurrent
            # run commits the same companies at the same moment. Sorted keys keep lock order alike across runs.
            stmt = store.insert(ACCOUNTS).on_conflict_do_nothing().returning(ACCOUNTS.c.id)
            result.created += len(conn.execute(stmt, records(proposals.sort_values("name_key"))).all())
            by_domain = dict(_select_in(conn, [ACCOUNTS.c.domain, ACCOUNTS.c.id], ACCOUNTS.c.domain, domains))
            by_key = dict(_select_in(conn, [ACCOUNTS.c.name_key, ACCOUNTS.c.id], ACCOUNTS.c.name_key, keys))
            found = match["new_domain"].map(by_domain).notna() | match["new_name_key"].map(by_key).notna()
            pending = pending & ~found
            if not pending.any():
                break
    ids = match["new_domain"].map(by_domain)
    ids = ids.where(ids.notna(), match["new_name_key"].map(by_key))
    result.account_ids = ids.where(pd.Series(is_new, index=match.index)).astype("Int64")
    return result


@dataclass
class LeadLinks:
    """Each lead's account (matched, new or kept) and which leads' link or match evidence changed."""

    account: pd.Series
    write: np.ndarray
    details: pd.Series


def link_leads_to_accounts(leads: pd.DataFrame, match: pd.DataFrame, new_ids: pd.Series) -> LeadLinks:
    """Decide each lead's account (matched or newly created) and which links and match evidence change.

    Assign Lead Owner writes the changes together with the priority and the owner, in one UPDATE per lead (three
    passes over the same rows took most of the qualification's write time); its `lead_qualified` event records
    the new link.
    """
    account = match["matched_account_id"].astype("Int64")
    account = account.where(account.notna(), new_ids.reindex(match.index).astype("Int64"))
    stored = pd.to_numeric(leads["account_id"], errors="coerce").astype("Int64")
    # A needs_review or no_company result never unlinks an account a lead already has (a human may have set it).
    keep_old = account.isna() & stored.notna()
    account = account.where(~keep_old, stored)
    details = match["match_details"].astype("string")
    # A column of NULLs and JSON can come back with NaN for the NULLs (pandas reads a mostly empty column as float).
    old_details = pd.Series(
        [d if isinstance(d, str) else json.dumps(d) if isinstance(d, dict | list) else None
         for d in leads["match_details"].tolist()],
        index=leads.index, dtype=object,
    )
    # A link a person decided in the review queue (leadflow/crm/review.py) stands: no later match moves it.
    reviewed = np.array([isinstance(d, str) and '"review":' in d for d in old_details], dtype=bool)
    if reviewed.any():
        held = pd.Series(reviewed, index=account.index) & stored.notna()
        account = account.where(~held, stored)
        details = details.where(~held, old_details.astype("string"))
    changed_details = [
        old is None or json.loads(old) != json.loads(new)
        for old, new in zip(old_details, details, strict=True)
    ] if old_details.notna().any() else [True] * len(leads)
    moved = (account.fillna(-1) != stored.fillna(-1)).to_numpy()
    # Evidence of a link that stays is kept: the account a run created matches by domain on the next run, and
    # rewriting "new_company" as "domain" would only churn the row.
    unlinked_or_blank = account.isna().to_numpy() | old_details.isna().to_numpy()
    write = moved | (np.asarray(changed_details, dtype=bool) & unlinked_or_blank)
    return LeadLinks(account=account, write=write, details=details)


# --- Determine Lead Priority ---------------------------------------------------------------------------------


def determine_priority(leads: pd.DataFrame, checks: pd.DataFrame, policy: QualificationPolicy) -> pd.DataFrame:
    """Each lead's priority, deciding rule and reason, and whether they or the checklist `changed`."""
    priority = qualification.determine_priority(leads, checks, policy)
    priority["changed"] = priority_changes(leads, checks, priority)
    return priority


def priority_changes(leads: pd.DataFrame, checks: pd.DataFrame, priority: pd.DataFrame) -> np.ndarray:
    """Which leads' checklist, priority or deciding rule changed (Assign Lead Owner writes them)."""
    new_text = checks["checklist"].astype("string")
    same_checklist = np.array([
        o is not None and not (isinstance(o, float) and np.isnan(o))
        and (json.loads(o) if isinstance(o, str) else o) == json.loads(n)
        for o, n in zip(leads["checklist"].tolist(), new_text.tolist(), strict=True)
    ], dtype=bool)
    same_priority = (leads["priority"].astype("string").fillna("") == priority["priority"].fillna("")).to_numpy() & (
        leads["priority_reason"].astype("string").fillna("") == priority["priority_reason"].fillna("")).to_numpy()
    return ~(same_checklist & same_priority)


def _lead_updates(leads: pd.DataFrame, links: LeadLinks, checks: pd.DataFrame, priority: pd.DataFrame,
                  owners: pd.Series, assigned: np.ndarray, now: datetime,
                  holds_capacity: bool = True) -> list[tuple[Any, pd.DataFrame]]:
    """The UPDATEs that store each changed lead's new account, match evidence, checklist and priority, and owner.

    One row per changed lead, grouped by which of these parts changed so that each statement sets only those
    columns: an unchanged account or owner costs no foreign key check and no index update. qualified_at moves
    with the priority, and a lead that has an owner keeps it (COALESCE: a concurrent run may have just set one).
    """
    from sqlalchemy import func

    stored = pd.to_numeric(leads["account_id"], errors="coerce").astype("Int64")
    parts = {
        "account": (links.account.fillna(-1) != stored.fillna(-1)).to_numpy(dtype=bool),
        "evidence": links.write,
        "priority": priority["changed"].to_numpy(dtype=bool),
        "owner": assigned,
    }
    values = {
        "account": {"account_id": bindparam("b_account_id")},
        "evidence": {"match_details": bindparam("b_match_details")},
        "priority": {"checklist": bindparam("b_checklist"), "priority": bindparam("b_priority"),
                     "priority_reason": bindparam("b_reason"), "qualified_at": bindparam("b_now")},
        # A live assignment holds one of the rep's open-lead slots until the lead closes (leadflow/crm/assignments.py).
        "owner": {"owner_id": func.coalesce(LEADS.c.owner_id, bindparam("b_owner")),
                  "holds_capacity": bindparam("b_holds")},
    }
    frame = pd.DataFrame({
        "b_id": leads["lead_id"].to_numpy(), "b_account_id": links.account.astype("Int64").to_numpy(),
        "b_match_details": links.details.to_numpy(), "b_checklist": checks["checklist"].to_numpy(),
        "b_priority": priority["priority"].to_numpy(), "b_reason": priority["priority_reason"].to_numpy(),
        "b_owner": owners.astype("Int64").to_numpy(), "b_now": now, "b_holds": holds_capacity,
    })
    pattern = sum(mask.astype(np.int64) << bit for bit, mask in enumerate(parts.values()))
    updates = []
    for code in sorted(set(np.unique(pattern).tolist()) - {0}):
        chosen = [name for bit, name in enumerate(parts) if code >> bit & 1]
        stmt = (update(LEADS).where(LEADS.c.id == bindparam("b_id"))
                .values(**{k: v for name in chosen for k, v in values[name].items()}, updated_at=bindparam("b_now")))
        updates.append((stmt, frame.loc[pattern == code]))
    return updates


# --- Assign Lead Owner ---------------------------------------------------------------------------------------


@dataclass
class AssignmentResult:
    """Every routing decision of a run, and which of them were new."""

    decisions: pd.DataFrame
    newly_assigned: pd.Series
    newly_queued: pd.Series


def assign_lead_owners(store: Store, leads: pd.DataFrame, links: LeadLinks, checks: pd.DataFrame,
                       priority: pd.DataFrame, policy: QualificationPolicy, *, replay: bool, now: datetime,
                       flow_run_id: str | None, match: pd.DataFrame | None = None) -> AssignmentResult:
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
        reps = load_reps(conn, lock=True)
        owners = dict(_select_in(conn, [LEADS.c.id, LEADS.c.owner_id], LEADS.c.id, ids, LEADS.c.owner_id.is_not(None),
                                 raw=True))
        acc_ids = [int(a) for a in accounts.dropna().unique()]
        acc_owner = dict(_select_in(conn, [ACCOUNTS.c.id, ACCOUNTS.c.owner_id], ACCOUNTS.c.id, acc_ids,
                                    ACCOUNTS.c.owner_id.is_not(None), raw=True))
        queued = {int(r[0]) for r in _select_in(conn, [TASKS.c.lead_id], TASKS.c.lead_id, ids,
                                                TASKS.c.kind == "qualification", TASKS.c.owner_id.is_(None),
                                                raw=True)}
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
        guard = (update(REPS).where(REPS.c.id == bindparam("b_id"),
                                    REPS.c.open_leads + bindparam("b_n") <= REPS.c.max_open_leads)
                 .values(open_leads=REPS.c.open_leads + bindparam("b_n")))
        for rep, n in sorted(result.reserved.items()):
            if conn.execute(guard, {"b_id": rep, "b_n": n}).rowcount != 1:
                raise CapacityConflict(f"rep {rep} has no room for {n} more leads")
        for rep, seq in sorted(result.rotation.items()):
            conn.execute(update(REPS).where(REPS.c.id == rep).values(last_assigned_seq=seq))
        if result.account_owners:
            owned = pd.DataFrame({"b_id": list(result.account_owners), "b_rep": list(result.account_owners.values()),
                                  "b_now": now})
            store.bulk(conn, update(ACCOUNTS).where(ACCOUNTS.c.id == bindparam("b_id"), ACCOUNTS.c.owner_id.is_(None))
                       .values(owner_id=bindparam("b_rep"), updated_at=bindparam("b_now")), owned)
        had_owner = frame["owner_id"].notna().to_numpy()
        assigned = decisions["owner_id"].notna().to_numpy() & ~had_owner
        newly_queued = decisions["assignment_rule"].eq(routing.FALLBACK).to_numpy(dtype=bool) & ~np.isin(
            decisions["lead_id"].to_numpy(), list(queued))
        for stmt, changes in _lead_updates(leads, links, checks, priority, decisions["owner_id"], assigned, now,
                                          holds_capacity=not replay):
            store.bulk(conn, stmt, changes)
        if assigned.any():
            rows = pd.DataFrame({"b_id": decisions["lead_id"][assigned].to_numpy(),
                                 "b_owner": decisions["owner_id"][assigned].to_numpy()})
            # A lead that waited in the fallback queue hands its open qualification task to the new owner.
            waited = rows.loc[rows["b_id"].isin(list(queued))]
            store.bulk(conn, update(TASKS).where(TASKS.c.lead_id == bindparam("b_id"), TASKS.c.owner_id.is_(None),
                                                 TASKS.c.status == bindparam("b_open"))
                       .values(owner_id=bindparam("b_owner")), waited.assign(b_open="open"))
        store.insert_events(conn, qualified_events(leads, accounts, priority, decisions, assigned | newly_queued,
                                                   policy, replay, now, flow_run_id, match, checks))
    return AssignmentResult(decisions=decisions, newly_assigned=pd.Series(assigned, index=leads.index),
                            newly_queued=pd.Series(newly_queued, index=leads.index))


def _plain(values: Any) -> list[Any]:
    """A column as a list of plain Python values, None where missing."""
    series = pd.Series(values)
    return series.astype(object).where(series.notna().to_numpy(), None).tolist()


class _Json:
    """json.dumps of scalars, each distinct value dumped once (the columns hold a few values, repeated)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[type, Any], str] = {}

    def __call__(self, value: Any) -> str:
        key = (type(value), value)  # 1, 1.0 and True are equal keys, but dump differently
        text = self._cache.get(key)
        if text is None:
            text = self._cache[key] = json.dumps(value)
        return text


def qualified_events(leads: pd.DataFrame, accounts: pd.Series, priority: pd.DataFrame, decisions: pd.DataFrame,
                     decided: np.ndarray, policy: QualificationPolicy, replay: bool, now: datetime,
                     flow_run_id: str | None, match: pd.DataFrame | None,
                     checks: pd.DataFrame | None) -> pd.DataFrame:
    """One `lead_qualified` event per lead this run changed: its new account link, priority and owner decision.

    One event with a section per step, not one per step, keeps the audit log (and the write) a third the size.
    The JSON text is assembled from values dumped once each: it is what json.dumps gives for the same dict.
    """
    stored_account = pd.to_numeric(leads["account_id"], errors="coerce").astype("Int64")
    linked = ((accounts.astype("Int64").fillna(-1) != stored_account.fillna(-1)) & accounts.notna()).to_numpy()
    reprioritized = (leads["priority"].astype("string").fillna("") != priority["priority"].fillna("")).to_numpy()
    changed = linked | reprioritized | decided
    if not changed.any():
        return pd.DataFrame()
    rows = np.flatnonzero(changed)

    def col(values: Any) -> list[Any]:
        return _plain(pd.Series(values).iloc[rows])

    none = [None] * len(rows)
    acc, old_priority = col(accounts.to_numpy(dtype=object)), col(leads["priority"].to_numpy(dtype=object))
    new_priority, rule = col(priority["priority"].to_numpy(dtype=object)), col(
        priority["priority_rule"].to_numpy(dtype=object))
    bands = col(match["match_band"].to_numpy(dtype=object)) if match is not None else none
    methods = col(match["match_method"].to_numpy(dtype=object)) if match is not None else none
    scores = col(match["match_score"].to_numpy(dtype=object)) if match is not None else none
    passes = col(checks["passes"].to_numpy(dtype=object)) if checks is not None else none
    met = col(checks["met"].to_numpy(dtype=object)) if checks is not None else none
    not_met = col(checks["not_met"].to_numpy(dtype=object)) if checks is not None else none
    a_rule, a_owner = col(decisions["assignment_rule"].to_numpy(dtype=object)), col(
        decisions["owner_id"].to_numpy(dtype=object))
    a_reason, a_segment = col(decisions["fallback_reason"].to_numpy(dtype=object)), col(
        decisions["segment"].to_numpy(dtype=object))
    all_candidates = decisions["candidates"].tolist()
    a_candidates = [all_candidates[i] for i in rows]
    flags_linked, flags_prio = linked[rows].tolist(), reprioritized[rows].tolist()
    flags_decided = decided[rows].tolist()
    queue = policy.routing.fallback_queue
    dump = _Json()
    lists: dict[tuple[int, ...], str] = {}

    def candidates_json(reps: list[int]) -> str:
        # Leads of one country and segment share their candidate list: each distinct list is written once.
        key = tuple(reps)
        text = lists.get(key)
        if text is None:
            text = lists[key] = "[" + ", ".join(str(int(r)) for r in key) + "]"
        return text

    head = '{"policy_version": ' + json.dumps(policy.version) + ', "historical": ' + json.dumps(replay)
    out = []
    for j in range(len(rows)):
        text = head
        if flags_linked[j]:
            text += (f', "account": {{"account_id": {int(acc[j])}, "band": {dump(bands[j])}, '
                     f'"method": {dump(methods[j])}, '
                     f'"score": {"null" if scores[j] is None else dump(float(scores[j]))}}}')
        if flags_prio[j]:
            text += (f', "priority": {{"priority": {dump(new_priority[j])}, "rule": {dump(rule[j])}, '
                     f'"from": {dump(old_priority[j])}')
            if checks is not None:
                text += (f', "checklist_passes": {dump(bool(passes[j]))}, "met": {int(met[j])}, '
                         f'"not_met": {int(not_met[j])}')
            text += "}"
        if flags_decided[j]:
            owner = "null" if a_owner[j] is None else str(int(a_owner[j]))
            text += (f', "assignment": {{"rule": {dump(a_rule[j])}, "owner_id": {owner}, '
                     f'"queue": {dump(queue if a_rule[j] == routing.FALLBACK else None)}, '
                     f'"reason": {dump(a_reason[j])}, '
                     f'"candidates": {candidates_json(a_candidates[j])}, '
                     f'"segment": {dump(a_segment[j])}}}')
        out.append(text + "}")
    return _events(leads["lead_id"].iloc[rows].tolist(), "lead_qualified", out, now, flow_run_id)


# --- tasks and messages ---------------------------------------------------------------------------------------


def task_rows(leads: pd.DataFrame, decisions: pd.DataFrame, priority: pd.DataFrame, checks: pd.DataFrame,
              accounts: pd.Series, match: pd.DataFrame, kind: str, due: pd.Series, policy: QualificationPolicy,
              replay: bool, now: datetime) -> pd.DataFrame:
    """crm_tasks rows of one kind with the context a rep needs (key <kind>:lead:<id>, one per lead ever)."""
    fallback = decisions["assignment_rule"].eq(routing.FALLBACK).to_numpy(dtype=bool).tolist()
    dump = _Json()
    queue, tail = dump(policy.routing.fallback_queue), (f', "historical": {json.dumps(replay)}, '
                                                        f'"policy_version": {json.dumps(policy.version)}}}')
    # The JSON text json.dumps gives for each row's dict, assembled from values dumped once each.
    details = [
        f'{{"priority": {dump(p)}, "priority_reason": {dump(reason)}, "checklist_passes": {dump(bool(ok))}, '
        f'"met": {int(m)}, "account_id": {"null" if acc is None else int(acc)}, "match_band": {dump(band)}, '
        f'"assignment_rule": {dump(rule)}, "queue": {queue if fb else "null"}{tail}'
        for p, reason, ok, m, acc, band, rule, fb in zip(
            _plain(priority["priority"]), _plain(priority["priority_reason"]), checks["passes"].tolist(),
            checks["met"].tolist(), _plain(accounts), _plain(match["match_band"]),
            _plain(decisions["assignment_rule"]), fallback, strict=True)
    ]
    frame = pd.DataFrame({
        "idempotency_key": [f"{kind}:lead:{i}" for i in leads["lead_id"]],
        "lead_id": leads["lead_id"].to_numpy(),
        "owner_id": decisions["owner_id"].astype("Int64").to_numpy(),
        "kind": kind,
        # Replayed history is recorded, not worked: such tasks are closed at once and carry no SLA.
        "status": "cancelled" if replay else "open",
        "due_at": pd.Series(pd.NaT, index=leads.index, dtype="datetime64[us, UTC]") if replay else due,
        "details": details,
        "created_at": now,
        "completed_at": now if replay else None,
    })
    return frame


def insert_tasks(store: Store, frame: pd.DataFrame) -> int:
    """Insert tasks; a key that exists already is left alone. Returns the number created."""
    return _insert_new(store, TASKS, frame)


def _insert_new(store: Store, table, frame: pd.DataFrame) -> int:
    """Insert rows keyed by idempotency_key in a transaction of their own; returns the rows actually added."""
    if frame.empty:
        return 0
    with store.begin() as conn:
        return store.insert_new(conn, table, frame)


def reps_frame(store: Store) -> pd.DataFrame:
    """All reps (for alerts and reports)."""
    with store.engine.connect() as conn:
        return load_reps(conn)


def qualification_messages(leads: pd.DataFrame, decisions: pd.DataFrame, priority: pd.DataFrame,
                           checks: pd.DataFrame, due: pd.Series, newly_assigned: pd.Series) -> pd.DataFrame:
    """The columns the rep alert template needs, for newly assigned leads."""
    frame = leads[["lead_id", "first_name", "last_name", "job_title", "company", "country"]].assign(
        owner_id=decisions["owner_id"], priority=priority["priority"], priority_reason=priority["priority_reason"],
        checklist=checks["checklist"], due_at=due)
    return frame.loc[newly_assigned.to_numpy(dtype=bool)]



# --- the whole sequence, without an orchestrator ---------------------------------------------------------------


@dataclass
class QualificationSummary:
    """What one qualification run did, for the summary artifact and the CLI."""

    leads: int = 0
    skipped_spam: int = 0
    replay: bool = False
    policy_version: str = ""
    by_priority: dict[str, int] = field(default_factory=dict)
    by_tier: dict[str, int] = field(default_factory=dict)
    checklist_passed: int = 0
    matches_by_band: dict[str, int] = field(default_factory=dict)
    accounts_created: int = 0
    leads_linked: int = 0
    priorities_changed: int = 0
    assignments_by_rep: dict[str, int] = field(default_factory=dict)
    assignments_by_rule: dict[str, int] = field(default_factory=dict)
    newly_assigned: int = 0
    newly_queued: int = 0
    tasks_created: dict[str, int] = field(default_factory=dict)
    messages_queued: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    delivery_failed: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)

    def add_time(self, step: str, seconds: float) -> None:
        """Add the time one step took (summed over batches)."""
        self.step_seconds[step] = round(self.step_seconds.get(step, 0.0) + seconds, 3)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        from dataclasses import asdict

        return asdict(self)

    def to_markdown(self) -> str:
        """The run at a glance, for the Prefect UI (counts only, no personal data)."""
        def table(title: str, counts: dict[str, int]) -> str:
            rows = "\n".join(f"| {k} | {v:,} |" for k, v in sorted(counts.items())) or "| none | 0 |"
            return f"| {title} | leads |\n|---|---:|\n{rows}\n"

        head = (f"# Lead qualification{' (replay: no messages)' if self.replay else ''}\n\n"
                f"Policy {self.policy_version}: {self.leads:,} leads qualified, {self.skipped_spam:,} spam skipped, "
                f"{self.checklist_passed:,} passed the checklist, {self.accounts_created:,} accounts created, "
                f"{self.newly_assigned:,} newly assigned, {self.newly_queued:,} put in the fallback queue, "
                f"{self.delivered:,} messages delivered, {self.delivery_failed:,} failed. ({self.seconds:.2f} s)\n\n")
        parts = [table("priority", self.by_priority), table("tier", self.by_tier),
                 table("match band", self.matches_by_band), table("assignment rule", self.assignments_by_rule),
                 table("rep", self.assignments_by_rep), table("task kind (created)", self.tasks_created),
                 table("message kind (queued)", self.messages_queued)]
        failures = "\n".join(f"- {f}" for f in self.failures) or "none"
        return head + "\n".join(parts) + f"\n## Failures\n\n{failures}\n"


def counts(values: pd.Series) -> dict[str, int]:
    """Value counts as a plain dict (NA counted as 'none')."""
    out: dict[str, int] = {}
    for key, n in values.value_counts(dropna=False).items():  # counted in the column's own dtype: no object copy
        name = "none" if pd.isna(key) else str(key)
        out[name] = out.get(name, 0) + int(n)
    return out


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


def create_qualification_tasks(store: Store, q: Qualified, policy: QualificationPolicy, replay: bool,
                               now: datetime) -> int:
    """Assign Qualification Task: one per lead, owned by its rep (or unowned in the fallback queue)."""
    frame = task_rows(q.leads, q.assignment.decisions, q.priority, q.checks, q.accounts, q.match, "qualification",
                      q.qualification_due, policy, replay, now)
    return insert_tasks(store, frame)


def create_discovery_call_tasks(store: Store, q: Qualified, policy: QualificationPolicy, replay: bool,
                                now: datetime) -> int:
    """Create Discovery Call Task for the leads of the configured priorities whose checklist passes."""
    wanted = (q.priority["priority"].isin(policy.messages.discovery_call_priorities).to_numpy(dtype=bool)
              & q.checks["passes"].to_numpy(dtype=bool))
    if not wanted.any():
        return 0
    frame = task_rows(q.leads.loc[wanted], q.assignment.decisions.loc[wanted], q.priority.loc[wanted],
                      q.checks.loc[wanted], q.accounts.loc[wanted], q.match.loc[wanted], "discovery_call",
                      q.discovery_due.loc[wanted], policy, replay, now)
    return insert_tasks(store, frame)


def send_auto_responses(store: Store, q: Qualified, policy: QualificationPolicy, now: datetime) -> int:
    """Queue the auto-response to new prospects (never to suppressed leads); returns the rows queued."""
    if not policy.messages.auto_response:
        return 0
    fresh = q.leads.loc[q.leads["status"].fillna("new").eq("new").to_numpy(dtype=bool)]
    return queue_messages(store, messages.auto_responses(fresh, now))


def alert_sales_reps(store: Store, q: Qualified, policy: QualificationPolicy, now: datetime) -> int:
    """Queue an alert to the rep of each newly assigned lead of the alerting priorities."""
    hot = q.priority["priority"].isin(policy.messages.rep_alert_priorities).to_numpy(dtype=bool)
    chosen = q.assignment.newly_assigned & pd.Series(hot, index=q.leads.index)
    frame = qualification_messages(q.leads, q.assignment.decisions, q.priority, q.checks, q.qualification_due,
                                   chosen)
    return queue_messages(store, messages.rep_alerts(frame, reps_frame(store), now))


def notify_sales_manager(store: Store, q: Qualified, policy: QualificationPolicy, manager_urls: str | None,
                         sales_inbox: str, now: datetime) -> int:
    """Queue notices about leads newly in the fallback queue and about open tasks newly past their SLA."""
    queued = q.assignment.newly_queued.to_numpy(dtype=bool)
    unassigned = pd.DataFrame({"lead_id": q.leads["lead_id"][queued], "priority": q.priority["priority"][queued],
                               "fallback_reason": q.assignment.decisions["fallback_reason"][queued]})
    notices = queue_messages(store, messages.unassigned_notice(
        unassigned, policy.routing.fallback_queue, policy.messages.sla_risk_priorities, manager_urls, sales_inbox, now))
    # The SLA watch of the delivery runs, here too: it stamps what it reports, so no breach is reported twice.
    return notices + sla.notify_sla_breaches(store, manager_urls, sales_inbox, now).notices


def decide(store: Store, leads: pd.DataFrame, policy: QualificationPolicy, *, replay: bool, timezone: str,
           now: datetime, flow_run_id: str | None, summary: QualificationSummary) -> Qualified:
    """The deciding steps in order, for callers without an orchestrator (bench, concurrency tests)."""
    checks = qualification.evaluate_checklist(leads, policy)
    match = matching.match_companies(leads, load_accounts(store), policy.matching)
    created = create_account_entries(store, leads, match)
    links = link_leads_to_accounts(leads, match, created.account_ids)
    priority = determine_priority(leads, checks, policy)
    assignment = assign_lead_owners(store, leads, links, checks, priority, policy, replay=replay, now=now,
                                    flow_run_id=flow_run_id, match=match)
    q = Qualified(leads, checks, match, links.account, priority, assignment,
                  qualification.due_times(priority["priority"], policy.sla.qualification_minutes, now, policy.sla,
                                          timezone),
                  qualification.due_times(priority["priority"], policy.sla.discovery_call_minutes, now, policy.sla,
                                          timezone))
    summary.accounts_created += created.created
    summary_of(q, summary)
    return q


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
        name = "none" if key == "none" else f"rep {key}"
        summary.assignments_by_rep[name] = summary.assignments_by_rep.get(name, 0) + n
    summary.checklist_passed += int(q.checks["passes"].sum())
    summary.priorities_changed += int(q.priority["changed"].sum()) if "changed" in q.priority else 0
    summary.leads_linked += int(q.accounts.notna().sum())
    summary.newly_assigned += int(q.assignment.newly_assigned.sum())
    summary.newly_queued += int(q.assignment.newly_queued.sum())


def add(target: dict[str, int], key: str, n: int) -> None:
    """Add n to a counter dict."""
    target[key] = target.get(key, 0) + n


def run_qualification(store: Store, lead_ids: Sequence[int], policy: QualificationPolicy, *, replay: bool = False,
                      timezone: str = "UTC", manager_urls: str | None = None, sales_inbox: str = "sales@localhost",
                      now: datetime, flow_run_id: str | None = None) -> QualificationSummary:
    """Every qualification step on a set of leads, in the flow's order, without Prefect (no delivery)."""
    import time

    started = time.perf_counter()
    summary = QualificationSummary(replay=replay, policy_version=policy.version)
    leads = load_leads(store, lead_ids)
    spam = leads["is_spam"].to_numpy(dtype=bool)
    summary.skipped_spam = int(spam.sum())
    leads = leads.loc[~spam].reset_index(drop=True)
    if leads.empty:
        return summary
    q = decide(store, leads, policy, replay=replay, timezone=timezone, now=now, flow_run_id=flow_run_id,
               summary=summary)
    add(summary.tasks_created, "qualification", create_qualification_tasks(store, q, policy, replay, now))
    add(summary.tasks_created, "discovery_call", create_discovery_call_tasks(store, q, policy, replay, now))
    if not replay:
        add(summary.messages_queued, "auto_response", send_auto_responses(store, q, policy, now))
        add(summary.messages_queued, "rep_alert", alert_sales_reps(store, q, policy, now))
        add(summary.messages_queued, "manager_notice",
            notify_sales_manager(store, q, policy, manager_urls, sales_inbox, now))
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary
