"""Assign Lead Owner: account owner, territory and segment, capacity-weighted round robin, fallback queue."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from leadflow.domain import routing
from leadflow.domain.qualification import load_qualification_policy

RULES = load_qualification_policy().routing


def reps(*rows: dict) -> pd.DataFrame:
    base = {"active": True, "out_of_office": False, "territories": [], "segments": [], "max_open_leads": 10,
            "open_leads": 0, "last_assigned_seq": 0}
    return pd.DataFrame([{**base, **row} for row in rows])


def leads(*rows: dict) -> pd.DataFrame:
    base = {"owner_id": None, "account_id": None, "account_owner_id": None, "country": "US", "priority": "P3",
            "employee_count": None, "company_size": None}
    return pd.DataFrame([{"lead_id": i + 1, **base, **row} for i, row in enumerate(rows)])


US_ENT = {"id": 1, "territories": ["US"], "segments": ["enterprise"]}
US_SMB = {"id": 2, "territories": ["US", "CA"], "segments": ["smb"]}
DE_ALL = {"id": 3, "territories": ["DE"], "segments": ["smb", "mid_market", "enterprise"]}


@pytest.mark.parametrize(
    ("lead", "team", "owner", "rule", "candidates", "reason"),
    [
        ({"owner_id": 3}, [US_ENT], 3, "existing_owner", [3], None),
        ({"account_id": 9, "account_owner_id": 3}, [US_ENT, DE_ALL], 3, "account_owner", [3], None),
        ({"employee_count": 5000}, [US_ENT, US_SMB, DE_ALL], 1, "territory_segment_round_robin", [1], None),
        ({"company_size": "11-50"}, [US_ENT, US_SMB, DE_ALL], 2, "territory_segment_round_robin", [2], None),
        # Unknown size: territory decides alone.
        ({}, [US_ENT, US_SMB, DE_ALL], 1, "territory_segment_round_robin", [1, 2], None),
        # Unknown country: segment decides alone.
        ({"country": None, "employee_count": 20}, [US_ENT, US_SMB, DE_ALL], 2, "territory_segment_round_robin",
         [2, 3], None),
        ({"country": "BR"}, [US_ENT, DE_ALL], None, "fallback_queue", [], "no_eligible_rep"),
        ({}, [{**US_ENT, "active": False}], None, "fallback_queue", [], "no_eligible_rep"),
        ({}, [{**US_ENT, "out_of_office": True}], None, "fallback_queue", [], "no_eligible_rep"),
        ({}, [{**US_ENT, "open_leads": 10}], None, "fallback_queue", [1], "eligible_reps_at_capacity"),
        # The account owner is out of office: the lead falls through to the team, and the owner is listed.
        ({"account_id": 9, "account_owner_id": 1}, [{**US_ENT, "out_of_office": True}, US_SMB], 2,
         "territory_segment_round_robin", [1, 2], None),
        # A global rep (no territories) takes any country.
        ({"country": "JP"}, [{"id": 5}], 5, "territory_segment_round_robin", [5], None),
    ],
)
def test_routing_rules(lead, team, owner, rule, candidates, reason):
    result = routing.assign_owners(leads(lead), reps(*team), RULES)
    row = result.decisions.iloc[0]
    assert (None if pd.isna(row["owner_id"]) else row["owner_id"]) == owner
    assert row["assignment_rule"] == rule and row["candidates"] == candidates
    assert (None if pd.isna(row["fallback_reason"]) else row["fallback_reason"]) == reason


def test_round_robin_is_weighted_by_remaining_capacity():
    team = reps({"id": 1, "max_open_leads": 30}, {"id": 2, "max_open_leads": 10}, {"id": 3, "max_open_leads": 20})
    result = routing.assign_owners(leads(*[{}] * 30), team, RULES)
    assert Counter(result.decisions["owner_id"]) == {1: 15, 3: 10, 2: 5}
    assert result.reserved == {1: 15, 3: 10, 2: 5}


def test_nobody_goes_over_capacity_and_the_rest_waits_in_the_queue():
    team = reps({"id": 1, "max_open_leads": 3, "open_leads": 1}, {"id": 2, "max_open_leads": 2})
    result = routing.assign_owners(leads(*[{}] * 10), team, RULES)
    assert result.reserved == {1: 2, 2: 2}
    assert (result.decisions["assignment_rule"] == "fallback_queue").sum() == 6
    assert set(result.decisions["fallback_reason"].dropna()) == {"eligible_reps_at_capacity"}


def test_hot_leads_get_scarce_capacity_first():
    team = reps({"id": 1, "max_open_leads": 1})
    result = routing.assign_owners(leads({"priority": "P4"}, {"priority": "P1"}), team, RULES)
    assert result.decisions.set_index("lead_id").loc[2, "owner_id"] == 1
    assert pd.isna(result.decisions.set_index("lead_id").loc[1, "owner_id"])


def test_rotation_continues_from_the_stored_state():
    team = reps({"id": 1, "last_assigned_seq": 7}, {"id": 2, "last_assigned_seq": 3})
    result = routing.assign_owners(leads({}), team, RULES)
    assert result.decisions["owner_id"].iloc[0] == 2 and result.rotation == {2: 8}


def test_leads_of_one_new_account_share_its_first_owner():
    team = reps({"id": 1}, {"id": 2})
    result = routing.assign_owners(leads(*[{"account_id": 5}] * 3), team, RULES)
    assert result.decisions["owner_id"].tolist() == [1, 1, 1]
    assert result.decisions["assignment_rule"].tolist() == ["territory_segment_round_robin", "account_owner",
                                                            "account_owner"]
    assert result.account_owners == {5: 1}


def test_replay_ignores_capacity_and_reserves_nothing():
    team = reps({"id": 1, "max_open_leads": 1, "open_leads": 1}, {"id": 2, "max_open_leads": 1, "open_leads": 1})
    result = routing.assign_owners(leads(*[{}] * 4), team, RULES, enforce_capacity=False)
    assert Counter(result.decisions["owner_id"]) == {1: 2, 2: 2}
    assert result.reserved == {} and result.rotation == {}
