"""Qualification Checklist and Determine Lead Priority: pure, vectorized BANT checks, P1..P4 and SLA due times."""

from __future__ import annotations

import json
import re
from datetime import datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.config.policy import VersionedPolicy, load_policy
from leadflow.domain.scoring import SENIORITY_LEVELS, SIZE_BANDS, TIERS, employee_band, parse_seniority

Priority = Literal["P1", "P2", "P3", "P4"]
PRIORITIES: tuple[str, ...] = ("P1", "P2", "P3", "P4")
ITEMS: tuple[str, ...] = ("budget", "authority", "need", "timeline")
MET, NOT_MET, UNKNOWN = "met", "not_met", "unknown"
_TEXT = pd.StringDtype("pyarrow")
Keyword = Annotated[str, Field(min_length=2, max_length=40, pattern=r"^[a-z0-9 ]+$")]


class _Rules(BaseModel):
    """Strict, immutable building block of the qualification policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ChecklistRules(_Rules):
    """How each BANT item is judged from what intake, enrichment and scoring know about a lead."""

    budget_met_bands: list[str] = Field(description="Employee bands that suggest a budget.")
    budget_not_met_bands: list[str] = Field(description="Employee bands too small for a budget.")
    budget_met_revenue_bands: list[str] = Field(default_factory=list, description="Revenue bands with a budget.")
    budget_keywords: list[Keyword] = Field(default_factory=list, description="Message words that state a budget.")
    authority_met_levels: list[str] = Field(description="Seniority levels that can decide.")
    authority_not_met_levels: list[str] = Field(description="Seniority levels that cannot decide.")
    need_keywords: list[Keyword] = Field(description="Message words that state a need.")
    need_min_pricing_visits: int = Field(ge=1, description="Pricing page visits that count as a need.")
    need_min_intent_score: float = Field(ge=0, description="Intent score that counts as a need.")
    timeline_met_keywords: list[Keyword] = Field(description="Message words of a near-term timeline.")
    timeline_not_met_keywords: list[Keyword] = Field(description="Message words of no near-term timeline.")
    pass_min_met: int = Field(ge=0, le=4, description="Items met for the checklist to pass.")
    pass_max_not_met: int = Field(ge=0, le=4, description="Items not met that still let it pass.")

    @field_validator("budget_met_bands", "budget_not_met_bands")
    @classmethod
    def _known_bands(cls, bands: list[str]) -> list[str]:
        unknown = sorted(set(bands) - set(SIZE_BANDS))
        if unknown:
            raise ValueError(f"unknown employee bands {unknown}")
        return bands

    @field_validator("authority_met_levels", "authority_not_met_levels")
    @classmethod
    def _known_levels(cls, levels: list[str]) -> list[str]:
        unknown = sorted(set(levels) - set(SENIORITY_LEVELS))
        if unknown:
            raise ValueError(f"unknown seniority levels {unknown}")
        return levels


class PriorityRule(_Rules):
    """One priority rule: every condition it names must hold; the first rule that matches decides."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", max_length=40, description="Recorded as the deciding rule.")
    priority: Priority
    description: str = Field(max_length=120, description="Why, in words, for the rep.")
    tiers: list[str] | None = Field(default=None, description="Scoring tiers that match.")
    min_score: float | None = Field(default=None, ge=0, description="Lowest total score that matches.")
    checklist_passes: bool | None = Field(default=None, description="Whether the checklist must (not) pass.")
    min_met: int | None = Field(default=None, ge=0, le=4, description="Fewest checklist items met.")
    demo_requested: bool | None = Field(default=None, description="Whether a demo must have been requested.")

    @field_validator("tiers")
    @classmethod
    def _known_tiers(cls, tiers: list[str] | None) -> list[str] | None:
        if tiers is not None and set(tiers) - set(TIERS):
            raise ValueError(f"unknown tiers {sorted(set(tiers) - set(TIERS))}")
        return tiers

    def is_catch_all(self) -> bool:
        """Whether the rule matches every lead (the last rule must)."""
        return all(getattr(self, f) is None for f in ("tiers", "min_score", "checklist_passes", "min_met",
                                                       "demo_requested"))


