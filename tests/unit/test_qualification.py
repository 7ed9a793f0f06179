"""Qualification Checklist, Determine Lead Priority and SLA due times: tables of small cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from leadflow.config.policy import POLICY_DIR, PolicyError, load_policy
from leadflow.domain.qualification import (
    QualificationPolicy,
    add_business_minutes,
    determine_priority,
    due_times,
    evaluate_checklist,
    load_qualification_policy,
)

POLICY = load_qualification_policy()


def one(**fields) -> pd.DataFrame:
    return pd.DataFrame([fields])


@pytest.mark.parametrize(
    ("fields", "item", "status", "why"),
    [
        ({"employee_count": 1200}, "budget", "met", "1001-5000 employees"),
        ({"company_size": "51-200"}, "budget", "met", "51-200 employees"),
        ({"company_size": "self-employed"}, "budget", "not_met", "only 1-10 employees"),
        ({"company_size": "11-50"}, "budget", "unknown", "11-50 employees: not decisive"),
        ({}, "budget", "unknown", "company size unknown"),
        ({"revenue_band": "1B+", "company_size": "1-10"}, "budget", "met", "revenue 1B+"),
        ({"message": "Budget approved for Q3"}, "budget", "met", "message mentions budget"),
        ({"job_title": "Chief Technology Officer"}, "authority", "met", "seniority: c_level"),
        ({"job_title": "VP Marketing"}, "authority", "met", "seniority: vp"),
        ({"seniority": "director", "job_title": "Intern"}, "authority", "met", "seniority: director"),
        ({"job_title": "Software Engineer"}, "authority", "not_met", "seniority: individual"),
        ({"job_title": "Team Lead"}, "authority", "unknown", "seniority: manager"),
        ({}, "authority", "unknown", "job title unknown or unclear"),
        ({"demo_requested": True}, "need", "met", "demo requested"),
        ({"pricing_page_visits": 3}, "need", "met", "3 pricing page visits"),
        ({"message": "we are looking for a CRM"}, "need", "met", "message mentions looking for"),
        ({"intent_score": 45.0}, "need", "met", "intent score 45.0"),
        ({"page_views": 2}, "need", "not_met", "no stated need or buying signal"),
        ({}, "need", "unknown", "no message or intent signals"),
        ({"message": "Need it ASAP!"}, "timeline", "met", "message says asap"),
        ({"message": "maybe next year"}, "timeline", "not_met", "message says next year"),
        ({"message": "hello"}, "timeline", "unknown", "message states no timeline"),
        ({}, "timeline", "unknown", "no message"),
        # whole words only: "needle" is not "need", "soonish" is not "soon"
        ({"message": "needle soonish"}, "timeline", "unknown", "message states no timeline"),
    ],
)
def test_checklist_items(fields, item, status, why):
    checks = evaluate_checklist(one(**fields), POLICY)
    assert (checks[item].iloc[0], checks[f"{item}_why"].iloc[0]) == (status, why)


@pytest.mark.parametrize(
    ("fields", "met", "not_met", "passes"),
    [
        ({"employee_count": 500, "job_title": "CEO", "demo_requested": True, "message": "asap"}, 4, 0, True),
        ({"job_title": "CEO", "demo_requested": True}, 2, 0, True),
        ({"job_title": "CEO", "demo_requested": True, "message": "next year", "company_size": "1-10"}, 2, 2, False),
        ({"job_title": "Engineer"}, 0, 1, False),
        ({}, 0, 0, False),
    ],
)
def test_checklist_passes(fields, met, not_met, passes):
    checks = evaluate_checklist(one(**fields), POLICY)
    row = checks.iloc[0]
    assert (row["met"], row["not_met"], bool(row["passes"])) == (met, not_met, passes)
    stored = json.loads(row["checklist"])
    assert stored["passes"] is passes and stored["version"] == POLICY.version
    assert {k: stored[k]["status"] for k in ("budget", "authority", "need", "timeline")} == {
        k: row[k] for k in ("budget", "authority", "need", "timeline")}


def test_checklist_json_survives_quotes_in_values():
    checks = evaluate_checklist(one(revenue_band='1B+"x', message='need "quotes" \\ asap'), POLICY)
    assert json.loads(checks["checklist"].iloc[0])["need"]["status"] == "met"


@pytest.mark.parametrize(
    ("fields", "priority", "rule"),
    [
        ({"tier": "tier_1", "job_title": "CEO", "demo_requested": True}, "P1", "hot_fit_and_intent"),
        ({"tier": "tier_3", "job_title": "CEO", "demo_requested": True}, "P1", "demo_request_passing"),
        ({"tier": "tier_3", "score": 75.0}, "P2", "high_score"),
        ({"tier": "tier_2", "job_title": "CEO", "pricing_page_visits": 4}, "P2", "good_fit_passing"),
        ({"employee_count": 300, "job_title": "CFO", "message": "need it asap"}, "P2", "strong_checklist"),
        ({"tier": "tier_4"}, "P3", "worth_a_look"),
        ({"job_title": "CEO", "demo_requested": True, "tier": None}, "P1", "demo_request_passing"),
        ({"job_title": "CEO", "pricing_page_visits": 5}, "P3", "passing_checklist"),
        ({"tier": "tier_3", "score": 10.0}, "P4", "default"),
        ({}, "P4", "default"),
    ],
)
def test_priority_rules(fields, priority, rule):
    leads = one(**fields)
    result = determine_priority(leads, evaluate_checklist(leads, POLICY), POLICY)
    assert (result["priority"].iloc[0], result["priority_rule"].iloc[0]) == (priority, rule)
    assert result["priority_reason"].iloc[0].startswith(f"{rule}: ")


def test_priority_keeps_the_callers_index():
    leads = pd.DataFrame([{"tier": "tier_3"}, {"tier": "tier_1", "job_title": "CEO", "demo_requested": True}],
                         index=[7, 3])
    result = determine_priority(leads, evaluate_checklist(leads, POLICY), POLICY)
    assert result.loc[3, "priority"] == "P1" and result.loc[7, "priority"] == "P4"


BERLIN = "Europe/Berlin"


@pytest.mark.parametrize(
    ("start", "minutes", "due"),
    [
        ("2026-11-24 10:00", 5, "2026-11-24 10:05"),         # Tuesday, inside hours
        ("2026-11-24 16:58", 5, "2026-11-25 09:03"),         # spills into the next morning
        ("2026-11-24 07:30", 5, "2026-11-24 09:05"),         # before opening
        ("2026-11-27 18:00", 5, "2026-11-30 09:05"),         # Friday evening -> Monday
        ("2026-11-28 12:00", 60, "2026-11-30 10:00"),        # Saturday
        ("2026-11-24 09:00", 1440, "2026-11-26 17:00"),      # three 8-hour days
        ("2026-03-27 16:00", 120, "2026-03-30 10:00"),       # across the DST switch (local hours stay local)
    ],
)
def test_business_minutes_in_local_time(start, minutes, due):
    local = pd.Timestamp(start, tz=BERLIN).to_pydatetime()
    result = add_business_minutes(local, minutes, POLICY.sla, BERLIN)
    assert pd.Timestamp(result).tz_convert(BERLIN) == pd.Timestamp(due, tz=BERLIN)
    assert result.tzinfo is not None


def test_due_times_by_priority():
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    due = due_times(pd.Series(["P1", "P3", "P4", None]), {"P1": 5, "P3": 60}, now, POLICY.sla, "UTC")
    assert due.iloc[0] == pd.Timestamp("2026-11-24 09:05", tz="UTC")
    assert due.iloc[1] == pd.Timestamp("2026-11-24 10:00", tz="UTC")
    assert pd.isna(due.iloc[2]) and pd.isna(due.iloc[3])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["priority_rules"].pop(), "last priority rule must have no conditions"),
        (lambda d: d["checklist"].update(authority_met_levels=["boss"]), "unknown seniority levels"),
        (lambda d: d["matching"].update(needs_review_min=99), "needs_review_min must not be above"),
        (lambda d: d["sla"].update(business_end="08:00"), "business_end must be after"),
        (lambda d: d["sla"]["qualification_minutes"].pop("P4"), "needs every priority"),
        (lambda d: d["priority_rules"][0].update(tiers=["tier_9"]), "unknown tiers"),
        (lambda d: d.update(surprise=1), "Extra inputs are not permitted"),
    ],
)
def test_invalid_policies_are_rejected(tmp_path, change, message):
    data = json.loads((POLICY_DIR / "qualification.json").read_text())
    change(data)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PolicyError, match=message):
        load_policy(QualificationPolicy, path)
