"""Calculate Lead Score: score a batch of leads under the versioned policy and log every re-score."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import numpy as np
import pandas as pd

from leadflow.config.policy import load_policy
from leadflow.config.settings import get_settings
from leadflow.crm import progress, submissions
from leadflow.crm.store import Store
from leadflow.domain.progress import LeadStep
from leadflow.domain.scoring import ScoringPolicy, score_leads

SCORE_INPUTS = ("email", "email_domain", "industry", "employee_count", "company_size", "country", "job_title",
                "demo_requested", "pricing_page_visits", "page_views", "content_downloads", "last_touch_at")
SCORE_COLUMNS = ("fit_score", "intent_score", "score", "tier", "seniority", "score_policy_version",
                 "score_explanation")


@dataclass
class PendingWrite:
    """Lead columns and step marks an earlier intake step left to Calculate Lead Score's write (Retrieve Lead
    Details'): written by the same statement as the scores, so each lead gets one new row version, not two.

    `changed`: the columns to set, by `id`; `since`: lead id -> the earliest step mark it may move on from.
    """

    changed: pd.DataFrame
    since: dict[int, int] = field(default_factory=dict)


@lru_cache(maxsize=4)
def scoring_policy(name_or_path: str | None = None) -> ScoringPolicy:
    """The scoring policy the settings name (validated once per process)."""
    return load_policy(ScoringPolicy, name_or_path or get_settings().scoring_policy)


def load_leads(store: Store, lead_ids: list[int], columns: Iterable[str]) -> pd.DataFrame:
    """These stored lead columns, with every message each lead sent (what scoring's keyword rules read)."""
    with store.begin() as conn:
        frame = store.leads_by_id(conn, lead_ids, sorted(set(columns)))
        messages = submissions.lead_messages(conn, lead_ids)
    frame["message"] = frame["id"].map(messages).astype("string")
    return frame


def load_leads_to_score(store: Store, lead_ids: list[int]) -> pd.DataFrame:
    """The stored fields scoring reads, with every message each lead sent."""
    return load_leads(store, lead_ids, [*SCORE_INPUTS, *SCORE_COLUMNS])


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
    mark: bool = False,
    pending: PendingWrite | None = None,
) -> ScoreResult:
    """Score the leads, store the changed scores, and log old and new values of every lead scored before.

    `guard` checks the new scores before anything is written (the flow passes the GX suite); `mark` marks the
    leads scored in the same transaction (leadflow/domain/progress.py: only those whose details are done).
    `pending`: details (of these leads) left to this write, stored and marked with the scores.
    """
    result = ScoreResult()
    if leads.empty:
        if pending is not None and not pending.changed.empty:
            raise ValueError("details left to the score's write need their leads to score")
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
    if policy.model is not None:
        # Hybrid: the rule score stays; a model the policy names (and that beat its rules) adds a probability.
        from leadflow.steps import scoring_models

        model = scoring_models.hybrid_model(policy)
        scoring_models.store_model_scores(store, scoring_models.model_scores(store, model, new["id"].tolist(),
                                                                               as_of, policy))
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
    if changed.empty and (pending is None or pending.changed.empty):
        if mark:
            with store.begin() as conn:
                progress.update_and_mark(store, conn, [], new["id"].tolist(), LeadStep.SCORED, as_of,
                                         since=pending.since if pending is not None else None)
        elif pending is not None:
            raise ValueError("details left to the score's write are marked with it: `mark` is needed")
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
        if pending is not None:
            if not mark:
                raise ValueError("details left to the score's write are marked with it: `mark` is needed")
            progress.update_and_mark(store, conn, _one_write_per_lead(pending.changed, changed), new["id"].tolist(),
                                     LeadStep.SCORED, as_of, since=pending.since)
        elif mark:
            progress.update_and_mark(store, conn, changed, new["id"].tolist(), LeadStep.SCORED, as_of)
        else:
            store.update_leads(conn, changed)
        store.insert_events(conn, events)
    return result


def _one_write_per_lead(details: pd.DataFrame, scores: pd.DataFrame) -> list[pd.DataFrame]:
    """The details' and the scores' changed columns as frames that write each lead once: leads with both changed
    in one frame of both column sets, the others in a frame of their own part's columns."""
    if details.empty or scores.empty:
        return [details, scores]
    if (set(details.columns) & set(scores.columns)) != {"id"}:
        raise ValueError("details and scores set the same lead column")
    both = details.merge(scores, on="id", how="inner")
    shared = set(both["id"].tolist())
    return [both, details.loc[~details["id"].isin(shared)], scores.loc[~scores["id"].isin(shared)]]


def _num(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _txt(value: object) -> str | None:
    return None if value is None or pd.isna(value) else str(value)
