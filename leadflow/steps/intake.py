"""Lead steps that touch the CRM: quarantine, create lead entries, update sources, retrieve details, score."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from leadflow.crm.store import Store
from leadflow.domain.scoring import ScoringPolicy, score_leads
from leadflow.domain.submissions import (
    PAYLOAD_COLUMN,
    SOURCE_COLUMN,
    aggregate_leads,
    aggregate_touches,
    attribution_changes,
    in_set,
    split_duplicate_keys,
)
from leadflow.io import enrichment as en
from leadflow.io.sources import ROW_COLUMN


@dataclass
class QuarantineResult:
    """Rows a batch rejected: how many, how many were new to the quarantine table, and why."""

    rows: int = 0
    new_records: int = 0
    by_reason: Counter = field(default_factory=Counter)


@dataclass
class LeadWriteResult:
    """What creating lead entries did to the CRM for one batch."""

    submissions_new: int = 0
    submissions_duplicate: int = 0
    leads_created: int = 0
    leads_updated: int = 0
    lead_ids: list[int] = field(default_factory=list)
    # Leads this batch created from fresh submissions only: their stored touches are already the batch's own.
    settled_emails: set[str] = field(default_factory=set)


def quarantine_rows(
    store: Store,
    prepared: pd.DataFrame,
    row_reasons: dict[int, list[str]],
    *,
    batch_id: str,
    origin: str,
    flow_run_id: str | None,
    now: datetime,
) -> QuarantineResult:
    """Keep every rejected row with its raw payload and reason codes (idempotent by content)."""
    result = QuarantineResult()
    if not row_reasons:
        return result
    rejected = prepared.loc[prepared[ROW_COLUMN].isin(row_reasons.keys())]
    reasons = rejected[ROW_COLUMN].map(lambda row: ",".join(sorted(row_reasons[row])))
    keys = [
        hashlib.sha256(f"{payload}|{reason}".encode()).hexdigest()
        for payload, reason in zip(rejected[PAYLOAD_COLUMN], reasons, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "idempotency_key": keys,
            "batch_id": batch_id,
            "origin": origin[:1000],
            "row_number": rejected[ROW_COLUMN].to_numpy(),
            "source": rejected[SOURCE_COLUMN].to_numpy(),
            "reason_codes": reasons.to_numpy(),
            "raw_payload": rejected[PAYLOAD_COLUMN].to_numpy(),
            "created_at": now,
            "flow_run_id": flow_run_id,
        }
    ).drop_duplicates("idempotency_key")
    with store.begin() as conn:
        result.new_records = store.insert_quarantine(conn, frame)
    result.rows = len(rejected)
    for codes in row_reasons.values():
        result.by_reason.update(codes)
    return result


def create_lead_entries(
    store: Store, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None, now: datetime
) -> LeadWriteResult:
    """Upsert one lead per email and store each new submission, in one transaction."""
    result = LeadWriteResult()
    if subs.empty:
        return result
    unique, repeats = split_duplicate_keys(subs)
    with store.begin() as conn:
        known = store.known_submission_keys(conn, unique["idempotency_key"].tolist())
        fresh = unique.loc[~in_set(unique["idempotency_key"], known)]
        result.submissions_duplicate = len(repeats) + len(unique) - len(fresh)
        if fresh.empty:
            return result
        existing = store.lead_ids(conn, fresh["email"].unique().tolist())
        leads = aggregate_leads(fresh)
        store.upsert_leads(conn, leads, now)
        # An upsert keeps the id of a lead it updates, so only the leads it created need looking up.
        new_ids, inserted = store.leads_created_at(conn, [e for e in leads["email"].tolist() if e not in existing], now)
        ids = {**existing, **new_ids}
        fresh = fresh.assign(lead_id=fresh["email"].map(ids))
        store.insert_submissions(conn, fresh, batch_id, now)
        # Not "absent when we looked": a run at the same time may have created the lead in between.
        created = in_set(leads["email"], inserted)
        # A batch has only a handful of distinct (count, source, new) triples: encode each once.
        sources = leads["first_touch_source"].to_numpy(dtype=object, na_value=None).tolist()
        triples = list(zip(leads["submissions"].tolist(), sources, created.tolist(), strict=True))
        encoded = {
            (n, source, new): json.dumps({"new_submissions": int(n), "source": source} if new
                                         else {"new_submissions": int(n)})
            for n, source, new in set(triples)
        }
        details = [encoded[triple] for triple in triples]
        events = pd.DataFrame({
            "lead_id": leads["email"].map(ids).to_numpy(),
            "event_type": np.where(created, "lead_created", "lead_updated"),
            "occurred_at": now,
            "batch_id": batch_id,
            "flow_run_id": flow_run_id,
            "details": details,
        })
        store.insert_events(conn, events)
    result.submissions_new = len(fresh)
    result.leads_created = int(created.sum())
    result.leads_updated = len(leads) - result.leads_created
    result.lead_ids = [ids[email] for email in leads["email"].tolist()]
    # A repeated or already stored row can still move a touch: only leads made of fresh rows alone are settled.
    stale = set(subs.loc[~subs.index.isin(fresh.index), "email"].tolist())
    result.settled_emails = {email for email in inserted if email not in stale}
    return result


def update_lead_sources(
    store: Store, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None, now: datetime,
    settled: Collection[str] = frozenset(),
) -> int:
    """Keep first-touch attribution at the earliest touch and move last-touch to the latest; returns leads moved.

    `settled` leads (created by this batch from these rows alone, see LeadWriteResult) cannot move and are skipped:
    in a first import that is every lead, and reading their touches back was a third of this step.
    """
    if settled:
        subs = subs.loc[~in_set(subs["email"], settled)]
    if subs.empty:
        return 0
    touches = aggregate_touches(subs)
    with store.begin() as conn:
        current = store.lead_touches(conn, touches["email"].tolist())
        changes = attribution_changes(touches, current)
        if changes.empty:
            return 0
        store.move_touches(conn, changes, now)
        parts = []
        for which in ("first", "last"):
            moved = changes.loc[changes[f"{which}_touch_changed"]]
            details = [
                json.dumps({"touch": which, "from": old, "to": new, "at": at.isoformat()})
                for old, new, at in zip(moved[f"{which}_touch_source_current"], moved[f"{which}_touch_source"],
                                        moved[f"{which}_touch_at"], strict=True)
            ]
            parts.append(pd.DataFrame({"lead_id": moved["id"].to_numpy(), "details": details}))
        events = pd.concat(parts, ignore_index=True).assign(
            event_type="lead_source_updated", occurred_at=now, batch_id=batch_id, flow_run_id=flow_run_id
        )
        store.insert_events(conn, events)
    return len(changes)


# --- Retrieve Lead Details -------------------------------------------------------------------------------------

DETAIL_COLUMNS = ("email", "email_domain", "company", "company_domain", "enrichment_status", "enrichment_sources",
                  "enriched_at", *en.FILLS.values())
SCORE_INPUTS = ("email", "email_domain", "industry", "employee_count", "company_size", "country", "job_title",
                "demo_requested", "pricing_page_visits", "page_views", "content_downloads", "last_touch_at")
SCORE_COLUMNS = ("fit_score", "intent_score", "score", "tier", "seniority", "score_policy_version",
                 "score_explanation")


@dataclass
class DetailsPlan:
    """The leads of a batch with their current details, and the domains a provider still has to answer."""

    leads: pd.DataFrame
    domains: list[str]


@dataclass
class DetailsResult:
    """What Retrieve Lead Details did: leads (re)considered by enrichment status, and fields filled."""

    by_status: Counter = field(default_factory=Counter)
    fields_filled: Counter = field(default_factory=Counter)


def load_leads(store: Store, lead_ids: list[int], columns: Iterable[str]) -> pd.DataFrame:
    """These stored lead columns, with every message each lead sent (what scoring's keyword rules read)."""
    with store.begin() as conn:
        frame = store.leads_by_id(conn, lead_ids, sorted(set(columns)))
        messages = store.lead_messages(conn, lead_ids)
    frame["message"] = frame["id"].map(messages).astype("string")
    return frame


def plan_lead_details(store: Store, lead_ids: list[int], results: en.DomainResults) -> DetailsPlan:
    """Load the leads' details and list the domains to look up (not yet answered in this run)."""
    frame = load_leads(store, lead_ids, [*DETAIL_COLUMNS, *SCORE_INPUTS, *SCORE_COLUMNS])
    domains = en.lookup_domains(frame)
    todo = en.needs_lookup(frame, domains)
    known = results.known()
    wanted = sorted({d for d in domains[todo].dropna().tolist() if d not in known})
    return DetailsPlan(leads=frame, domains=wanted)


def write_lead_details(
    store: Store, plan: DetailsPlan, results: en.DomainResults, provider: str | None, now: datetime
) -> tuple[DetailsResult, pd.DataFrame]:
    """Fill empty fields from the lookups, record status and sources; returns counts and the leads as now stored."""
    changed = en.apply_details(plan.leads, results, provider, now)
    outcome = DetailsResult(by_status=Counter(changed["enrichment_status"].dropna().tolist()))
    if changed.empty:
        return outcome, plan.leads
    before = plan.leads.set_index("id").loc[changed["id"]]
    for column in [*en.FILLS.values(), "company"]:
        filled = before[column].isna().to_numpy() & changed[column].notna().to_numpy()
        if filled.any():
            outcome.fields_filled[column] = int(filled.sum())
    with store.begin() as conn:
        store.update_leads(conn, changed)
    return outcome, en.merge_details(plan.leads, changed)


# --- Calculate Lead Score --------------------------------------------------------------------------------------


@dataclass
class ScoreResult:
    """What Calculate Lead Score did: leads scored, leads whose score or tier changed, and the distributions."""

    scored: int = 0
    changed: int = 0
    by_tier: Counter = field(default_factory=Counter)
    by_band: Counter = field(default_factory=Counter)

    def add(self, other: ScoreResult) -> None:
        """Fold another batch's counts in."""
        self.scored += other.scored
        self.changed += other.changed
        self.by_tier.update(other.by_tier)
        self.by_band.update(other.by_band)


SCORE_BANDS = ("0-19", "20-39", "40-59", "60-79", "80+")


def score_band(scores: pd.Series) -> pd.Series:
    """Scores grouped into bands of 20 points for the distribution (the last band is open)."""
    edges = [0, 20, 40, 60, 80, np.inf]
    return pd.cut(scores.astype(float), bins=edges, right=False, labels=list(SCORE_BANDS)).astype("string")


def calculate_lead_scores(
    store: Store,
    leads: pd.DataFrame,
    policy: ScoringPolicy,
    *,
    as_of: datetime,
    batch_id: str | None,
    flow_run_id: str | None,
    event_type: str = "lead_rescored",
    guard: Callable[[pd.DataFrame, ScoringPolicy], None] | None = None,
) -> ScoreResult:
    """Score the leads, store the changed scores, and log old and new values of every lead scored before.

    `guard` checks the new scores before anything is written (the flow passes the GX suite).
    """
    result = ScoreResult()
    if leads.empty:
        return result
    scored = score_leads(leads, policy, pd.Timestamp(as_of))
    new = pd.DataFrame({
        "id": leads["id"].to_numpy(),
        "fit_score": scored["fit_score"].to_numpy(),
        "intent_score": scored["intent_score"].to_numpy(),
        "score": scored["score"].to_numpy(),
        "tier": scored["tier"].array,
        "seniority": scored["seniority"].array,
        "score_policy_version": scored["policy_version"].array,
        "score_explanation": scored["explanation"].array,
    })
    if guard is not None:
        guard(new, policy)
    old = leads.loc[:, ["id", *SCORE_COLUMNS]].reset_index(drop=True)
    same = np.ones(len(new), dtype=bool)
    for column in SCORE_COLUMNS:
        a, b = old[column].astype(object), new[column].astype(object)
        same &= ((a == b) | (a.isna() & b.isna())).to_numpy(dtype=bool)
    changed = new.loc[~same].assign(scored_at=pd.Timestamp(as_of))
    result.scored = len(new)
    result.changed = len(changed)
    result.by_tier = Counter(new["tier"].dropna().tolist())
    result.by_band = Counter(score_band(new["score"]).dropna().tolist())
    if changed.empty:
        return result
    # First scores are part of lead_created; only a score that replaces another one is an event worth keeping.
    before = old.loc[~same]
    rescored = before["score"].notna().to_numpy()
    events = pd.DataFrame({
        "lead_id": changed["id"].to_numpy()[rescored],
        "event_type": event_type,
        "occurred_at": pd.Timestamp(as_of),
        "batch_id": batch_id,
        "flow_run_id": flow_run_id,
        "details": [
            json.dumps({
                "old": {"score": _num(o.score), "tier": _txt(o.tier), "policy_version": _txt(o.score_policy_version)},
                "new": {"score": _num(n.score), "tier": _txt(n.tier), "policy_version": _txt(n.score_policy_version)},
            })
            for o, n in zip(before.loc[rescored].itertuples(), changed.loc[rescored].itertuples(), strict=True)
        ],
    })
    with store.begin() as conn:
        store.update_leads(conn, changed)
        store.insert_events(conn, events)
    return result


def _num(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)



def _txt(value: object) -> str | None:
    return None if value is None or pd.isna(value) else str(value)