class SlaRules(_Rules):
    """Due times of rep tasks, counted in business minutes in settings.timezone."""

    qualification_minutes: dict[Priority, int] = Field(description="Qualification task SLA by priority.")
    discovery_call_minutes: dict[Priority, int] = Field(description="Discovery call SLA by priority.")
    business_start: time = Field(description="Start of the business day (local time).")
    business_end: time = Field(description="End of the business day (local time).")
    business_days: list[int] = Field(min_length=1, description="Weekdays worked, Monday = 0.")

    @model_validator(mode="after")
    def _sane_hours(self) -> SlaRules:
        if self.business_end <= self.business_start:
            raise ValueError("business_end must be after business_start")
        if set(PRIORITIES) - set(self.qualification_minutes):
            raise ValueError("qualification_minutes needs every priority P1..P4")
        if any(d < 0 or d > 6 for d in self.business_days):
            raise ValueError("business_days are 0 (Monday) to 6 (Sunday)")
        return self


class MatchBands(_Rules):
    """Fuzzy company-name match bands (rapidfuzz scores 0..100) and candidate blocking."""

    auto_link_min: float = Field(gt=0, le=100, description="Score at which a lead links to the account.")
    needs_review_min: float = Field(gt=0, le=100, description="Score at which a human should look.")
    block_prefix: int = Field(ge=1, le=10, description="Name keys are compared only within this prefix length.")
    ignored_names: list[str] = Field(default_factory=list,
                                     description="Cleaned names that name no company ('freelance', 'n a').")

    @model_validator(mode="after")
    def _ordered(self) -> MatchBands:
        if self.needs_review_min > self.auto_link_min:
            raise ValueError("needs_review_min must not be above auto_link_min")
        return self


class RoutingRules(_Rules):
    """Owner assignment: company size segments and the queue for leads no rep can take."""

    segment_by_band: dict[str, str] = Field(description="Employee band -> segment name of sales_reps.segments.")
    fallback_queue: str = Field(min_length=1, max_length=64, description="Queue of leads without an eligible rep.")


class MessageRules(_Rules):
    """Which messages qualification queues."""

    auto_response: bool = Field(description="Answer each new prospect once.")
    rep_alert_priorities: list[Priority] = Field(description="Priorities that alert the assigned rep.")
    discovery_call_priorities: list[Priority] = Field(description="Priorities that get a discovery call task.")
    sla_risk_priorities: list[Priority] = Field(description="Priorities whose unassigned leads are an SLA risk.")
    fresh_hours: float = Field(default=24, gt=0, le=24 * 366,
                               description="Auto-responses and rep alerts go only to leads whose latest submission "
                                           "is this recent; older ones are recorded as history.")


class QualificationPolicy(VersionedPolicy):
    """How leads are qualified, prioritized, matched to accounts, routed and answered."""

    checklist: ChecklistRules
    priority_rules: list[PriorityRule] = Field(min_length=1)
    sla: SlaRules
    matching: MatchBands
    routing: RoutingRules
    messages: MessageRules

    @model_validator(mode="after")
    def _last_rule_catches_all(self) -> QualificationPolicy:
        if not self.priority_rules[-1].is_catch_all():
            raise ValueError("the last priority rule must have no conditions (the default)")
        names = [r.name for r in self.priority_rules]
        if len(set(names)) != len(names):
            raise ValueError("priority rule names must be distinct")
        return self


def load_qualification_policy(name_or_path: str = "qualification") -> QualificationPolicy:
    """The qualification policy from leadflow/config/policies (or a path)."""
    return load_policy(QualificationPolicy, name_or_path)


# --- helpers -------------------------------------------------------------------------------------------------


def _column(leads: pd.DataFrame, name: str, dtype: str | None = None) -> pd.Series:
    values = leads[name] if name in leads.columns else pd.Series(pd.NA, index=leads.index, dtype="object")
    return values.astype(dtype) if dtype else values


def _numbers(leads: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(_column(leads, name), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _found(messages: pd.Series, keywords: list[str]) -> pd.Series:
    """The first keyword (whole words) found in each message, NA where none is."""
    if not keywords:
        return pd.Series(pd.NA, index=messages.index, dtype=_TEXT)
    words = sorted(keywords, key=len, reverse=True)
    pattern = "(?:^|[^a-z0-9])(" + "|".join(re.escape(w) for w in words) + ")(?:[^a-z0-9]|$)"
    return messages.str.extract(pattern, expand=False).astype(_TEXT)


def company_band(leads: pd.DataFrame) -> pd.Series:
    """Employee band of each lead: the enriched employee count if known, else the size as typed."""
    counts = pd.to_numeric(_column(leads, "employee_count"), errors="coerce")
    by_count = employee_band(counts.astype("float64"))
    by_size = employee_band(_column(leads, "company_size", "string"))
    return by_count.where(counts.notna().to_numpy(), by_size).astype(_TEXT)


def seniority_of(leads: pd.DataFrame) -> pd.Series:
    """Seniority as scoring stored it, else parsed from the job title."""
    stored = _column(leads, "seniority", _TEXT)
    missing = stored.isna().to_numpy()
    if missing.any():
        parsed = parse_seniority(_column(leads, "job_title", "string").loc[missing]).astype(_TEXT)
        stored = stored.copy()
        stored.loc[missing] = parsed.to_numpy()
    return stored


# --- Qualification Checklist ---------------------------------------------------------------------------------


def evaluate_checklist(leads: pd.DataFrame, policy: QualificationPolicy) -> pd.DataFrame:
    """Each lead's BANT checklist: every item met, not met or unknown with why, the counts, and whether it passes.

    Reads employee_count/company_size, revenue_band, seniority/job_title, message, demo_requested,
    pricing_page_visits, page_views and intent_score (any may be missing). Returns <item>, <item>_why, met,
    not_met, passes and `checklist` (the JSON text stored on the lead).
    """
    rules = policy.checklist
    index = leads.index
    message = _column(leads, "message", _TEXT).str.lower()
    band = company_band(leads)
    revenue = _column(leads, "revenue_band", _TEXT)
    out = pd.DataFrame(index=index)

    budget_word = _found(message, rules.budget_keywords)
    rich = revenue.isin(rules.budget_met_revenue_bands).to_numpy(dtype=bool, na_value=False)
    big = band.isin(rules.budget_met_bands).to_numpy(dtype=bool, na_value=False)
    small = band.isin(rules.budget_not_met_bands).to_numpy(dtype=bool, na_value=False)
    said = budget_word.notna().to_numpy()
    out["budget"] = np.select([said, rich, big, small], [MET, MET, MET, NOT_MET], UNKNOWN)
    out["budget_why"] = np.select(
        [said, rich, big, small, band.eq("unknown").to_numpy(dtype=bool, na_value=True)],
        ["message mentions " + budget_word.fillna(""), "revenue " + revenue.fillna(""),
         band.fillna("") + " employees", "only " + band.fillna("") + " employees", "company size unknown"],
        band.fillna("") + " employees: not decisive",
    )

    level = seniority_of(leads)
    decides = level.isin(rules.authority_met_levels).to_numpy(dtype=bool, na_value=False)
    cannot = level.isin(rules.authority_not_met_levels).to_numpy(dtype=bool, na_value=False)
    unknown_level = level.isna().to_numpy() | level.eq("unknown").to_numpy(dtype=bool, na_value=True)
    out["authority"] = np.select([decides, cannot], [MET, NOT_MET], UNKNOWN)
    out["authority_why"] = np.select(
        [unknown_level], ["job title unknown or unclear"], "seniority: " + level.fillna("")
    )

    demo = _column(leads, "demo_requested").astype("boolean").to_numpy(dtype=bool, na_value=False)
    pricing = _numbers(leads, "pricing_page_visits")
    intent = _numbers(leads, "intent_score")
    views = _numbers(leads, "page_views")
    need_word = _found(message, rules.need_keywords)
    many_pricing = np.nan_to_num(pricing, nan=0) >= rules.need_min_pricing_visits
    high_intent = np.nan_to_num(intent, nan=-1) >= rules.need_min_intent_score
    worded = need_word.notna().to_numpy()
    signals = (message.notna().to_numpy() | ~np.isnan(pricing) | ~np.isnan(intent) | ~np.isnan(views)
               | _column(leads, "demo_requested").notna().to_numpy())
    out["need"] = np.select([demo, many_pricing, worded, high_intent, signals], [MET, MET, MET, MET, NOT_MET],
                            UNKNOWN)
    pricing_text = pd.Series(np.nan_to_num(pricing, nan=0).astype(np.int64), index=index).astype(str)
    intent_text = pd.Series(np.round(np.nan_to_num(intent, nan=0), 1), index=index).astype(str)
    out["need_why"] = np.select(
        [demo, many_pricing, worded, high_intent, signals],
        ["demo requested", pricing_text + " pricing page visits", "message mentions " + need_word.fillna(""),
         "intent score " + intent_text, "no stated need or buying signal"],
        "no message or intent signals",
    )

    soon = _found(message, rules.timeline_met_keywords)
    later = _found(message, rules.timeline_not_met_keywords)
    is_soon, is_later = soon.notna().to_numpy(), later.notna().to_numpy()
    out["timeline"] = np.select([is_soon, is_later], [MET, NOT_MET], UNKNOWN)
    out["timeline_why"] = np.select(
        [is_soon, is_later, message.notna().to_numpy()],
        ["message says " + soon.fillna(""), "message says " + later.fillna(""), "message states no timeline"],
        "no message",
    )

    statuses = out[list(ITEMS)].to_numpy()
    out["met"] = (statuses == MET).sum(axis=1)
    out["not_met"] = (statuses == NOT_MET).sum(axis=1)
    out["passes"] = (out["met"] >= rules.pass_min_met) & (out["not_met"] <= rules.pass_max_not_met)
    for name in [*ITEMS, *(f"{i}_why" for i in ITEMS)]:
        out[name] = out[name].astype(_TEXT)
    out["checklist"] = checklist_json(out, policy.version)
    return out


def checklist_json(checks: pd.DataFrame, version: str) -> pd.Series:
    """The checklist as JSON text, built column-wise (every text comes from the policy's own vocabulary)."""
    text = pd.Series('{"version": "' + version.replace('"', "") + '", "passes": ', index=checks.index, dtype=_TEXT)
    text = text + np.where(checks["passes"].to_numpy(), "true", "false") + ', "met": ' + checks["met"].astype(str)
    text = text + ', "not_met": ' + checks["not_met"].astype(str)
    for item in ITEMS:
        why = checks[f"{item}_why"].str.replace("\\", "", regex=False).str.replace('"', "", regex=False)
        text = text + f', "{item}": {{"status": "' + checks[item] + '", "why": "' + why + '"}'
    return (text + "}").astype(_TEXT)


# --- Determine Lead Priority ---------------------------------------------------------------------------------


def determine_priority(leads: pd.DataFrame, checks: pd.DataFrame, policy: QualificationPolicy) -> pd.DataFrame:
    """P1..P4 for each lead from tier, score and checklist: the first matching rule decides, and is recorded."""
    tier = _column(leads, "tier", _TEXT)
    score = _numbers(leads, "score")
    demo = _column(leads, "demo_requested").astype("boolean").to_numpy(dtype=bool, na_value=False)
    passes = checks["passes"].to_numpy(dtype=bool)
    met = checks["met"].to_numpy()
    masks = []
    for rule in policy.priority_rules:
        mask = np.ones(len(leads), dtype=bool)
        if rule.tiers is not None:
            mask &= tier.isin(rule.tiers).to_numpy(dtype=bool, na_value=False)
        if rule.min_score is not None:
            mask &= np.nan_to_num(score, nan=-np.inf) >= rule.min_score
        if rule.checklist_passes is not None:
            mask &= passes == rule.checklist_passes
        if rule.min_met is not None:
            mask &= met >= rule.min_met
        if rule.demo_requested is not None:
            mask &= demo == rule.demo_requested
        masks.append(mask)
    chosen = np.select(masks, np.arange(len(masks)), len(masks) - 1)
    names = np.array([r.name for r in policy.priority_rules], dtype=object)
    priorities = np.array([r.priority for r in policy.priority_rules], dtype=object)
    reasons = np.array([f"{r.name}: {r.description}"[:200] for r in policy.priority_rules], dtype=object)
    return pd.DataFrame(
        {"priority": pd.array(priorities[chosen], dtype=_TEXT), "priority_rule": pd.array(names[chosen], dtype=_TEXT),
         "priority_reason": pd.array(reasons[chosen], dtype=_TEXT)},
        index=leads.index,
    )


# --- SLA ---------------------------------------------------------------------------------------------------


def add_business_minutes(start: datetime, minutes: int, sla: SlaRules, timezone: str) -> datetime:
    """The moment `minutes` business minutes after `start` (business hours and days in `timezone`), in UTC."""
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    left = timedelta(minutes=minutes)
    for _ in range(3660):  # at most ten years of days: a guard, never reached by a valid policy
        day_open = datetime.combine(local.date(), sla.business_start, tzinfo=zone)
        day_close = datetime.combine(local.date(), sla.business_end, tzinfo=zone)
        if local.weekday() in sla.business_days and local < day_close:
            begin = max(local, day_open)
            available = day_close - begin
            if left <= available:
                return (begin + left).astimezone(ZoneInfo("UTC"))
            left -= available
        local = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)
    raise ValueError("SLA does not fit into ten years of business days")


def due_times(priorities: pd.Series, minutes: dict[str, int], now: datetime, sla: SlaRules,
              timezone: str) -> pd.Series:
    """SLA due time of each lead's task from its priority (NaT where the priority has no SLA)."""
    table = {p: pd.Timestamp(add_business_minutes(now, m, sla, timezone)) for p, m in minutes.items()}
    return pd.to_datetime(priorities.map(table), utc=True)


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
